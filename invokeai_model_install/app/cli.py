"""``invokeai-model-install``: the installer command and its model-management subcommands.

::

    invokeai-model-install [--root DIR] [--config_file FILE] [--catalog FILE] [plan flags]
    invokeai-model-install list [--json]
    invokeai-model-install delete NAME [--purge]
    invokeai-model-install edit NAME [--name NEW] [--description T] [--vae REPO_OR_PATH]
                                     [--config YAML] [--width N] [--height N]
    invokeai-model-install default NAME
    invokeai-model-install convert NAME [--delete-original]
    invokeai-model-install web [--host 127.0.0.1] [--port 9090] [--no-browser]
    invokeai-model-install scan [DIR] | verify ...   (from headless.py)

With no subcommand the installer runs: the full-screen form on a terminal, or
the headless installer when a plan flag is given or stdin/stdout is not a tty.

Subcommand dispatch: every subparser sets ``handler`` with
``set_defaults(handler=fn)``; ``fn(args, layout, catalog_path) -> int``.
Subcommands added by ``headless.register_subcommands`` follow the same rule.

Exit codes: 0 success, 1 an operation failed, 2 bad usage or an unknown name.
Heavy modules (torch, diffusers, rich, npyscreen) are imported only where used,
so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from invokeai_model_install.errors import InstallerError, RootError, UnknownModelError, UsageError
from invokeai_model_install.app import headless
from invokeai_model_install.app.common import config_value, exit_status, is_interactive, make_layout, vae_value
from invokeai_model_install.root.layout import RootLayout

PROG = "invokeai-model-install"

#: Errors that mean "the user typed something wrong": exit status 2.
Handler = Callable[[argparse.Namespace, RootLayout, "Path | None"], int]


def build_parser() -> argparse.ArgumentParser:
    """The full parser: global options, plan flags (headless) and subcommands."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Install Stable Diffusion models into an InvokeAI root directory. "
            "With no command it opens the installer form (or runs headless when plan flags are given "
            "or there is no terminal)."
        ),
        epilog=(
            "Run `%(prog)s COMMAND --help` for a command's options, and `%(prog)s starters` for the names "
            "of the starter models. Exit status: 0 success, 1 an operation failed, 2 bad usage or an unknown name."
        ),
        # No prefix matching: `edit --config` must not be read as an abbreviation of --config_file.
        allow_abbrev=False,
    )
    parser.add_argument(
        "--root",
        metavar="DIR",
        help="InvokeAI root directory (default: $INVOKEAI_ROOT, else ~/invokeai)",
    )
    parser.add_argument(
        "--config_file",
        "--config-file",
        dest="config_file",
        metavar="FILE",
        help="use this models.yaml instead of ROOT/configs/models.yaml",
    )
    parser.add_argument(
        "--layout",
        choices=("invokeai", "comfyui"),
        default="invokeai",
        help="invokeai (default): an InvokeAI root with models.yaml; comfyui: --root is a ComfyUI folder and each "
             "model goes into ComfyUI's folder for its kind (models/checkpoints, loras, vae, ...), no models.yaml",
    )
    parser.add_argument(
        "--catalog",
        metavar="FILE",
        help="use this starter-model catalogue instead of the packaged INITIAL_MODELS.yaml",
    )
    parser.add_argument(
        "--create-root",
        "--create_root",
        dest="create_root",
        action="store_true",
        help="create the root (folders, configs, models.yaml) when it is missing, then go on; installs nothing by itself",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    p = subparsers.add_parser("list", help="list the installed models", description="List the models in models.yaml.")
    p.add_argument("--json", dest="list_json", action="store_true", help="print a JSON array instead of a table")
    p.set_defaults(handler=cmd_list)

    p = subparsers.add_parser(
        "delete",
        help="remove a model from models.yaml (--purge also deletes its files)",
        description="Remove a model from models.yaml. With --purge also delete its files, "
        "but only files inside the root's model folders (models/, loras/, embeddings/); anything else is reported and kept.",
    )
    p.add_argument("model_name", metavar="NAME", help="the model's name (see `list`)")
    p.add_argument("--purge", dest="purge_files", action="store_true", help="also delete its files inside ROOT/models/, ROOT/loras/ or ROOT/embeddings/")
    p.set_defaults(handler=cmd_delete)

    p = subparsers.add_parser(
        "edit",
        help="change a model's name, description, VAE, config or size",
        description="Change fields of an installed model's stanza in models.yaml.",
    )
    p.add_argument("model_name", metavar="NAME", help="the model's name (see `list`)")
    p.add_argument("--name", dest="new_name", metavar="NEW", help="rename the model")
    p.add_argument("--description", dest="new_description", metavar="TEXT", help="new description")
    p.add_argument(
        "--vae",
        dest="new_vae",
        metavar="REPO_OR_PATH",
        help="a VAE: HuggingFace repo id (owner/name) or a file/folder path; 'none' removes it",
    )
    p.add_argument(
        "--config",
        dest="new_config",
        metavar="YAML",
        help="legacy models only: a config .yaml path, or a packaged name like v1-inference or v2-inference-v",
    )
    p.add_argument("--width", dest="new_width", type=_positive_int, metavar="N", help="default image width")
    p.add_argument("--height", dest="new_height", type=_positive_int, metavar="N", help="default image height")
    p.set_defaults(handler=cmd_edit)

    p = subparsers.add_parser(
        "default",
        help="make a main model the one InvokeAI loads at startup",
        description="Set default: true on one main model (not a VAE, LoRA, embedding or ControlNet).",
    )
    p.add_argument("model_name", metavar="NAME", help="the model's name (see `list`)")
    p.set_defaults(handler=cmd_default)

    p = subparsers.add_parser(
        "starters",
        help="list the starter models you can install by name (--add NAME)",
        description="The starter models of the catalogue: name, download size, whether it is recommended "
        "(installed by --yes) and whether it is installed in this root.",
    )
    p.add_argument("--json", dest="starters_json", action="store_true", help="print a JSON array instead of a table")
    p.set_defaults(handler=cmd_starters)

    # `convert NAME` and `web`: their modules import nothing heavy until they run
    from invokeai_model_install.app import convert_command, web

    convert_command.register_subcommand(subparsers)
    web.register_subcommand(subparsers)
    from invokeai_model_install.app import share_commands  # link, unlink, dedupe, freeze

    share_commands.register_subcommands(subparsers)

    from invokeai_model_install.app import integrate

    integrate.register_subcommand(subparsers)
    headless.add_plan_arguments(parser)  # --yes, --add, --plan ... (headless owns them)
    headless.register_subcommands(subparsers)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``invokeai-model-install``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): argparse has printed already
        return int(exc.code or 0)
    catalog_path = Path(args.catalog).expanduser().absolute() if args.catalog else None
    handler: Handler | None = getattr(args, "handler", None)

    def run() -> int:
        layout = make_layout(args)  # inside: --layout comfyui without --root is a one-line usage error
        _check_config_file(args, layout)
        if handler is not None:
            return int(handler(args, layout, catalog_path) or 0)
        return run_installer(args, layout, catalog_path)

    return exit_status(run)


