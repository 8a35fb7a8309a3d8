"""Run InvokeAI 2.3.5's own code over a root and report, as JSON, what it can load.

Runs INSIDE the InvokeAI 2.3.5 venv (tools/compat235/build_venv.sh), never in ours:

    $VENV/bin/python tests/compat235/driver.py --root ROOT [--out report.json] [--models a,b]

Nothing of 2.3.5 is stubbed.  What it does, in the order 2.3.5's CLI does it (``ldm/invoke/CLI.py``
``main()`` ~36-160, ``ldm/invoke/args.py`` ``Args.parse_args()`` ~177-207):

1. Environment: ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1``; ``HF_HOME`` and
   ``XDG_CACHE_HOME`` are removed (2.3.5's ``global_cache_dir()``, ``ldm/invoke/globals.py`` ~93-118,
   would look there instead of ``ROOT/models``; a user of the launcher normally has neither);
   ``INVOKEAI_ROOT=ROOT`` and the working directory is ROOT, as ``invoke.sh`` sets them.
2. ``Args().parse_args(["--root_dir", ROOT, ...])``: sets ``Globals.root`` and reads
   ``ROOT/invokeai.init`` like the real CLI (a line it cannot parse fails here).
3. The globals the CLI sets (``always_use_cpu``, ``internet_available=False``, ``ckpt_convert``,
   ``lora_models_dir``).
4. ``ModelManager.migrate_models()`` with stdin closed and ``input()`` recorded: it must ask
   nothing; the whole tree is snapshotted before and after: it must move/delete/create nothing.
5. ``ModelManager(OmegaConf.load(models.yaml), device_type=cpu, precision="float32")``,
   ``list_models()``, ``default_model()``.  Every listed entry is classified by looking at its
   files (main / vae / lora / embedding / controlnet / unknown); VAE, LoRA, embedding and
   ControlNet entries listed as models are failures (2.3.5 offers them as main models).
6. ``get_model(name)`` for every main (and unknown) entry.  Its console output is captured; the
   messages 2.3.5 prints instead of raising (``** Could not load VAE``, ``An unexpected error
   occurred``, ``is not a known model name``) count as failures.  For each loaded pipeline:
   class, UNet ``in_channels``/``sample_size``, scheduler ``prediction_type``, the sum of the
   parameters of the UNet, VAE and text encoder (name- and shape-independent fingerprints the
   test compares with the source files), then the embeddings of ``ROOT/embeddings`` are loaded
   into it the way ``ldm/generate.py`` ``set_model()`` ~985-995 does (triggers reported).
7. LoRAs: ``LoraManager.list_loras()`` (what the CLI completer and the web UI read) and the
   token-vector length 2.3.5 reads from each file (768 = SD-1, 1024 = SD-2).

Exit status: 0 when nothing failed, 1 when anything did (the report says what), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import io
import json
import os
import sys
import time
import traceback
from pathlib import Path

# --- 1. environment, before anything imports huggingface_hub / transformers / diffusers --------

_REMOVED_ENV = {k: os.environ.pop(k) for k in ("HF_HOME", "XDG_CACHE_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE",
                                              "TRANSFORMERS_CACHE", "HF_ENDPOINT") if k in os.environ}
#: --online-recorder: 2.3.5 believes it is online; HF_ENDPOINT is a local server that records every
#: request and drops the connection (the hub unreachable).  Shows which stanzas go to the network.
ONLINE_REQUESTS: list[str] = []
_ONLINE = "--online-recorder" in sys.argv


def _start_recorder() -> str:
    import http.server
    import threading

    class Drop(http.server.BaseHTTPRequestHandler):
        def _drop(self) -> None:
            ONLINE_REQUESTS.append(f"{self.command} {self.path}")
            self.close_connection = True  # no response at all: requests raises ConnectionError

        do_GET = do_HEAD = do_POST = _drop

        def log_message(self, *args) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Drop)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{srv.server_address[1]}"


if _ONLINE:
    os.environ["HF_ENDPOINT"] = _start_recorder()
    os.environ.pop("HF_HUB_OFFLINE", None)
    os.environ.pop("TRANSFORMERS_OFFLINE", None)
else:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: What 2.3.5 prints instead of raising when a load went wrong.
FAILURE_MESSAGES = (
    "** Could not load VAE",
    "An unexpected error occurred",
    "is not a known model name",
    "Unable to load",
)


def snapshot(root: Path) -> dict[str, list]:
    """relpath -> [type, size, link target] of everything under root (the lock files of 2.3.5 excluded)."""
    out: dict[str, list] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = ["link", 0, os.readlink(p)]
            elif p.is_dir():
                out[rel] = ["dir", 0, ""]
            else:
                out[rel] = ["file", p.stat().st_size, ""]
    return out


def diff_snapshots(before: dict, after: dict) -> dict[str, list[str]]:
    return {
        "removed": sorted(set(before) - set(after)),
        "added": sorted(set(after) - set(before)),
        "changed": sorted(k for k in set(before) & set(after) if before[k] != after[k]),
    }


# --- classification of a stanza by its files ---------------------------------------------------


def _keys_of_file(path: Path) -> list[str]:
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            return list(f.keys())
    import torch

    doc = torch.load(str(path), map_location="cpu", weights_only=True)  # never runs pickled code
    if isinstance(doc, dict) and isinstance(doc.get("state_dict"), dict):
        doc = doc["state_dict"]
    return [str(k) for k in doc] if isinstance(doc, dict) else []


def kind_of_keys(keys: list[str]) -> str:
    if any(k.startswith("model.diffusion_model.") for k in keys):
        return "main"
    if any(k.startswith("control_model.") for k in keys):
        return "controlnet"
    if any(k.startswith(("lora_unet_", "lora_te")) for k in keys) or any(".lora_down." in k or "lora.down" in k for k in keys):
        return "lora"
    if "string_to_param" in keys or "emb_params" in keys or "clip_l" in keys:
        return "embedding"
    if any(k.startswith(("encoder.", "decoder.", "first_stage_model.")) for k in keys):
        return "vae"
    return "unknown"


def hub_snapshot(cache: Path, repo_id: str) -> Path | None:
    """The snapshot folder huggingface_hub would use offline for repo_id (refs/main -> snapshots/<commit>)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    ref = repo / "refs" / "main"
    if ref.is_file():
        snap = repo / "snapshots" / ref.read_text().strip()
        return snap if snap.is_dir() else None
    return None


