"""The headless installer: plan flags, ``--plan FILE``, ``--dry-run``, ``--json``, and the
``scan`` and ``verify`` subcommands.  ``cli.py`` calls exactly :func:`add_plan_arguments`,
:func:`register_subcommands`, :func:`has_plan_flags` and :func:`run_headless`.

This module must import fast (``--help`` and the form's start-up go through it):
only the standard library and our bottom layers at module level.

Exit codes: 0 every item succeeded or was already there; 1 any item failed (each
failure is one line on stderr with its hint); 2 usage errors; 130 cancelled (Ctrl-C).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Optional

from invokeai_model_install.app.common import check_writable
from invokeai_model_install.errors import UnknownModelError, UsageError
from invokeai_model_install.root.layout import RootLayout
from invokeai_model_install.app.common import is_interactive as _interactive  # tests replace it
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.net.settings import DownloadSettings
from invokeai_model_install.root.catalog import StarterModel

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130

_PLAN_DESTS = (
    "yes", "default_only", "add", "delete", "purge", "scan_dir", "autoscan", "convert", "full_precision",
    "prediction_type", "device", "dry_run", "plan", "json", "lock_files", "in_place", "allow_suspicious",
    "support_models", "download_unsupported",
)


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """The plan flags of the headless installer (any of them means: run headless)."""
    g = parser.add_argument_group(
        "install options (headless)",
        "Any of these runs the installer without the form. They build the same plan as the form and --plan FILE.",
    )
    g.add_argument("--yes", "-y", action="store_true",
                   help="install the recommended starter models (and answer yes to creating a missing root)")
    g.add_argument("--default_only", "--default-only", dest="default_only", action="store_true",
                   help="install only the catalogue's default starter model")
    g.add_argument("--add", nargs="+", action="extend", metavar="ITEM", default=[],
                   help="install these: starter names (see the `starters` command), HuggingFace repo ids (owner/name[:subfolder][@revision]), "
                        "URLs of .safetensors/.ckpt files, model files or folders")
    g.add_argument("--delete", nargs="+", action="extend", metavar="NAME", default=[],
                   help="remove these models from models.yaml (files are kept unless --purge)")
    g.add_argument("--purge", action="store_true", help="with --delete: also delete their files inside ROOT/models/, ROOT/loras/ or ROOT/embeddings/")
    g.add_argument("--scan-dir", "--scan_dir", dest="scan_dir", metavar="DIR",
                   help="import every model file under DIR (recursively) that is not installed yet")
    scan = g.add_mutually_exclusive_group()
    scan.add_argument("--autoscan", dest="autoscan", action="store_const", const=True, default=None,
                      help="with --scan-dir: let InvokeAI scan DIR at every startup (writes --autoconvert to invokeai.init)")
    scan.add_argument("--no-autoscan", dest="autoscan", action="store_const", const=False,
                      help="turn the startup scan off (removes --autoconvert from invokeai.init)")
    g.add_argument("--convert", action="store_true",
                   help="convert imported single-file checkpoints to diffusers folders (offline)")
    g.add_argument("--in-place", "--in_place", dest="in_place", action="store_true",
                   help="with --add DIR or --scan-dir DIR (e.g. a ComfyUI or A1111 models folder): register the models "
                        "where they are, recursively; never copy, move or convert them; files this root cannot use are "
                        "skipped with a note")
    g.add_argument("--full-precision", "--full_precision", dest="full_precision", action="store_true",
                   help="download and convert in fp32 instead of fp16")
    g.add_argument("--prediction-type", "--prediction_type", dest="prediction_type", choices=("epsilon", "v"),
                   help="answer for SD-2 checkpoints whose prediction type cannot be read: "
                        "v for 768-pixel models, epsilon for 512-pixel base models")
    g.add_argument("--allow-suspicious", "--allow_suspicious", dest="allow_suspicious", nargs="+", action="extend",
                   metavar="FILE_OR_NAME", default=[],
                   help="install these pickle files (.ckpt/.pt/.bin: a file name, path or import line) although the "
                        "safety scan calls them suspicious (refused by default); dangerous files are never installed")
    g.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default=None,
                   help="where conversions run (default auto: CUDA when present)")
    g.add_argument("--max-connections", "--max_connections", dest="max_connections", type=_connections, metavar="N",
                   help="the most HTTP connections at once, across files and ranges of large files "
                        "(1-64; default $INVOKEAI_MAX_CONNECTIONS, else 8; over plain http a file starts on one "
                        "and gets more while they raise the rate)")
    g.add_argument("--support-models", "--support_models", dest="support_models", action="store_true",
                   help="install the support models InvokeAI 2.3.5 needs to load checkpoint models (CLIP, the safety "
                        "checker, the SD-2 text encoder; into ROOT/models/hub). invokeai-configure does this")
    g.add_argument("--download-unsupported", "--download_unsupported", dest="download_unsupported", action="store_true",
                   help="download a model InvokeAI 2.3.5 cannot run (e.g. SDXL) anyway: its files are kept in the root, "
                        "not registered in models.yaml (for ComfyUI or a newer InvokeAI)")
    g.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                   help="show what would be installed, where, and how many bytes it needs; write nothing")
    g.add_argument("--plan", metavar="FILE",
                   help="read the plan from a YAML file (flags add to it); keys: install, add, remove, purge, scan_dir, "
                        "autoscan, convert, precision, device, prediction_type")
    g.add_argument("--lock-files", "--lock_files", dest="lock_files", metavar="DIR",
                   help="with --plan LOCK_FILE (from `freeze`): take the locked files from DIR (found by sha256), offline")
    g.add_argument("--json", action="store_true", help="print a machine-readable result (JSON) on stdout instead of progress")


def _connections(text: str) -> int:
    """argparse type for --max-connections: an integer from 1 to 64."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of connections from 1 to 64")
    return n


