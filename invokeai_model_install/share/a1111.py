"""``link a1111 WEBUI_DIR`` / ``unlink a1111 WEBUI_DIR``: the root's models visible to A1111 / Forge.

A1111 loads single files from fixed folders under its install; each of our single-file models gets an entry
there: a **hard link** when both are on one filesystem (the same bytes, no second copy, and no dangling
link when one side moves), else a **symlink**, and when neither can be made (exFAT, FAT32, some network
shares, Windows without the symlink privilege) nothing is written for that folder and the result carries
the command-line flags that point A1111 at our folders instead.  Never a copy.

Diffusers folders are not linked: A1111 loads single files only (the result names them).
What was linked is recorded in ``ROOT/models/.links.json`` so ``unlink a1111`` removes exactly those
entries (and only while they are still the same file as ours) and ``dedupe`` looks in these folders too.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

from invokeai_model_install.errors import UsageError
from invokeai_model_install.formats.files import MODEL_SUFFIXES
from invokeai_model_install.root.layout import RootLayout
from invokeai_model_install.share import folders

#: our kind -> (A1111 folder relative to WEBUI_DIR, the command-line flag that points A1111 elsewhere)
A1111_FOLDERS: dict[str, tuple[str, str]] = {
    "main": ("models/Stable-diffusion", "--ckpt-dir"),
    "vae": ("models/VAE", "--vae-dir"),
    "lora": ("models/Lora", "--lora-dir"),
    "controlnet": ("models/ControlNet", "--controlnet-dir"),
    "t2i_adapter": ("models/ControlNet", "--controlnet-dir"),
    "upscaler": ("models/ESRGAN", "--esrgan-models-path"),
    "embedding": ("embeddings", "--embeddings-dir"),
}

#: besides weights, the companion config of a checkpoint (A1111 reads <stem>.yaml beside it)
_COMPANIONS = (".yaml",)


@dataclass
class A1111Result:
    webui_dir: Path
    linked: list[tuple[str, str, str]] = field(default_factory=list)  # (method hardlink|symlink, target, source)
    already: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    flags: dict[str, str] = field(default_factory=dict)  # flag -> our folder, for kinds nothing could be linked for
    removed: list[str] = field(default_factory=list)


def _check_webui(webui: Path) -> None:
    if not webui.is_dir():
        raise UsageError(f"A1111 folder {webui} does not exist", "give the folder that holds webui.py (or Forge's)")
    if not any((webui / m).exists() for m in ("webui.py", "launch.py", "models", "modules")):
        raise UsageError(f"{webui} does not look like an A1111/Forge folder (no webui.py, launch.py or models/)",
                         "give the folder that holds webui.py")


def model_files(layout: RootLayout) -> dict[str, list[tuple[Path, Path]]]:
    """kind -> (file, path relative to its kind folder) for every single file A1111 can load."""
    out: dict[str, list[tuple[Path, Path]]] = {}
    for kind, paths in folders.root_folders(layout).items():
        if kind not in A1111_FOLDERS:
            continue
        for base in paths:
            if not base.is_dir():
                continue
            for f in sorted(base.rglob("*")):
                if not f.is_file() or any(part.startswith(".") for part in f.relative_to(base).parts):
                    continue
                if f.suffix.lower() in MODEL_SUFFIXES or (kind == "main" and f.suffix.lower() in _COMPANIONS):
                    if _inside_diffusers_folder(f, base):
                        continue
                    out.setdefault(kind, []).append((f, f.relative_to(base)))
    return out


def diffusers_folders(layout: RootLayout) -> list[Path]:
    """Model folders (diffusers format) A1111 cannot load: the root's immediate sub-folders with a config."""
    found = []
    for paths in folders.root_folders(layout).values():
        for base in paths:
            if base.is_dir():
                found += [d for d in sorted(base.iterdir()) if d.is_dir() and not d.name.startswith(".")
                          and ((d / "config.json").exists() or (d / "model_index.json").exists())]
    return list(dict.fromkeys(found))


def _inside_diffusers_folder(f: Path, base: Path) -> bool:
    if (base / "config.json").exists() or (base / "model_index.json").exists():
        return True  # the base itself is a diffusers component (a hub VAE's snapshot in models/hub)
    for parent in f.relative_to(base).parents:
        if parent == Path("."):
            break
        if (base / parent / "config.json").exists() or (base / parent / "model_index.json").exists():
            return True
    return False


def _make_link(src: Path, dest: Path) -> str:
    """Hard link, else symlink; returns the method; raises OSError when neither works."""
    try:
        os.link(src, dest)
        return "hardlink"
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES):
            raise
    os.symlink(src, dest)
    return "symlink"


def link(layout: RootLayout, webui_dir: str | os.PathLike[str], *, _linker=_make_link) -> A1111Result:
    """Make every single-file model of the root visible in WEBUI_DIR's model folders."""
    webui = Path(os.path.expanduser(str(webui_dir))).absolute()
    _check_webui(webui)
    result = A1111Result(webui)
    record = folders.read_links(layout)
    mine = record.setdefault("a1111", {}).setdefault(str(webui), {"links": []})
    known = set(mine["links"])
    for kind, files in model_files(layout).items():
        rel_folder, flag = A1111_FOLDERS[kind]
        target_dir = webui / rel_folder
        failed = False
        for src, rel in files:
            dest = target_dir / rel
            if dest.exists() or dest.is_symlink():
                if folders.same_file(src, dest):
                    result.already.append(str(dest))
                    known.add(str(dest))
                else:
                    result.skipped.append((str(dest), "a different file of that name is already there"))
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                method = _linker(src, dest)
            except OSError as exc:
                failed = True
                result.skipped.append((str(dest), f"cannot link here ({exc.strerror or exc})"))
                continue
            result.linked.append((method, str(dest), str(src)))
            known.add(str(dest))
        if failed:
            result.flags[flag] = str(folders.root_folders(layout)[kind][0])
    mine["links"] = sorted(known)
    folders.write_links(layout, record)
    return result


def unlink(layout: RootLayout, webui_dir: str | os.PathLike[str]) -> A1111Result:
    """Remove the entries ``link a1111`` made, only while each is still one of our files."""
    webui = Path(os.path.expanduser(str(webui_dir))).absolute()
    result = A1111Result(webui)
    record = folders.read_links(layout)
    mine = record.get("a1111", {}).get(str(webui))
    if not mine:
        return result
    ours = [f for files in model_files(layout).values() for f, _ in files]
    for entry in mine.get("links", []):
        dest = Path(entry)
        if not (dest.exists() or dest.is_symlink()):
            continue
        if dest.is_symlink() and not dest.exists():
            dest.unlink()  # a dangling link we made: its model is gone
            result.removed.append(entry)
            continue
        if any(folders.same_file(dest, f) for f in ours):
            dest.unlink()
            result.removed.append(entry)
        else:
            result.skipped.append((entry, "no longer one of the root's files; kept"))
    del record["a1111"][str(webui)]
    folders.write_links(layout, record)
    return result