def kind_of_folder(folder: Path) -> str:
    if (folder / "model_index.json").is_file():
        return "main"
    cfg = folder / "config.json"
    if cfg.is_file():
        try:
            cls = json.loads(cfg.read_text()).get("_class_name", "")
        except ValueError:
            cls = ""
        if cls == "AutoencoderKL":
            return "vae"
        if cls == "ControlNetModel":
            return "controlnet"
    if any(folder.glob("pytorch_lora_weights.*")):
        return "lora"
    if (folder / "learned_embeds.bin").is_file():
        return "embedding"
    return "unknown"


def classify(stanza: dict, root: Path, hub: Path) -> tuple[str, str]:
    """(kind, why) of a models.yaml stanza, judged by its files, not by what it says it is."""
    declared = stanza.get("type")
    fmt = stanza.get("format", "ckpt")
    try:
        if fmt == "ckpt" or "weights" in stanza:
            weights = Path(str(stanza.get("weights", "")))
            weights = weights if weights.is_absolute() else root / weights
            if weights.is_file():
                return kind_of_keys(_keys_of_file(weights)), f"keys of {weights.name}"
            return (declared or "unknown"), f"weights {weights} missing"
        if stanza.get("path"):
            p = Path(str(stanza["path"]))
            p = p if p.is_absolute() else root / p
            if p.is_dir():
                return kind_of_folder(p), f"folder {p.name}"
            if p.is_file():
                return kind_of_keys(_keys_of_file(p)), f"keys of {p.name}"
            return (declared or "unknown"), f"path {p} missing"
        if stanza.get("repo_id"):
            snap = hub_snapshot(hub, str(stanza["repo_id"]))
            if snap is not None:
                return kind_of_folder(snap), f"hub snapshot {snap.name}"
            return (declared or "unknown"), "repo not in ROOT/models/hub"
    except Exception as e:  # noqa: BLE001 - classification is best effort
        return (declared or "unknown"), f"unreadable: {e}"
    return (declared or "unknown"), "no weights/path/repo_id"