def settings_from_args(args: argparse.Namespace) -> DownloadSettings | None:
    """Download settings from the environment, with the command line's overrides (None: all defaults)."""
    n = getattr(args, "max_connections", None)
    if n is None:
        return None  # the worker reads the environment itself
    return DownloadSettings.from_env(max_connections=n)


def register_subcommands(subparsers: Any) -> None:
    """``scan [DIR]`` and ``verify [NAME...]``."""
    p = subparsers.add_parser(
        "scan",
        help="import new model files from a folder (default: the --autoconvert folder in invokeai.init)",
        description="Perform InvokeAI's startup scan: import every model file under DIR that is not installed yet "
        "(by path and by content hash), converting checkpoints to diffusers like --autoconvert does.",
    )
    p.add_argument("scan_target", nargs="?", metavar="DIR", help="folder to scan (default: --autoconvert in ROOT/invokeai.init)")
    p.add_argument("--no-convert", dest="scan_convert", action="store_false", default=True,
                   help="register checkpoints as they are instead of converting them to diffusers")
    p.add_argument("--json", dest="sub_json", action="store_true", help="print a machine-readable result (JSON)")
    p.set_defaults(handler=cmd_scan)

    p = subparsers.add_parser(
        "verify",
        help="re-check installed models' files against their manifests (sizes and sha256)",
        description="Re-hash the files of installed models and compare them with the manifests written at install time "
        "(ROOT/models/.manifests). Exit status 1 when any file is missing or changed.",
    )
    p.add_argument("verify_names", nargs="*", metavar="NAME", help="models to check (default: every model with a manifest)")
    p.add_argument("--json", dest="sub_json", action="store_true", help="print a machine-readable result (JSON)")
    p.set_defaults(handler=cmd_verify)


def has_plan_flags(args: argparse.Namespace) -> bool:
    """True when any plan flag was given (the installer then runs headless)."""
    for dest in _PLAN_DESTS:
        value = getattr(args, dest, None)
        if value not in (None, False, [], ()):
            return True
    return False


# --- plan from flags ---------------------------------------------------------------------------