def _check_config_file(args: argparse.Namespace, layout: RootLayout) -> None:
    """A --config_file that does not exist is a typo, not an empty registry; it is created only with --yes
    (or --create-root)."""
    path = layout.config_file_override
    if path is None or path.exists():
        return
    if getattr(args, "yes", False) or getattr(args, "create_root", False):
        from invokeai_model_install.root.registry import Registry

        if layout.exists():  # a new root gets it from the first-run setup
            path.parent.mkdir(parents=True, exist_ok=True)
            Registry(path).ensure_exists()
            print(f"Created {path} (an empty models.yaml).", file=sys.stderr)
        return
    raise UsageError(
        f"--config_file {path}: the file does not exist",
        "check the path; to start a new models.yaml there, add --yes or --create-root",
    )


def run_installer(args: argparse.Namespace, layout: RootLayout, catalog_path: Path | None) -> int:
    """No subcommand: make sure the root exists, then run headless or the form."""
    if layout.flavour == "comfyui":
        return _run_into_comfyui(args, layout, catalog_path)
    if not layout.exists() and getattr(args, "dry_run", False):
        # A dry run writes nothing, not even the root's skeleton: say so and resolve anyway.
        print(f"There is no InvokeAI root at {layout.root} yet (a dry run does not create it).", file=sys.stderr)
    elif not layout.exists():
        from invokeai_model_install.app import configure

        if getattr(args, "create_root", False) or getattr(args, "yes", False):
            print(f"There is no InvokeAI root at {layout.root}: creating it (the first-run setup's folders and files).",
                  file=sys.stderr)
            configure.setup_root(layout, yes=True, open_installer=False, catalog_path=catalog_path)
        elif is_interactive():
            print(f"There is no InvokeAI root at {layout.root}.", file=sys.stderr)
            answer = input("Run the first-run setup (invokeai-configure) to create it now? [Y/n] ").strip().lower()
            if answer not in ("", "y", "yes"):
                raise RootError(f"no InvokeAI root at {layout.root}")
            configure.setup_root(layout, yes=False, open_installer=False, catalog_path=catalog_path)
        else:
            raise RootError(
                f"no InvokeAI root at {layout.root}",
                "add --create-root to create it first, which installs nothing by itself; or run "
                f"`invokeai-configure --root {layout.root} --skip-sd-weights` for the first-run setup without the starter models",
            )
    if getattr(args, "create_root", False) and not headless.has_plan_flags(args) and not is_interactive():
        print(f"The InvokeAI root at {layout.root} is ready.")
        return 0
    if headless.has_plan_flags(args) or not is_interactive():
        return int(headless.run_headless(args, layout, catalog_path) or 0)
    from invokeai_model_install.app.tui.app import run_form

    return int(run_form(layout, catalog_path=catalog_path) or 0)


