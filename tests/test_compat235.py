"""Every model kind this package installs loads in the real InvokeAI 2.3.5 (issue 9's acceptance test).

What it does (one root for the whole module, built once; a few minutes on 2 cores):

1. Serves tiny, structurally real models on the stand-in hub and a plain file server: a starter
   (SD-1 diffusers + a VAE repo), an SD-2 (v) diffusers repo, the three support repos 2.3.5 needs
   for checkpoint models (``openai/clip-vit-large-patch14``, ``CompVis/stable-diffusion-safety-checker``,
   ``stabilityai/stable-diffusion-2``; tiny, written by transformers 4.29 in the 2.3.5 venv), and a
   single-file SD-1 model by URL.  Hub-era files: the diffusers repos carry the VAE attention names
   and the ``text_model.`` prefix that the real 2022/23 repos have.
2. Fills a root with OUR CLI only, as a user would: ``invokeai-configure --yes`` (starters and
   support models), the tiny LDM configs a tiny checkpoint needs (written over the root's copies,
   as a user's own edit would be), ``--add`` of every other kind (URL, local .ckpt / .safetensors,
   inpainting, SD-2 v, a diffusers folder, a repo id, VAE, LoRA, embedding, SDXL), ``--convert`` of an
   SD-1 and an SD-2 (v) checkpoint, and ``edit NAME --vae`` to give a checkpoint model the VAE.
3. Runs tests/compat235/driver.py in the InvokeAI 2.3.5 venv (``HF_HUB_OFFLINE=1``): 2.3.5's
   ``migrate_models()`` with stdin closed, ``list_models()``, ``get_model()`` on every main model
   (nothing stubbed), LoRA / embedding discovery.  The tests below assert on its JSON report.

The venv: ``INVOKEAI235_VENV`` or ``~/.cache/invokeai-model-install/venv-invokeai-2.3.5``, built by
``bash tools/compat235/build_venv.sh``.  Missing: the module is skipped (it FAILS when ``CI`` is set:
``.ci/run`` must have built it).  Expected failures against the package before issue 9: see
/work/notes/compat235.md (section "What fails today").
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.compat235 import layout_helpers as lh

REPO = Path(__file__).resolve().parent.parent
DRIVER = REPO / "tests" / "compat235" / "driver.py"
MAKE_SUPPORT = REPO / "tests" / "compat235" / "make_support.py"
BUILD = "bash tools/compat235/build_venv.sh"
DEFAULT_VENV = Path.home() / ".cache" / "invokeai-model-install" / "venv-invokeai-2.3.5"
STAMP = ".invokeai-model-install-compat235.stamp"

SUPPORT_REPOS = {  # repo -> files 2.3.5 reads offline (ckpt_to_diffuser.py ~845, ~973, ~1264-1305)
    "openai/clip-vit-large-patch14": ["config.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                                      "special_tokens_map.json"],
    "CompVis/stable-diffusion-safety-checker": ["config.json", "preprocessor_config.json"],
    "stabilityai/stable-diffusion-2": ["tokenizer/vocab.json", "tokenizer/merges.txt", "text_encoder/config.json"],
}

CATALOG = """
tiny-sd1:
  description: Tiny SD-1 starter with its own VAE repo
  repo_id: test/tiny-sd1
  format: diffusers
  vae:
    repo_id: test/tiny-vae
  recommended: true
  default: true
  size: 60000000