def build_plan(args: argparse.Namespace, catalog_path: Path | None = None) -> InstallPlan:
    """The :class:`InstallPlan` of the flags (on top of ``--plan FILE`` when given).

    Raises :class:`UsageError` for contradictions (exit status 2).
    """
    from invokeai_model_install.install.plan_file import load_plan_file

    base = load_plan_file(args.plan) if getattr(args, "plan", None) else InstallPlan()
    starters = list(base.install_starters)
    imports = list(base.imports)
    adds = list(getattr(args, "add", None) or [])
    need_catalog = getattr(args, "yes", False) or getattr(args, "default_only", False) or adds
    catalog: dict[str, StarterModel] = {}
    if need_catalog:
        from invokeai_model_install.root.catalog import load_catalog

        catalog = load_catalog(catalog_path)
    if getattr(args, "default_only", False):
        defaults = [k for k, m in catalog.items() if m.default]
        if not defaults:
            raise UsageError("--default_only: the starter catalogue has no default model", "use --add NAME instead")
        starters += defaults
    elif getattr(args, "yes", False):
        starters += [k for k, m in catalog.items() if m.recommended and m.runs_in_invokeai23]
    for item in adds:
        if item in catalog:
            starters.append(item)
        elif _looks_like_a_name(item):
            raise unknown_starter(item, catalog)
        else:
            imports.append(item)
    removals = list(base.remove_starters) + list(getattr(args, "delete", None) or [])
    purge = base.purge or bool(getattr(args, "purge", False))
    if getattr(args, "purge", False) and not removals:
        raise UsageError("--purge needs --delete NAME (it deletes the files of removed models)", "add --delete NAME")
    scan_dir = base.scan_dir
    if getattr(args, "scan_dir", None):
        scan_dir = Path(os.path.expanduser(args.scan_dir)).absolute()
    autoscan = base.autoscan if getattr(args, "autoscan", None) is None else args.autoscan
    if getattr(args, "in_place", False) and (getattr(args, "convert", False) or base.convert):
        raise UsageError("--in-place registers models where they are and --convert writes diffusers copies: choose one",
                         "drop --convert (or convert one model later with `convert NAME`)")
    if autoscan is True and scan_dir is None:
        raise UsageError("--autoscan needs --scan-dir DIR (the folder InvokeAI scans at startup)", "add --scan-dir DIR")
    return InstallPlan(
        install_starters=tuple(dict.fromkeys(starters)),
        remove_starters=tuple(dict.fromkeys(removals)),
        purge=purge,
        imports=tuple(dict.fromkeys(imports)),
        scan_dir=scan_dir,
        autoscan=autoscan,
        convert=base.convert or bool(getattr(args, "convert", False)),
        precision="fp32" if getattr(args, "full_precision", False) else base.precision,
        device=getattr(args, "device", None) or base.device,
        prediction_type=getattr(args, "prediction_type", None) or base.prediction_type,
        convert_models=base.convert_models,
        delete_original=base.delete_original,
        locked=base.locked,
        in_place=base.in_place or bool(getattr(args, "in_place", False)),
        lock_files=_lock_files(args, base),
        allow_suspicious=tuple(dict.fromkeys([*base.allow_suspicious, *(getattr(args, "allow_suspicious", None) or [])])),
        support_models=base.support_models or bool(getattr(args, "support_models", False)),
        download_unsupported=base.download_unsupported or bool(getattr(args, "download_unsupported", False)),
        extra=base.extra,
    )


def _looks_like_a_name(item: str) -> bool:
    """True when ``item`` can only be meant as a starter name: one word that is not a URL, not a repo id
    (owner/name) and not an existing file or folder."""
    text = item.strip()
    if not text or any(ch.isspace() for ch in text) or "/" in text or "\\" in text or ":" in text:
        return False
    return not Path(os.path.expanduser(text)).exists()


def unknown_starter(name: str, catalog: Mapping[str, StarterModel]) -> UnknownModelError:
    """An unknown starter name, with the closest starter names when one is near (a typo)."""
    import difflib

    close = difflib.get_close_matches(name, list(catalog), n=1, cutoff=0.6)
    if not close:  # "inpainting" is in "sd-inpainting-1.5"
        close = [k for k in catalog if name.lower() in k.lower()][:2]
    message = f"{name!r} is not a starter model, a URL, a HuggingFace repo id (owner/name) or an existing file or folder"
    if close:
        hint = "did you mean " + " or ".join(repr(c) for c in close) + "? `invokeai-model-install starters` lists the names"
    else:
        hint = "run `invokeai-model-install starters` to see the starter names"
    return UnknownModelError(message, hint)