def _run_into_comfyui(args: argparse.Namespace, layout: RootLayout, catalog_path: Path | None) -> int:
    """``--layout comfyui --root COMFY_DIR``: headless installs into ComfyUI's folders (no form, no models.yaml)."""
    if not layout.exists():
        raise RootError(f"no ComfyUI models folder at {layout.models_dir}",
                        "give --root the ComfyUI folder (the one that holds main.py and models/)")
    if getattr(args, "convert", False):
        raise UsageError("--convert with --layout comfyui: ComfyUI loads single-file checkpoints as they are",
                         "drop --convert")
    if not headless.has_plan_flags(args):
        raise UsageError("--layout comfyui installs without the form: say what to install",
                         "add --add ITEM (repo id, URL, file or folder), --yes (the recommended starters) or --plan FILE")
    return int(headless.run_headless(args, layout, catalog_path) or 0)


# --- model-management commands -----------------------------------------------------------


def _registry(layout: RootLayout, *, must_exist: bool = True):
    """The registry of ``layout``; a missing root is a :class:`RootError`."""
    from invokeai_model_install.root.registry import Registry

    if not layout.has_registry:
        raise UsageError(f"{layout.root} is a ComfyUI tree: it has no models.yaml to change",
                         "edit and default work on InvokeAI roots; list, delete and verify work here")
    if must_exist and not layout.models_yaml.exists() and not layout.exists():
        raise RootError(f"no InvokeAI root at {layout.root} (no {layout.models_yaml})")
    return Registry(layout.models_yaml)


def _unknown(name: str, layout: RootLayout) -> UnknownModelError:
    return UnknownModelError(f"no model named {name!r} in {layout.models_yaml}")


def model_records(layout: RootLayout) -> list[dict[str, Any]]:
    """One dict per installed model: ``name``, then its stanza fields, with ``format`` and ``default`` filled in."""
    from invokeai_model_install.root.registry import stanza_format

    if not layout.has_registry:  # a ComfyUI tree: what we installed is in the manifests
        from invokeai_model_install.root import manifest

        return [{"name": m.name, "format": m.format, "kind": m.kind, "path": m.path, "description": m.source,
                 "default": False, "source": m.source, "revision": m.revision,
                 "registered": False}
                for m in manifest.all_manifests(layout) if m.state == "installed"]
    from invokeai_model_install.root import manifest

    records = []
    stanzas = _registry(layout).load()
    for name, stanza in stanzas.items():
        record: dict[str, Any] = {"name": name}
        record.update(stanza)
        record["format"] = stanza_format(stanza)
        record["description"] = str(stanza.get("description") or "")
        record["default"] = stanza.get("default") is True
        record["kind"] = _model_kind(layout, name, stanza)
        record["registered"] = True
        records.append(record)
    for m in manifest.unregistered(layout):  # no stanza in a 2.3 root: known from their manifests
        if m.name in stanzas:
            continue
        records.append({"name": m.name, "path": m.path, "format": m.format, "kind": m.kind, "default": False,
                        "registered": False, "description": _unregistered_text(m)})
    return records