"""

#: The main-model cases: id -> what the source is.  Loaded by 2.3.5, each must load.
MAIN_CASES = [
    "starter-diffusers-with-vae",
    "hub-repo-id-sd2-v",
    "url-safetensors-sd1",
    "local-ckpt-sd1-with-vae",
    "local-safetensors-sd1-inpaint",
    "local-safetensors-sd2-v",
    "in-place-folder-sd1",
    "local-diffusers-folder-sd1",
    "converted-sd1",
    "converted-sd2-v",
]


# --- the venv -----------------------------------------------------------------------------------


def venv_python() -> Path:
    venv = Path(os.environ.get("INVOKEAI235_VENV") or DEFAULT_VENV).expanduser()
    py = venv / "bin" / "python"
    if py.is_file() and (venv / STAMP).is_file():
        return py
    why = f"the InvokeAI 2.3.5 venv is missing at {venv} (build it with: {BUILD})"
    if os.environ.get("CI"):
        pytest.fail(f"{why}; .ci/run must build it before pytest", pytrace=False)
    pytest.skip(why)


# --- helpers --------------------------------------------------------------------------------------


def tensor_sum(files: list[Path]) -> float:
    """Sum of every floating-point tensor in these weights files (safetensors, .ckpt/.pt/.bin)."""
    import torch

    total = 0.0
    for f in files:
        if f.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(f))
        else:
            sd = torch.load(str(f), map_location="cpu", weights_only=True)
            sd = sd.get("state_dict", sd)
        total += sum(float(t.double().sum()) for t in sd.values() if torch.is_tensor(t) and t.is_floating_point())
    return total


def folder_sums(folder: Path) -> dict[str, float]:
    return {c: tensor_sum(sorted((folder / c).glob("*.safetensors"))) for c in ("unet", "vae", "text_encoder")}


def close(a, b) -> bool:
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-3)


def a1111_embedding(path: Path, width: int = 768) -> Path:
    """A textual-inversion .pt as AUTOMATIC1111 writes it (2.3.5's v1 parser needs sd_checkpoint[_name])."""
    import torch

    g = torch.Generator().manual_seed(5)
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": torch.randn((2, width), generator=g)},
                "name": "tiny-style", "step": 500, "sd_checkpoint": "4c86efd0", "sd_checkpoint_name": "tiny"}, str(path))
    return path