def check_names(plan: InstallPlan, layout: RootLayout, catalog_path: Path | None) -> None:
    """Unknown names stop the run before anything starts (exit status 2): removals that are not
    in models.yaml, starters (from a plan file) that are not in the catalogue."""
    if plan.install_starters:
        from invokeai_model_install.root.catalog import load_catalog

        catalog = load_catalog(catalog_path)
        for key in plan.install_starters:
            if key not in catalog:
                raise unknown_starter(key, catalog)
    if plan.remove_starters:
        from invokeai_model_install.root.registry import Registry

        stanzas = Registry(layout.models_yaml).load() if layout.models_yaml.exists() else {}
        for name in plan.remove_starters:
            if name not in stanzas:
                import difflib

                close = difflib.get_close_matches(name, list(stanzas), n=1, cutoff=0.6)
                raise UnknownModelError(
                    f"no model named {name!r} in {layout.models_yaml}",
                    f"did you mean {close[0]!r}? `invokeai-model-install list` shows the names" if close
                    else "run `invokeai-model-install list` to see the names",
                )


def _lock_files(args: argparse.Namespace, base: InstallPlan) -> Optional[Path]:
    given = getattr(args, "lock_files", None)
    if not given:
        return base.lock_files
    path = Path(os.path.expanduser(given)).absolute()
    if not path.is_dir():
        raise UsageError(f"--lock-files {given}: no such folder", "give the folder that holds the locked files")
    if not base.locked:
        raise UsageError("--lock-files needs --plan LOCK_FILE (a file written by `freeze`)", "add --plan FILE")
    return path


# --- running ----------------------------------------------------------------------------------