# --- fingerprints ----------------------------------------------------------------------------


def param_sum(module) -> float | None:
    """Sum of every floating-point parameter/buffer: independent of key names and 1x1-conv/linear shapes."""
    if module is None:
        return None
    import torch

    total = 0.0
    for t in module.state_dict().values():
        if torch.is_floating_point(t):
            total += float(t.detach().double().sum().item())
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True, help="the InvokeAI root (ROOT/configs/models.yaml)")
    ap.add_argument("--models", default="", help="comma-separated names to load (default: every main model)")
    ap.add_argument("--out", default="", help="also write the JSON report to this file")
    ap.add_argument("--no-migrate", action="store_true", help="skip migrate_models() (to load a root as it is)")
    ap.add_argument("--quiet", action="store_true", help="do not echo 2.3.5's console output to stderr")
    ap.add_argument("--online-recorder", action="store_true",
                    help="let 2.3.5 think it is online, against a local endpoint that records requests and drops them")
    opts = ap.parse_args(argv)
    root = Path(opts.root).absolute()
    if not (root / "configs" / "models.yaml").is_file():
        print(f"error: {root}/configs/models.yaml does not exist", file=sys.stderr)
        return 2

    report: dict = {"root": str(root), "removed_env": sorted(_REMOVED_ENV), "online_recorder": _ONLINE, "failures": []}
    fail = report["failures"].append
    echo = (lambda s: None) if opts.quiet else (lambda s: sys.stderr.write(s))

    os.environ["INVOKEAI_ROOT"] = str(root)
    os.chdir(root)  # invoke.sh: cd "$scriptdir"

    import warnings

    warnings.filterwarnings("ignore")
    t0 = time.time()
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        import torch
        from omegaconf import OmegaConf

        import ldm.invoke
        from ldm.invoke.args import Args
        from ldm.invoke.globals import Globals, global_cache_dir, global_lora_models_dir
        from ldm.invoke.model_manager import ModelManager
        from ldm.modules.kohya_lora_manager import KohyaLoraManager
        from ldm.modules.lora_manager import LoraManager
    report["invokeai_version"] = ldm.invoke.__version__
    report["versions"] = {"torch": torch.__version__}
    for mod in ("diffusers", "transformers", "huggingface_hub", "safetensors"):
        report["versions"][mod] = __import__(mod).__version__
    report["import_seconds"] = round(time.time() - t0, 2)

    # --- 2./3. the CLI's globals -----------------------------------------------------------------
    cli_args = ["--root_dir", str(root), "--always_use_cpu", "--precision", "float32",
                "--internet" if _ONLINE else "--no-internet", "--no-xformers", "--no-patchmatch"]
    with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
        parsed = Args().parse_args(cli_args)
    report["args_output"] = captured.getvalue()[-2000:]
    if not parsed:
        fail("2.3.5's Args().parse_args failed (ROOT/invokeai.init has a line it cannot parse?): "
             + captured.getvalue()[-500:])
        print(json.dumps(report, indent=2))
        return 1
    Globals.try_patchmatch = False
    Globals.always_use_cpu = True
    Globals.internet_available = _ONLINE  # check_internet() is False offline; --no-internet says so anyway
    Globals.disable_xformers = True
    Globals.sequential_guidance = False
    Globals.ckpt_convert = True
    conf = parsed.conf if os.path.isabs(parsed.conf) else os.path.normpath(os.path.join(Globals.root, parsed.conf))
    embedding_path = None
    if parsed.embeddings:
        embedding_path = parsed.embedding_path if os.path.isabs(parsed.embedding_path) \
            else os.path.normpath(os.path.join(Globals.root, parsed.embedding_path))
    if parsed.lora_path:
        Globals.lora_models_dir = parsed.lora_path
    hub = Path(global_cache_dir("hub"))
    report["globals"] = {"root": str(Globals.root), "conf": conf, "hub_cache": str(hub),
                         "embedding_path": embedding_path, "lora_dir": str(global_lora_models_dir())}

    # --- 4. migrate_models: asks nothing, moves nothing -------------------------------------------
    mig: dict = {"asked": [], "error": None}
    if not opts.no_migrate:
        before = snapshot(root)
        real_input, real_stdin = builtins.input, sys.stdin

        def recording_input(prompt: str = "") -> str:
            mig["asked"].append(str(prompt))
            raise EOFError("stdin is closed (compat235 driver)")

        builtins.input = recording_input
        sys.stdin = open(os.devnull)  # noqa: SIM115
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                ModelManager.migrate_models()
        except BaseException as e:  # noqa: BLE001 - EOFError from input() lands here too
            mig["error"] = f"{type(e).__name__}: {e}"
        finally:
            builtins.input, sys.stdin = real_input, real_stdin
        mig["output"] = out.getvalue()[-3000:]
        mig["changes"] = diff_snapshots(before, snapshot(root))
        if mig["asked"]:
            fail(f"migrate_models() asked {mig['asked']!r} (something is in ROOT/models/diffusers or a legacy location)")
        if mig["error"]:
            fail(f"migrate_models() raised {mig['error']}")
        if any(mig["changes"].values()):
            fail(f"migrate_models() changed the tree: {json.dumps(mig['changes'])[:1500]}")
    report["migrate"] = mig

    # --- 5. the manager, the list -----------------------------------------------------------------
    config = OmegaConf.load(conf)
    mm = ModelManager(config, device_type=torch.device("cpu"), precision="float32", max_loaded_models=1)
    listed = mm.list_models()
    report["default_model"] = mm.default_model()
    report["listed"] = sorted(listed)
    report["stanza_names"] = [str(n) for n in config.keys()]
    entries: dict = {}
    for name in listed:
        stanza = OmegaConf.to_container(config[name], resolve=True)
        kind, why = classify(stanza, root, hub)
        entries[name] = {"stanza": stanza, "kind": kind, "kind_from": why, "format": listed[name].get("format")}
    report["models"] = entries
    non_main = sorted(n for n, e in entries.items() if e["kind"] in ("vae", "lora", "embedding", "controlnet"))
    report["non_main_listed"] = non_main
    for n in non_main:
        fail(f"{n}: a {entries[n]['kind']} is listed by list_models() as a main model")
    if report["default_model"] in non_main:  # no `default: true` and a non-main stanza first
        fail(f"default_model() is {report['default_model']!r}, a {entries[report['default_model']]['kind']}: "
             "2.3.5 would try to load it at start-up")

    # --- LoRA and embedding folders ----------------------------------------------------------------
    def files_under(folder: Path | None) -> list[str]:
        if folder is None or not Path(folder).is_dir():
            return []
        return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith("."))

    lora_dir = Path(global_lora_models_dir())
    loras: dict = {}
    try:
        for lname, lpath in LoraManager.list_loras().items():
            info: dict = {"path": str(lpath)}
            try:
                if Path(lpath).suffix == ".safetensors":
                    from safetensors.torch import load_file

                    sd = load_file(str(lpath), device="cpu")
                else:
                    sd = torch.load(str(lpath), map_location="cpu", weights_only=True)
                info["vector_length"] = KohyaLoraManager.vector_length_from_checkpoint(sd)
            except Exception as e:  # noqa: BLE001
                info["error"] = f"{type(e).__name__}: {e}"
            loras[lname] = info
    except Exception as e:  # noqa: BLE001
        report["lora_list_error"] = f"{type(e).__name__}: {e}"
    report["loras"] = {"dir": str(lora_dir), "files": files_under(lora_dir), "listed": loras}
    report["embeddings"] = {"dir": embedding_path, "files": files_under(Path(embedding_path) if embedding_path else None)}

    # --- 6. load every main model ---------------------------------------------------------------------
    wanted = [m for m in opts.models.split(",") if m] or sorted(n for n, e in entries.items() if e["kind"] in ("main", "unknown"))
    for name in wanted:
        e = entries.setdefault(name, {"kind": "not listed"})
        out = io.StringIO()
        t = time.time()
        seen = len(ONLINE_REQUESTS)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                data = mm.get_model(name)
            e["seconds"] = round(time.time() - t, 2)
            pipe = data["model"] if data else None
            if pipe is None:
                raise RuntimeError("get_model returned no model")
            e["loaded"] = True
            e["pipeline"] = type(pipe).__name__
            e["width"], e["height"] = data.get("width"), data.get("height")
            e["unet_in_channels"] = int(pipe.unet.config.in_channels)
            e["unet_sample_size"] = int(pipe.unet.config.sample_size)
            e["prediction_type"] = getattr(pipe.scheduler.config, "prediction_type", None)
            e["param_sums"] = {c: param_sum(getattr(pipe, c, None)) for c in ("unet", "vae", "text_encoder")}
            # embeddings, as Generate.set_model() loads them
            tim = pipe.textual_inversion_manager
            ti: dict = {"parsed": {}, "triggers": []}
            if embedding_path and Path(embedding_path).is_dir():
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                    for dirpath, _, names in os.walk(embedding_path):
                        for fname in sorted(names):
                            fpath = os.path.join(dirpath, fname)
                            rel = os.path.relpath(fpath, embedding_path)
                            try:  # Generate.set_model() does not catch this: an exception here fails the model
                                info = tim._parse_embedding(fpath)
                                ti["parsed"][rel] = (None if info is None else
                                                     {"name": info.get("name"), "token_dim": info.get("token_dim")})
                                tim.load_textual_inversion(fpath, defer_injecting_tokens=True)
                            except Exception as ex:  # noqa: BLE001
                                ti["parsed"][rel] = {"error": f"{type(ex).__name__}: {ex}"}
                                fail(f"{name}: embedding {rel} makes 2.3.5's TextualInversionManager raise "
                                     f"{type(ex).__name__}: {ex} (Generate.set_model would fail)")
                ti["triggers"] = sorted(tim.get_all_trigger_strings())
            ti["text_encoder_width"] = int(pipe.text_encoder.get_input_embeddings().weight.shape[1])
            e["embeddings"] = ti
        except BaseException as ex:  # noqa: BLE001 - report everything, go on with the next model
            e["loaded"] = False
            e["seconds"] = round(time.time() - t, 2)
            e["error"] = f"{type(ex).__name__}: {ex}"
            e["traceback"] = traceback.format_exc()[-4000:]
            fail(f"{name}: get_model failed: {e['error'][:300]}")
        if _ONLINE:
            e["online_requests"] = ONLINE_REQUESTS[seen:]
        text = out.getvalue()
        e["output"] = text[-3000:]
        echo(f"--- {name}\n{text}")
        bad = [line.strip() for line in text.splitlines() if any(m in line for m in FAILURE_MESSAGES)]
        if bad:
            e["failure_messages"] = bad
            fail(f"{name}: 2.3.5 printed {bad[0][:300]!r}")
        mm.models.pop(name, None)  # free it; max_loaded_models=1 keeps at most one more
        if name in mm.stack:
            mm.stack.remove(name)
        mm.current_model = None

    report["ok"] = not report["failures"]
    text = json.dumps(report, indent=2, default=str)
    if opts.out:
        Path(opts.out).write_text(text + "\n")
    print(text)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