def our_env(hub_url: str) -> dict[str, str]:
    """Our CLI's environment: the stand-in hub, and no HF_HOME / XDG_CACHE_HOME (as under invoke.sh):
    2.3.5 reads its HF cache from $HF_HOME/hub when that is set (globals.py ~93-118), so a test HF_HOME
    would send the support models where the driver (which removes it) does not look."""
    env = dict(os.environ)
    env["HF_ENDPOINT"] = hub_url
    for k in ("INVOKEAI_ROOT", "HF_HUB_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HOME", "XDG_CACHE_HOME",
              "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        env.pop(k, None)
    return env


def our_cli(args: list[str], env: dict, *, configure: bool = False, timeout: int = 600) -> subprocess.CompletedProcess:
    """Our installer, as its console scripts run it (module paths do not matter here)."""
    name = "invokeai-configure" if configure else "invokeai-model-install"
    script = Path(sys.executable).parent / name
    # no console script next to this python: run the entry point the installed metadata names
    run_ep = ("import sys, importlib.metadata as m; "
              f"sys.argv[0] = {name!r}; "
              f"sys.exit([e for e in m.entry_points(group='console_scripts') if e.name == {name!r}][0].load()())")
    cmd = [str(script)] if script.exists() else [sys.executable, "-c", run_ep]
    return subprocess.run(cmd + args, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def items_by_label(proc: subprocess.CompletedProcess) -> dict[str, dict]:
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        return {}
    return {it["label"]: it for it in doc.get("items", [])}


# --- the root, built once --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compat(tmp_path_factory, tiny_models, tiny_checkpoints, tiny_extras):
    """Build the root with our CLI, run the driver in the 2.3.5 venv; return everything the tests need."""
    py235 = venv_python()
    from tests.fileserver import FileServer
    from tests.hubserver import HubServer

    work = tmp_path_factory.mktemp("compat235")
    root = work / "invokeai"
    incoming = work / "incoming"
    incoming.mkdir()
    log: list[str] = []

    # hub-era copies of the tiny diffusers models (old VAE names, text_model. prefix)
    sd1 = lh.as_hub_era_folder(tiny_models["sd-1"], work / "hub-sd1")
    sd2v = lh.as_hub_era_folder(tiny_models["sd-2-v"], work / "hub-sd2v")
    vae_src = lh.as_hub_era_folder(tiny_models["sd-1-inpaint"], work / "hub-inpaint") / "vae"  # other weights, same shapes
    local_folder = lh.as_hub_era_folder(tiny_models["sd-1"], incoming / "my-diffusers-sd1")

    # the support repos, written by transformers 4.29 in the 2.3.5 venv
    support = work / "support"
    proc = subprocess.run([str(py235), str(MAKE_SUPPORT), str(support), "--sd1", str(tiny_models["sd-1"]),
                           "--sd2", str(tiny_models["sd-2"])], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    (work / "files").mkdir()
    hub = HubServer().start()
    files = FileServer(work / "files").start()
    try:
        hub.add_repo("test/tiny-sd1", sd1)
        hub.add_repo("test/tiny-vae", vae_src)
        hub.add_repo("test/tiny-sd2-v", sd2v)
        for repo in SUPPORT_REPOS:
            hub.add_repo(repo, support / repo)
        shutil.copyfile(tiny_checkpoints["sd-1", "safetensors"], work / "files" / "dreamy-sd1.safetensors")
        env = our_env(hub.url)
        catalog = work / "catalog.yaml"
        catalog.write_text(CATALOG)

        # 1. configure: the root, the starter (with its VAE), the support models
        p = our_cli(["--root", str(root), "--catalog", str(catalog), "--yes"], env, configure=True)
        log.append(f"$ invokeai-configure --yes -> {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")

        # tiny LDM configs: 2.3.5 builds a checkpoint's UNet/VAE from these (a user's edit: kept by us)
        legacy = root / "configs" / "stable-diffusion"
        legacy.mkdir(parents=True, exist_ok=True)
        for name, kind in [("v1-inference.yaml", "sd-1"), ("v1-inpainting-inference.yaml", "sd-1-inpaint"),
                           ("v2-inference.yaml", "sd-2"), ("v2-inference-v.yaml", "sd-2-v")]:
            (legacy / name).write_text(lh.tiny_ldm_yaml(REPO / "configs" / "stable-diffusion" / name, tiny_models[kind]))

        # 2. every other kind, as files a user has
        src = {
            "url-safetensors-sd1": files.url_for("dreamy-sd1.safetensors"),
            "local-ckpt-sd1-with-vae": shutil.copyfile(tiny_checkpoints["sd-1", "ckpt"], incoming / "mine-sd1.ckpt"),
            "local-safetensors-sd1-inpaint": shutil.copyfile(tiny_checkpoints["sd-1-inpaint", "safetensors"],
                                                             incoming / "mine-inpaint.safetensors"),
            "local-safetensors-sd2-v": shutil.copyfile(tiny_checkpoints["sd-2-v", "safetensors", "step=110000"],
                                                       incoming / "mine-sd2v.safetensors"),
            "local-diffusers-folder-sd1": local_folder,
            "hub-repo-id-sd2-v": "test/tiny-sd2-v",
            "vae": shutil.copyfile(tiny_extras["vae.safetensors"], incoming / "my-vae.safetensors"),
            "lora": shutil.copyfile(tiny_extras["lora-sd-1.safetensors"], incoming / "my-lora.safetensors"),
            "embedding": a1111_embedding(incoming / "my-style.pt"),
            "sdxl": shutil.copytree(tiny_models["sdxl"], incoming / "my-sdxl"),
        }
        p = our_cli(["--root", str(root), "--add", *map(str, src.values()), "--prediction-type", "v",
                     "--full-precision", "--json"], env)
        log.append(f"$ invokeai-model-install --add ... -> {p.returncode}\n{p.stdout[-6000:]}\n{p.stderr[-3000:]}")
        by_label = items_by_label(p)
        (incoming / "conv").mkdir()
        conv_src = {
            "converted-sd1": shutil.copyfile(tiny_checkpoints["sd-1", "safetensors"], incoming / "conv" / "conv-sd1.safetensors"),
            "converted-sd2-v": shutil.copyfile(tiny_checkpoints["sd-2-v", "safetensors", "step=110000"],
                                               incoming / "conv" / "conv-sd2v.safetensors"),
        }
        p = our_cli(["--root", str(root), "--add", *map(str, conv_src.values()), "--convert", "--prediction-type", "v",
                     "--full-precision", "--json"], env)
        log.append(f"$ invokeai-model-install --add ... --convert -> {p.returncode}\n{p.stdout[-4000:]}\n{p.stderr[-3000:]}")
        by_label.update(items_by_label(p))
        src.update(conv_src)
        # a ComfyUI models/ tree registered where it is (--in-place, the form's and the page's checkbox)
        comfy = incoming / "ComfyUI" / "models"
        (comfy / "checkpoints").mkdir(parents=True)
        src["in-place-folder-sd1"] = shutil.copyfile(tiny_checkpoints["sd-1", "safetensors"],
                                                     comfy / "checkpoints" / "inplace-sd1.safetensors")
        p = our_cli(["--root", str(root), "--add", str(comfy), "--in-place", "--json"], env)
        log.append(f"$ invokeai-model-install --add COMFY/models --in-place -> {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-2000:]}")
        by_label.update(items_by_label(p))
        names = {case: by_label.get(str(s), {}).get("name", "") for case, s in src.items()}
        items = {case: by_label.get(str(s), {}) for case, s in src.items()}

        # the starter's name, from models.yaml
        stanzas = yaml.safe_load((root / "configs" / "models.yaml").read_text()) or {}
        names["starter-diffusers-with-vae"] = "tiny-sd1" if "tiny-sd1" in stanzas else ""

        # 3. the VAE for the checkpoint model, as a user gives it
        vae_item = items.get("vae") or {}
        vae_path = root / vae_item["path"] if vae_item.get("path") else src["vae"]
        if names["local-ckpt-sd1-with-vae"]:
            p = our_cli(["--root", str(root), "edit", names["local-ckpt-sd1-with-vae"], "--vae", str(vae_path)], env)
            log.append(f"$ invokeai-model-install edit ... --vae -> {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    finally:
        hub.stop()
        files.stop()

    if os.environ.get("COMPAT235_REFERENCE_FIX"):  # self-test: the assertions pass on a root laid out per the notes
        from tests.compat235.reference_fix import apply

        log.append("reference fix:\n" + "\n".join(apply(root, support)))

    # 4. 2.3.5 over the root
    drv_env = {k: v for k, v in os.environ.items() if k not in ("HF_HOME", "XDG_CACHE_HOME", "HF_ENDPOINT")}
    report_path = work / "report.json"
    proc = subprocess.run([str(py235), str(DRIVER), "--root", str(root), "--out", str(report_path), "--quiet"],
                          env=drv_env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900)
    log.append(f"$ driver -> {proc.returncode}\n{proc.stderr[-4000:]}")
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    # again, with 2.3.5 believing it is online while the hub does not answer (a local endpoint drops every request)
    online_path = work / "report-online.json"
    proc2 = subprocess.run([str(py235), str(DRIVER), "--root", str(root), "--out", str(online_path), "--quiet",
                            "--no-migrate", "--online-recorder"],
                           env=drv_env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900)
    log.append(f"$ driver --online-recorder -> {proc2.returncode}")
    online = json.loads(online_path.read_text()) if online_path.is_file() else {}
    transcript = "\n\n".join(log)
    print(transcript)
    return {
        "root": root, "report": report, "online": online, "names": names, "items": items, "log": transcript, "driver": proc,
        "stanzas": yaml.safe_load((root / "configs" / "models.yaml").read_text()) or {},
        "expect": {
            "sd1": folder_sums(tiny_models["sd-1"]),
            "sd1-inpaint": folder_sums(tiny_models["sd-1-inpaint"]),
            "sd2v": folder_sums(tiny_models["sd-2-v"]),
            "starter-vae": tensor_sum(sorted(vae_src.glob("*.safetensors"))),
            "vae-file": tensor_sum([tiny_extras["vae.safetensors"]]),
        },
    }


def model_entry(compat, case: str) -> dict:
    name = compat["names"].get(case)
    assert name, f"{case}: our CLI did not install it: {compat['items'].get(case) or 'see the log'}\n{compat['log'][-4000:]}"
    report = compat["report"]
    assert report, f"the driver wrote no report:\n{compat['driver'].stderr[-4000:]}"
    entry = report["models"].get(name)
    assert entry is not None, f"{case}: {name!r} is not listed by 2.3.5's list_models() (listed: {report['listed']})"
    return entry


# --- the tests ----------------------------------------------------------------------------------------


def test_driver_ran(compat):
    assert compat["report"], f"no report from the driver:\n{compat['driver'].stdout[-2000:]}\n{compat['driver'].stderr[-4000:]}"
    assert compat["report"]["invokeai_version"].startswith("2.3.5")


def test_support_models_where_235_looks(compat):
    """The three support repos are in ROOT/models/hub in the HF cache layout 2.3.5 reads offline."""
    hub = compat["root"] / "models" / "hub"
    missing = []
    for repo, needed in SUPPORT_REPOS.items():
        snap = lh_hub_snapshot(hub, repo)
        if snap is None:
            missing.append(f"{repo} (no models--{repo.replace('/', '--')}/refs/main + snapshots/<commit>)")
            continue
        missing += [f"{repo}/{f}" for f in needed if not (snap / f).is_file()]
        weights = {"openai/clip-vit-large-patch14": ".", "CompVis/stable-diffusion-safety-checker": ".",
                   "stabilityai/stable-diffusion-2": "text_encoder"}[repo]
        if not any((snap / weights / w).is_file() for w in ("model.safetensors", "pytorch_model.bin")):
            missing.append(f"{repo}/{weights}/(model.safetensors|pytorch_model.bin)")
    assert not missing, f"support model files missing from {hub}: {missing}"


def lh_hub_snapshot(hub: Path, repo: str) -> Path | None:
    ref = lh.repo_cache_dir(hub, repo) / "refs" / "main"
    if not ref.is_file():
        return None
    snap = lh.repo_cache_dir(hub, repo) / "snapshots" / ref.read_text().strip()
    return snap if snap.is_dir() else None


def test_migrate_models_asks_nothing_moves_nothing(compat):
    mig = compat["report"].get("migrate") or {}
    assert mig.get("asked") == [], f"2.3.5's migrate_models() asked {mig.get('asked')} (ROOT/models/diffusers is in use)"
    assert not mig.get("error"), mig.get("error")
    assert not any(mig.get("changes", {}).values()), f"migrate_models() changed the root: {mig.get('changes')}"
    assert not (compat["root"] / "models" / "diffusers").exists() or not any((compat["root"] / "models" / "diffusers").iterdir())


@pytest.mark.parametrize("case", MAIN_CASES)
def test_main_model_loads_in_235(compat, case):
    e = model_entry(compat, case)
    assert e["kind"] == "main", f"{case}: 2.3.5 lists it but its files are a {e['kind']} ({e.get('kind_from')})"
    assert e.get("loaded"), (f"{case}: 2.3.5's get_model({compat['names'][case]!r}) failed: {e.get('error')}\n"
                             f"stanza: {e.get('stanza')}\n{(e.get('traceback') or '')[-2500:]}\n{e.get('output', '')[-1500:]}")
    assert not e.get("failure_messages"), f"{case}: 2.3.5 printed {e['failure_messages']}"
    exp = compat["expect"]
    sums = e["param_sums"]
    if case.endswith("sd2-v"):
        assert e["prediction_type"] == "v_prediction", f"{case}: loaded as {e['prediction_type']}"
    if "inpaint" in case:
        assert e["unet_in_channels"] == 9
    base = {"sd2-v": "sd2v", "inpaint": "sd1-inpaint"}
    key = next((v for k, v in base.items() if k in case), "sd1")
    assert close(sums["unet"], exp[key]["unet"]), f"{case}: UNet weights differ from the source ({sums['unet']} != {exp[key]['unet']})"
    # SD-2 single files: 2.3.5 keeps the extra OpenCLIP layer (it drops only resblocks.23), so no TE check there
    if case != "local-safetensors-sd2-v":
        assert close(sums["text_encoder"], exp[key]["text_encoder"]), \
            f"{case}: text encoder weights differ from the source (silently re-initialised?)"
    if case == "starter-diffusers-with-vae":
        assert close(sums["vae"], exp["starter-vae"]), f"{case}: the starter's VAE was not used ({sums['vae']})"
    elif case == "local-ckpt-sd1-with-vae":
        assert close(sums["vae"], exp["vae-file"]), f"{case}: the VAE given with edit --vae was not used ({sums['vae']})"
    else:
        assert close(sums["vae"], exp[key]["vae"]), f"{case}: VAE weights differ from the source"


def test_in_place_model_is_loaded_from_where_it_lies(compat):
    name = compat["names"].get("in-place-folder-sd1")
    assert name, compat["log"][-3000:]
    stanza = compat["stanzas"][name]
    weights = Path(stanza["weights"])
    assert weights.is_absolute() and weights.parts[-4:] == ("ComfyUI", "models", "checkpoints", "inplace-sd1.safetensors"), stanza
    copies = [p for p in compat["root"].rglob("inplace-sd1*") if p.suffix != ".json"]  # its manifest is ours
    assert not copies, f"an in-place model was copied into the root: {copies}"


def test_no_vae_lora_embedding_listed_as_main_model(compat):
    report = compat["report"]
    assert report, "no report"
    assert report["non_main_listed"] == [], (
        f"2.3.5 offers these as main models (choosing one fails): "
        f"{ {n: report['models'][n]['kind'] for n in report['non_main_listed']} }")


def test_lora_where_235_looks(compat):
    root = compat["root"]
    loras = compat["report"]["loras"]
    assert loras["dir"] == str(root / "loras")
    assert loras["listed"], f"2.3.5's LoraManager.list_loras() finds no LoRA in {root / 'loras'} (files there: {loras['files']})"
    assert any(v.get("vector_length") == 768 for v in loras["listed"].values()), loras["listed"]


def test_embedding_where_235_looks(compat):
    root = compat["root"]
    emb = compat["report"]["embeddings"]
    assert emb["dir"] == str(root / "embeddings")
    assert emb["files"], f"nothing in {root / 'embeddings'}: 2.3.5 loads embeddings only from there"
    loaded = [e for e in compat["report"]["models"].values() if e.get("loaded")]
    assert loaded, "no model loaded, so no embedding could be parsed"
    parsed = loaded[0]["embeddings"]["parsed"]
    assert any(isinstance(v, dict) and v.get("token_dim") == 768 for v in parsed.values()), parsed
    errors = [f for f in compat["report"]["failures"] if "embedding" in f and "TextualInversionManager" in f]
    assert not errors, errors


def test_sdxl_not_registered_in_a_235_root(compat):
    item = compat["items"].get("sdxl") or {}
    stanzas = compat["stanzas"]
    pointing = [n for n, s in stanzas.items() if isinstance(s, dict) and "my-sdxl" in str(s.get("path", ""))]
    assert not pointing, f"SDXL registered as {pointing} (2.3.5 cannot run it); item: {item}"
    assert item.get("status") != "installed", f"SDXL reported as installed: {item}"
    assert item.get("message"), "SDXL refused without a message saying why"


def test_main_models_load_when_hub_unreachable(compat):
    """2.3.5 online but the hub not answering: what loads offline must still load (``path:`` stanzas
    make no request; a ``repo_id:`` main stanza fails there even with every file cached)."""
    offline, online = compat["report"], compat["online"]
    assert online, "no report from the --online-recorder run"
    broken = {n: (e.get("error") or "", e.get("online_requests"))
              for n, e in online["models"].items()
              if offline["models"].get(n, {}).get("loaded") and not e.get("loaded")}
    assert not broken, f"load only offline (hub requests made): {broken}"


def test_driver_reports_no_other_failure(compat):
    """Everything the driver counted as a failure (the union of the above, with 2.3.5's own words)."""
    failures = compat["report"].get("failures", ["no report"])
    assert not failures, "\n".join(failures)