def run_headless(args: argparse.Namespace, layout: RootLayout, catalog_path: Path | None) -> int:
    """Build the plan from the flags and run it (or dry-run it); returns the exit status."""
    plan = build_plan(args, catalog_path)
    check_names(plan, layout, catalog_path)
    if plan.is_empty():
        print(
            "Nothing to install: give --yes (recommended starters), --add ITEM (`invokeai-model-install starters` lists the "
            "starter names), --delete NAME, --scan-dir DIR or --plan FILE, or run in a terminal for the form.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    settings = settings_from_args(args)
    if getattr(args, "dry_run", False):
        return dry_run(plan, layout, catalog_path, as_json=bool(getattr(args, "json", False)), settings=settings)
    return execute(plan, layout, catalog_path, as_json=bool(getattr(args, "json", False)), settings=settings)


def execute(
    plan: InstallPlan,
    layout: RootLayout,
    catalog_path: Path | None,
    *,
    as_json: bool = False,
    settings: DownloadSettings | None = None,
    mode: str | None = None,
    stdout: Any = None,
    stderr: Any = None,
) -> int:
    """Run ``plan`` in the background, render its events, print failures; returns the exit status.

    ``mode`` defaults to ``$INVOKEAI_INSTALL_WORKER``, else :func:`worker_mode_for` the plan.
    """
    from invokeai_model_install.install import worker
    from invokeai_model_install.events import QuestionAsked
    from invokeai_model_install.app.render_rich import make_renderer

    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    mode = mode or os.environ.get("INVOKEAI_INSTALL_WORKER") or worker_mode_for(plan)
    if mode == "thread":  # what the worker process sets for itself (library chatter off)
        for var, value in (("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("DIFFUSERS_VERBOSITY", "error"), ("TRANSFORMERS_VERBOSITY", "error")):
            os.environ.setdefault(var, value)
    check_writable(layout)
    renderer = None if as_json else make_renderer(out)
    interactive = not as_json and _interactive()
    handle = worker.start_install(plan, layout, settings=settings, catalog_path=catalog_path, mode=mode)
    interrupts = 0
    if renderer is not None:
        renderer.start()
    try:
        while True:
            try:
                event = handle.poll(0.1)
                if event is None:
                    if handle.done and handle.poll(0) is None:
                        break
                    continue
                if renderer is not None:
                    renderer(event)
                if isinstance(event, QuestionAsked):
                    handle.answer(event.qid, _ask_on_terminal(event, renderer) if interactive else "")
            except KeyboardInterrupt:
                interrupts += 1
                if interrupts == 1:
                    print("Cancelling (partial downloads are kept; Ctrl-C again to stop at once)...", file=err, flush=True)
                    handle.cancel()
                elif handle.mode == "thread":
                    raise  # stop at once: the worker thread ends with this process; partials stay for a resume
                else:
                    handle.terminate()
        result = handle.join()
    finally:
        if renderer is not None:
            renderer.stop()
    code = exit_code(result)
    for outcome in result.failed:
        if outcome.error == "Cancelled" and result.cancelled:
            continue
        print(f"error: {outcome.one_line()}", file=err, flush=True)
    if result.error:
        print(f"error: {result.error} (run the installer again to resume)", file=err, flush=True)
    if result.cancelled:
        print(f"Cancelled. Partial downloads are kept in {layout.partial_dir}; run the installer again to resume.", file=err, flush=True)
    if as_json:
        doc = result.to_json()
        doc["exit_code"] = code
        json.dump(doc, out, indent=2)
        out.write("\n")
        out.flush()
    return code


def worker_mode_for(plan: InstallPlan) -> str:
    """``process`` for a plan that converts checkpoints (torch's memory goes away with the process, and a
    second Ctrl-C can stop it inside a C call), ``thread`` for anything else: downloads, local files and
    removals run in this process, with no second interpreter to start and no modules to import again
    before the first request."""
    return "process" if (plan.convert or plan.convert_models) else "thread"


def exit_code(result: Any) -> int:
    if result.cancelled:
        return EXIT_CANCELLED
    return EXIT_OK if result.ok else EXIT_FAILED


def _ask_on_terminal(question: Any, renderer: Any) -> str:
    """Ask a worker question on the terminal; empty input or EOF answers "skip"."""
    if renderer is not None:
        renderer.stop()
    try:
        print(question.prompt)
        for i, (choice, label) in enumerate(zip(question.choices, question.labels), 1):
            print(f"  {i}) {label}")
        while True:
            try:
                text = input(f"Choose 1-{len(question.choices)}: ").strip()
            except EOFError:
                return "skip" if "skip" in question.choices else ""
            if text.isdigit() and 1 <= int(text) <= len(question.choices):
                return question.choices[int(text) - 1]
            if text in question.choices:
                return text
    finally:
        if renderer is not None:
            renderer.start()


def dry_run(plan: InstallPlan, layout: RootLayout, catalog_path: Path | None, *, as_json: bool = False,
            settings: DownloadSettings | None = None, stdout: Any = None, stderr: Any = None) -> int:
    """Print what ``plan`` would do (metadata only); writes nothing.  Exit 1 when an item cannot be resolved."""
    from invokeai_model_install.install import dry_run
    from invokeai_model_install.root.disk import free_space
    from invokeai_model_install.units import human_bytes

    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    items = dry_run.resolve_plan(plan, layout, settings, catalog_path=catalog_path)
    total = sum(max(i.bytes_to_fetch, 0) for i in items)
    free = free_space(layout.models_dir)
    errors = [i for i in items if i.status == "error"]
    if as_json:
        json.dump({"dry_run": True, "items": [dataclasses.asdict(i) for i in items], "total_bytes_to_fetch": total,
                   "free_bytes": free, "enough_space": total <= free, "exit_code": EXIT_FAILED if errors else EXIT_OK},
                  out, indent=2)
        out.write("\n")
    else:
        print(f"Dry run for {layout.root}: nothing will be downloaded or written.", file=out)
        for i in items:
            if i.status == "error":
                print(f"  {i.label}: cannot be installed (see below)", file=out)
                continue
            if i.action == "remove":
                print(f"  {i.label}: {i.what} {i.destination}".rstrip() + ("" if i.status == "remove" else f" ({i.status})"), file=out)
                continue
            size = "already installed, 0 B to fetch" if i.status == "already installed" else (
                f"{human_bytes(i.bytes_to_fetch)} to fetch" if i.bytes_to_fetch >= 0 else "size unknown")
            print(f"  {i.label}: {i.what} -> {i.destination} ({size})", file=out)
        print(f"Total to fetch: {human_bytes(total)}; free space: {human_bytes(free)}"
              + ("" if total <= free else " - NOT ENOUGH SPACE"), file=out)
    for i in errors:
        text = f"{i.label}: {i.message}" + (f" ({i.hint})" if i.hint else "")
        print("error: " + " ".join(text.split()), file=err)
    return EXIT_FAILED if errors else EXIT_OK


# --- subcommands ------------------------------------------------------------------------------


def cmd_scan(args: argparse.Namespace, layout: RootLayout, catalog_path: Path | None) -> int:
    """``scan [DIR]``: the startup scan, on demand."""
    from invokeai_model_install.root import initfile

    target = getattr(args, "scan_target", None)
    if not target:
        value = initfile.get_option(layout.init_file, "--autoconvert")
        if not isinstance(value, str) or not value:
            raise UsageError(
                f"no folder to scan: give DIR, or set one with --scan-dir DIR --autoscan (none in {layout.init_file})",
                "run `invokeai-model-install scan DIR`",
            )
        target = value
    path = Path(os.path.expanduser(target)).absolute()
    if not path.is_dir():
        raise UsageError(f"scan folder {path} does not exist", "check the path")
    plan = InstallPlan(
        scan_dir=path,
        convert=bool(getattr(args, "scan_convert", True)),
        precision="fp32" if getattr(args, "full_precision", False) else "fp16",
        device=getattr(args, "device", None) or "auto",
        prediction_type=getattr(args, "prediction_type", None),
        allow_suspicious=tuple(getattr(args, "allow_suspicious", None) or ()),
    )
    as_json = bool(getattr(args, "sub_json", False) or getattr(args, "json", False))
    if getattr(args, "dry_run", False):
        return dry_run(plan, layout, catalog_path, as_json=as_json)
    return execute(plan, layout, catalog_path, as_json=as_json)


def cmd_verify(args: argparse.Namespace, layout: RootLayout, catalog_path: Path | None) -> int:
    """``verify [NAME...]``: re-hash installed files against their manifests."""
    from invokeai_model_install.root import manifest as mf
    from invokeai_model_install.root.registry import Registry

    names = list(getattr(args, "verify_names", None) or [])
    stanzas = Registry(layout.models_yaml).load() if layout.models_yaml.exists() else {}
    manifests = {m.name: m for m in mf.all_manifests(layout)}
    for name in names:
        if name not in stanzas and name not in manifests:
            raise UnknownModelError(f"no model named {name!r} in {layout.models_yaml}")
    targets = names or sorted(set(manifests) | set(stanzas), key=lambda n: (n not in stanzas, n))
    as_json = bool(getattr(args, "sub_json", False) or getattr(args, "json", False))
    report = []
    bad = 0
    for name in targets:
        m = manifests.get(name)
        if m is None:
            report.append({"name": name, "status": "no manifest", "problems": []})
            continue
        problems = mf.verify_manifest(layout, m, full=True)
        status = "ok" if not problems else "bad"
        if name not in stanzas and layout.has_registry and m.stanza:  # (files kept for other UIs have no stanza)
            status = "not registered" if not problems else "bad"
        bad += bool(problems)
        report.append({"name": name, "status": status, "files": len(m.files), "bytes": m.total_size,
                       "problems": [dataclasses.asdict(p) for p in problems]})
    if as_json:
        json.dump({"ok": bad == 0, "models": report}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        from invokeai_model_install.units import human_bytes

        for r in report:
            if r["status"] == "no manifest":
                print(f"{r['name']}: not checked (no manifest: installed by another tool)")
            elif r["problems"]:
                for p in r["problems"]:
                    print(f"error: {r['name']}: {p['path']} {_PROBLEM_TEXT[p['problem']]} (reinstall it: run the installer with --add again)",
                          file=sys.stderr)
            else:
                extra = " (files present, not in models.yaml)" if r["status"] == "not registered" else ""
                print(f"{r['name']}: ok, {r['files']} file(s), {human_bytes(r['bytes'])}{extra}")
    return EXIT_FAILED if bad else EXIT_OK


_PROBLEM_TEXT = {"missing": "is missing", "size": "has the wrong size", "sha256": "has changed (sha256 differs)"}
