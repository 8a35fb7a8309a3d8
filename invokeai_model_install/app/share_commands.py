"""``link``, ``unlink``, ``dedupe`` (and ``freeze``): one copy of each model for every UI.

::

    invokeai-model-install link comfyui COMFY_DIR [--section NAME]
    invokeai-model-install link a1111 WEBUI_DIR
    invokeai-model-install unlink comfyui COMFY_DIR [--section NAME]
    invokeai-model-install unlink a1111 WEBUI_DIR
    invokeai-model-install dedupe [--dry-run] [--dir DIR]... [--min-size BYTES] [--json]
    invokeai-model-install freeze [--output FILE]

The work is the core's (:mod:`invokeai_model_install.share`); this module parses and prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from invokeai_model_install.errors import RootError


def register_subcommands(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "link",
        help="let ComfyUI or A1111/Forge use this root's models (no second copy)",
        description="comfyui COMFY_DIR: add (or update) one section of COMFY_DIR/extra_model_paths.yaml pointing "
        "ComfyUI at the root's folders; the file's other sections and comments stay, the previous file is kept as "
        ".bak. a1111 WEBUI_DIR: hard-link each single-file model into A1111's model folders (symlinks across "
        "filesystems; where neither works, prints the --ckpt-dir/--lora-dir/... flags to use). See docs/sharing.md.",
    )
    targets = p.add_subparsers(dest="link_target", metavar="UI", title="UIs", required=True)
    t = targets.add_parser("comfyui", help="write a section of COMFY_DIR/extra_model_paths.yaml")
    t.add_argument("ui_dir", metavar="COMFY_DIR", help="the ComfyUI folder (holds main.py)")
    t.add_argument("--section", default="invokeai", metavar="NAME", help="name of our section (default: invokeai)")
    t.set_defaults(handler=cmd_link)
    t = targets.add_parser("a1111", help="hard-link models into an A1111/Forge folder")
    t.add_argument("ui_dir", metavar="WEBUI_DIR", help="the A1111 or Forge folder (holds webui.py)")
    t.set_defaults(handler=cmd_link)

    p = subparsers.add_parser(
        "unlink",
        help="undo `link`: remove our section / the links we made",
        description="comfyui COMFY_DIR: remove only our section of extra_model_paths.yaml (previous file kept as .bak). "
        "a1111 WEBUI_DIR: remove the links `link a1111` made, each only while it is still one of the root's files.",
    )
    targets = p.add_subparsers(dest="link_target", metavar="UI", title="UIs", required=True)
    t = targets.add_parser("comfyui", help="remove our section of COMFY_DIR/extra_model_paths.yaml")
    t.add_argument("ui_dir", metavar="COMFY_DIR")
    t.add_argument("--section", default="invokeai", metavar="NAME", help="name of our section (default: invokeai)")
    t.set_defaults(handler=cmd_unlink)
    t = targets.add_parser("a1111", help="remove the links made in an A1111/Forge folder")
    t.add_argument("ui_dir", metavar="WEBUI_DIR")
    t.set_defaults(handler=cmd_unlink)

    p = subparsers.add_parser(
        "dedupe",
        help="make identical model files share one copy (hard links or reflinks)",
        description="Find identical files (same size, then same sha256) under the root's model folders, the UI folders "
        "`link` recorded, models registered in place and any --dir, and replace each duplicate by a reflink (where the "
        "filesystem has them) or a hard link to one kept copy. Every file is hashed again right before it is replaced: "
        "a file changed since the scan is never merged. Prints the bytes reclaimed.",
    )
    p.add_argument("--dry-run", "--dry_run", dest="dedupe_dry_run", action="store_true",
                   help="only report what would be merged and the bytes it would reclaim")
    p.add_argument("--dir", dest="dedupe_dirs", action="append", default=[], metavar="DIR",
                   help="also look in DIR (recursively); may be repeated")
    p.add_argument("--min-size", dest="dedupe_min_size", type=int, default=None, metavar="BYTES",
                   help="leave smaller files alone (default 1048576: configs a user may edit stay separate)")
    p.add_argument("--json", dest="sub_json", action="store_true", help="print a machine-readable result (JSON)")
    p.set_defaults(handler=cmd_dedupe)

    p = subparsers.add_parser(
        "freeze",
        help="write a lock file: every installed model's source, pinned revision, files, sizes and sha256",
        description="Write every installed model down to the byte. On another machine, "
        "`invokeai-model-install --root DIR --plan LOCK_FILE` installs exactly that set (from the hub at the pinned "
        "revisions, through HF_ENDPOINT for a mirror, or with --lock-files FOLDER from a folder of files), and refuses "
        "any file whose size or sha256 differs, naming it.",
    )
    p.add_argument("--output", "-o", dest="freeze_output", metavar="FILE", help="write the lock file here (default: stdout)")
    p.set_defaults(handler=cmd_freeze)


def _need_root(layout: Any) -> None:
    if not layout.exists():
        raise RootError(f"no InvokeAI root at {layout.root}")


def cmd_link(args: argparse.Namespace, layout: Any, catalog_path: Path | None) -> int:
    _need_root(layout)
    if layout.flavour != "invokeai":
        from invokeai_model_install.errors import UsageError

        raise UsageError(f"{layout.root} is a ComfyUI tree already; `link` shares an InvokeAI root's models",
                         "run `link` with --root set to the InvokeAI root")
    if args.link_target == "comfyui":
        from invokeai_model_install.share import comfyui

        r = comfyui.link(layout, args.ui_dir, section=args.section)
        if r.changed:
            print(f"Wrote section {r.section!r} of {r.path}" + (f" (previous file kept as {r.backup.name})" if r.backup else "") + ".")
        else:
            print(f"{r.path} already has section {r.section!r} for {layout.root}: nothing to change.")
        print("ComfyUI will also look in:")
        for folder_type, paths in r.folders.items():
            print(f"  {folder_type:<16} {', '.join(paths)}")
        print("Restart ComfyUI to pick the folders up.")
        return 0
    from invokeai_model_install.share import a1111

    r = a1111.link(layout, args.ui_dir)
    for method, target, source in r.linked:
        print(f"  {method:<8} {target} -> {source}")
    for path, why in r.skipped:
        print(f"  skipped  {path} ({why})")
    print(f"Linked {len(r.linked)} file(s) into {r.webui_dir}; {len(r.already)} already there; no file was copied.")
    undiffusers = a1111.diffusers_folders(layout)
    if undiffusers:
        print(f"Not linked: {len(undiffusers)} diffusers folder(s) (A1111 loads single files only).")
    if r.flags:
        print("These folders could not be linked (the filesystem allows neither hard links nor symlinks). Start A1111 with:")
        print("  " + " ".join(f"{flag} {_quote(path)}" for flag, path in r.flags.items()))
        return 1
    return 0


def _quote(path: str) -> str:
    import shlex

    return shlex.quote(path)


def cmd_unlink(args: argparse.Namespace, layout: Any, catalog_path: Path | None) -> int:
    if args.link_target == "comfyui":
        from invokeai_model_install.share import comfyui

        r = comfyui.unlink(layout, args.ui_dir, section=args.section)
        if r.changed:
            print(f"Removed section {r.section!r} from {r.path} (previous file kept as {r.backup.name}).")
        else:
            print(f"{r.path} has no section {r.section!r}: nothing to remove.")
        return 0
    from invokeai_model_install.share import a1111

    r = a1111.unlink(layout, args.ui_dir)
    for path in r.removed:
        print(f"  removed  {path}")
    for path, why in r.skipped:
        print(f"  kept     {path} ({why})")
    print(f"Removed {len(r.removed)} link(s) from {r.webui_dir}.")
    return 0


def cmd_dedupe(args: argparse.Namespace, layout: Any, catalog_path: Path | None) -> int:
    _need_root(layout)
    from invokeai_model_install.share import dedupe
    from invokeai_model_install.units import human_bytes

    r = dedupe.dedupe(layout, dry_run=args.dedupe_dry_run, extra_dirs=[Path(d).expanduser() for d in args.dedupe_dirs],
                      min_size=dedupe.DEFAULT_MIN_SIZE if args.dedupe_min_size is None else max(args.dedupe_min_size, 1))
    if args.sub_json:
        json.dump(dataclasses.asdict(r), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for g in r.groups:
        print(f"{human_bytes(g.size)} {g.sha256[:12]}  kept {g.keeper}")
        for dup, method in zip(g.duplicates, g.methods):
            print(f"    {'would link' if method == 'would' else method:<10} {dup}")
    for path, why in r.skipped:
        print(f"  skipped {path} ({why})")
    verb = "Would reclaim" if r.dry_run else "Reclaimed"
    print(f"{verb} {human_bytes(r.reclaimed_bytes)} ({r.reclaimed_bytes} bytes); "
          f"{r.scanned_files} file(s) looked at, {r.hashed_files} hashed.")
    return 0


def cmd_freeze(args: argparse.Namespace, layout: Any, catalog_path: Path | None) -> int:
    _need_root(layout)
    from invokeai_model_install.root.atomic import atomic_write_text
    from invokeai_model_install.share import lockfile
    from invokeai_model_install.units import human_bytes

    doc = lockfile.freeze(layout)
    text = lockfile.dump_lock(doc)
    models = doc["locked"]
    size = sum(f["size"] for m in models for f in m["files"])
    if not args.freeze_output:
        sys.stdout.write(text)
        return 0
    out = Path(args.freeze_output).expanduser().absolute()
    atomic_write_text(out, text)
    no_server = [m["name"] for m in models if not ({"hub", "url"} & set(m["origin"]))]
    print(f"Wrote {out}: {len(models)} model(s), {sum(len(m['files']) for m in models)} file(s), {human_bytes(size)}.")
    if no_server:
        print(f"No server has the files of {', '.join(no_server)} (converted or local): install them with --lock-files FOLDER.")
    return 0