def _unregistered_text(m: Any) -> str:
    where = {"lora": "InvokeAI 2.3.5 lists it from loras/", "embedding": "InvokeAI 2.3.5 loads it from embeddings/",
             "vae": "use it with `edit MODEL --vae NAME`"}.get(m.kind, "InvokeAI 2.3.5 cannot use it; kept for other UIs")
    return f"{_KIND_WORDS.get(m.kind, m.kind)}, not in models.yaml ({where}); from {m.source}"


def _location(record: dict[str, Any]) -> str:
    for field in ("path", "weights", "repo_id"):
        if record.get(field):
            return str(record[field])
    return ""


def _vae_text(vae: Any) -> str:
    if isinstance(vae, dict):
        return str(vae.get("repo_id") or vae.get("path") or "")
    return str(vae or "")


def cmd_list(args: argparse.Namespace, layout: RootLayout, catalog_path: Path | None) -> int:
    """``list [--json]``: the installed models as a table or a JSON array."""
    records = model_records(layout)
    if args.list_json:
        json.dump(records, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    where = layout.models_yaml if layout.has_registry else layout.models_dir  # a ComfyUI tree has no models.yaml
    if not records:
        console.print(f"No models installed in {where}. Run `{PROG}` to install some.")
        return 0
    table = Table(title=f"Models in {where}", title_justify="left")
    table.add_column("Name", style="bold", no_wrap=True)
    table.add_column("Kind")
    table.add_column("Format")
    table.add_column("Default", justify="center")
    table.add_column("Location")
    table.add_column("VAE")
    table.add_column("Description")
    for record in records:
        table.add_row(
            record["name"],
            record["kind"] if record["registered"] else f"{record['kind']} (no stanza)",
            record["format"],
            "*" if record["default"] else "",
            _location(record),
            _vae_text(record.get("vae")),
            record["description"],
            )
    console.print(table)
    return 0


def cmd_default(args: argparse.Namespace, layout: RootLayout, catalog_path: Path | None) -> int:
    """``default NAME``: make one model the startup default."""
    reg = _registry(layout)
    stanza = reg.load().get(args.model_name)
    if stanza is None:
        raise _unknown(args.model_name, layout)
    kind = _model_kind(layout, args.model_name, stanza)
    if kind != "main":
        mains = [n for n, s in reg.load().items() if _model_kind(layout, n, s) == "main"]
        raise UsageError(
            f"{args.model_name!r} is a {_KIND_WORDS.get(kind, kind)}, not a main model: InvokeAI cannot start with it",
            f"choose a main model: {', '.join(mains[:5])}" + (", ..." if len(mains) > 5 else "")
            if mains else "install a main model first",
        )
    with reg.transaction() as doc:
        if doc.get(args.model_name) is None:
            raise _unknown(args.model_name, layout)
        doc.set_default(args.model_name)
    print(f"{args.model_name} is now the default model.")
    return 0


def starter_records(layout: RootLayout, catalog_path: Path | None) -> list[dict[str, Any]]:
    """One dict per starter model: ``name``, ``description``, ``size`` (bytes, 0 unknown),
    ``recommended``, ``default`` and ``installed`` (in this root's models.yaml)."""
    from invokeai_model_install.app.tui.model import installed_starters
    from invokeai_model_install.root.catalog import load_catalog
    from invokeai_model_install.root.registry import Registry

    catalog = load_catalog(catalog_path)
    stanzas = Registry(layout.models_yaml).load() if layout.models_yaml.exists() else {}
    repo_ids = {k: tuple(m.repo_ids) for k, m in catalog.items()}
    installed = set(installed_starters(list(catalog), repo_ids, stanzas))
    return [
        {"name": k, "description": m.description, "size": int(m.size or 0),
         "recommended": bool(m.recommended and m.runs_in_invokeai23),
         "default": bool(m.default), "installed": k in installed, "repo_id": m.repo_id,
         "requires": m.requires or "", "runs_in": list(m.runs_in)}
        for k, m in catalog.items()
    ]


def cmd_starters(args: argparse.Namespace, layout: RootLayout, catalog_path: Path | None) -> int:
    """``starters [--json]``: the names `--add NAME` and the form accept."""
    records = starter_records(layout, catalog_path)
    if args.starters_json:
        json.dump(records, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    from invokeai_model_install.units import human_bytes

    width = shutil.get_terminal_size((100, 24)).columns
    name_w = max([len("Name")] + [len(r["name"]) for r in records])
    rows = [("Name", "Size", "Recommended", "Installed", "Description")]
    rows += [(r["name"], human_bytes(r["size"]) if r["size"] else "?", "yes" if r["recommended"] else "",
              "yes" if r["installed"] else "",
              (f"[needs InvokeAI 3+] " if r["requires"] else "") + r["description"]) for r in records]
    print("Starter models: install one with --add NAME; --yes installs the recommended ones.")
    if any(r["requires"] for r in records):
        print("Entries marked 'needs InvokeAI 3+' (SDXL) do not run in InvokeAI 2.3.5 and are not installed into this root "
              "(--download-unsupported downloads them anyway, unregistered).")
    for name, size, rec, inst, desc in rows:
        line = f"{name.ljust(name_w)}  {size.rjust(9)}  {rec.center(11)}  {inst.center(9)}  "
        room = max(10, width - len(line) - 1)
        print(line + (desc if len(desc) <= room else desc[: room - 1] + "…"))
    return 0


_KIND_WORDS = {"vae": "VAE", "lora": "LoRA", "embedding": "textual-inversion embedding", "controlnet": "ControlNet"}


def _model_kind(layout: RootLayout, name: str, stanza: Any) -> str:
    """``main``, or the kind of a support model (``vae``, ``lora``, ...): the stanza's ``type``,
    else the kind its manifest recorded at install time."""
    if not isinstance(stanza, dict):
        return "main"
    kind = str(stanza.get("type") or "").strip().lower()
    if kind and kind not in ("main", "model", "pipeline"):
        return kind
    from invokeai_model_install.root import manifest

    try:
        record = manifest.read_manifest(layout, name)
    except (InstallerError, OSError, ValueError):
        record = None
    recorded = getattr(record, "kind", "") or ""
    return recorded if recorded and not recorded.startswith("main") else "main"


def purge_paths(layout: RootLayout, removed: dict[str, Any], remaining: dict[str, dict[str, Any]]):
    """Kept for callers of the CLI module: see :func:`registry.purge_model_files`."""
    from invokeai_model_install.root.registry import purge_model_files

    return purge_model_files(layout, removed, remaining)


def cmd_delete(args: argparse.Namespace, layout: RootLayout, catalog_path: Path | None) -> int:
    """``delete NAME [--purge]``: drop the stanza, and with --purge its files inside models/."""
    if not layout.has_registry:
        return _delete_from_comfyui(args, layout)
    from invokeai_model_install.root import manifest

    reg = _registry(layout)
    record = manifest.read_manifest(layout, args.model_name)
    if reg.load().get(args.model_name) is None and record is not None and not record.stanza:
        # a VAE, LoRA, embedding ... of a 2.3 root: no stanza, only files (and the manifest)
        if not layout.is_inside_models(layout.absolute(record.path)):
            # registered in place: forgetting it is all there is to do; --purge never deletes outside the root
            manifest.remove_manifest(layout, args.model_name)
            print(f"Removed {args.model_name}.")
            print(f"  kept {layout.absolute(record.path)} (registered in place: files outside the root are never deleted)")
            return 0
        if not args.purge_files:
            raise UsageError(f"{args.model_name} has no models.yaml stanza (a {_KIND_WORDS.get(record.kind, record.kind)} "
                             f"in {record.path}); deleting it means deleting its files",
                             f"run `delete {args.model_name} --purge`")
        deleted, kept = purge_paths(layout, {"path": record.path}, reg.load())
        manifest.remove_manifest(layout, args.model_name)
        print(f"Removed {args.model_name}.")
        for path in deleted:
            print(f"  deleted {path}")
        for path, why in kept:
            print(f"  kept {path} ({why})")
        return 0
    with reg.transaction() as doc:
        if doc.get(args.model_name) is None:
            raise _unknown(args.model_name, layout)
        removed = doc.remove(args.model_name)
        remaining = {k: dict(v) for k, v in doc.stanzas.items()}
    print(f"Removed {args.model_name} from {layout.models_yaml}.")
    if not args.purge_files:
        return 0
    deleted, kept = purge_paths(layout, removed, remaining)

    # the files are gone: the model's sidecar record goes too (as in the worker's removal)
    manifest.remove_manifest(layout, args.model_name)
    for path in deleted:
        print(f"  deleted {path}")
    for path, why in kept:
        print(f"  kept {path} ({why})")
    return 0


def _delete_from_comfyui(args: argparse.Namespace, layout: RootLayout) -> int:
    """A ComfyUI tree: forget the model's manifest; with --purge delete its file or folder inside models/."""
    from invokeai_model_install.root import manifest

    m = manifest.read_manifest(layout, args.model_name)
    if m is None:
        raise UnknownModelError(f"no model named {args.model_name!r} installed in {layout.models_dir}",
                                "run `invokeai-model-install --layout comfyui --root DIR list` to see the names")
    manifest.remove_manifest(layout, m.name)
    print(f"Removed {m.name} from the installer's records in {layout.models_dir}.")
    if not args.purge_files:
        print(f"  kept {m.path} (add --purge to delete it)")
        return 0
    path = layout.absolute(m.path)
    folders = {layout.models_dir.resolve()} | {layout.models_dir.joinpath(d).resolve() for d in _comfy_dirs()}
    if not layout.is_inside_models(path) or path.resolve() in folders:
        print(f"  kept {path} (outside {layout.models_dir}, or one of its folders)")
        return 0
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    print(f"  deleted {path}")
    return 0


def _comfy_dirs() -> set[str]:
    from invokeai_model_install.root.layout import COMFY_KIND_DIRS

    return set(COMFY_KIND_DIRS.values())


def cmd_edit(args: argparse.Namespace, layout: RootLayout, catalog_path: Path | None) -> int:
    """``edit NAME [--name NEW] [--description T] [--vae X] [--config YAML] [--width N] [--height N]``."""
    from invokeai_model_install.root.registry import sanitize_name, stanza_format

    changes = [args.new_name, args.new_description, args.new_vae, args.new_config, args.new_width, args.new_height]
    if all(value is None for value in changes):
        raise UsageError(
            f"nothing to change for {args.model_name!r}",
            "give at least one of --name, --description, --vae, --config, --width, --height",
        )
    if args.new_name is not None and sanitize_name(args.new_name) != args.new_name:
        raise UsageError(
            f"{args.new_name!r} is not a valid model name",
            f"use letters, digits and . _ + & - (e.g. {sanitize_name(args.new_name)!r})",
        )
    reg = _registry(layout)
    from invokeai_model_install.root import manifest as _mf

    if args.new_name is not None and args.new_name != args.model_name and _mf.read_manifest(layout, args.new_name) is not None:
        from invokeai_model_install.errors import NameClashError

        raise NameClashError(f"a model named {args.new_name!r} is already installed")
    with reg.transaction() as doc:
        stanza = doc.get(args.model_name)
        if stanza is None:
            raise _unknown(args.model_name, layout)
        if args.new_description is not None:
            stanza["description"] = args.new_description
        if args.new_vae is not None:
            if args.new_vae.strip().lower() in ("", "none"):
                stanza.pop("vae", None)
            else:
                stanza["vae"] = vae_value(args.new_vae, stanza, layout)
        if args.new_config is not None:
            if stanza_format(stanza) != "ckpt":
                raise UsageError(
                    f"{args.model_name!r} is a diffusers model; only legacy (ckpt) models use a config file",
                    "diffusers models carry their own configuration",
                )
            stanza["config"] = config_value(args.new_config, layout)
        if args.new_width is not None:
            stanza["width"] = args.new_width
        if args.new_height is not None:
            stanza["height"] = args.new_height
        final = args.model_name
        if args.new_name is not None and args.new_name != args.model_name:
            doc.rename(args.model_name, args.new_name)
            final = args.new_name
    if final != args.model_name:
        from invokeai_model_install.root import manifest

        record = manifest.read_manifest(layout, args.model_name)
        if record is not None:  # keep the sidecar record with its model (re-runs and `verify` look it up by name)
            manifest.rename_manifest(layout, record, final)
    print(f"Updated {final} in {layout.models_yaml}.")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
