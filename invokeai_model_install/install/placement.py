"""Where a model goes under ``models/``: free names, destinations that never overwrite, moves and deletes."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path

from invokeai_model_install.errors import ConfigError
from invokeai_model_install.install.item import ItemContext
from invokeai_model_install.root import manifest as mf
from invokeai_model_install.root.layout import RootLayout

MODEL_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin")


def single_model_file(rels: list[str]) -> str | None:
    """The relpath when the download is one model file (not a folder of components)."""
    models = [r for r in rels if r.lower().endswith(MODEL_SUFFIXES)]
    if len(rels) == 1 and models:
        return rels[0]
    if len(models) == 1 and not any(Path(r).name in ("config.json", "model_index.json") for r in rels):
        return models[0]
    return None


_VARIANT_NAME = re.compile(r"^(?P<stem>[^/]+)\.(?P<variant>fp16)\.(?P<ext>safetensors|bin)$")


def strip_variants(folder: Path, rels: list[str]) -> dict[str, str]:
    """Rename ``x.fp16.safetensors`` to ``x.safetensors`` in a downloaded folder; returns old -> new relpaths.

    A diffusers folder whose weights carry the variant suffix loads only with
    ``variant="fp16"``; with plain names it loads with no arguments (what InvokeAI
    does).  Sharded sets (an index json) keep their names: the index lists them.
    """
    renamed: dict[str, str] = {}
    present = set(rels)
    for rel in rels:
        parent, _, name = rel.rpartition("/")
        m = _VARIANT_NAME.match(name)
        if not m:
            continue
        plain = f"{m['stem']}.{m['ext']}"
        new = f"{parent}/{plain}" if parent else plain
        if new in present or any(r.startswith(f"{parent}/") and r.endswith(".index.json") for r in rels if parent):
            continue
        os.replace(folder / rel, folder / new)
        renamed[rel] = new
    return renamed


def free_name(ctx: ItemContext, base: str) -> str:
    from invokeai_model_install.root.registry import sanitize_name

    taken = set(ctx.registry.names()) | {m.name for m in mf.all_manifests(ctx.layout)}
    name = sanitize_name(base)
    n = 2
    candidate = name
    while candidate in taken:
        candidate = f"{name}-{n}"
        n += 1
    return candidate


def choose_dir_dest(ctx: ItemContext, base: str, folder: Path, reuse: mf.Manifest | None = None) -> tuple[str, Path]:
    if reuse is not None and ctx.layout.is_inside_models(ctx.layout.absolute(reuse.path)):
        return reuse.name, ctx.layout.absolute(reuse.path)  # repair a damaged install where it is
    from invokeai_model_install.root.registry import sanitize_name

    taken = set(ctx.registry.names()) | {m.name for m in mf.all_manifests(ctx.layout)}
    name = sanitize_name(base)
    candidate, n = name, 2
    while candidate in taken or (folder / candidate).exists():
        candidate = f"{name}-{n}"
        n += 1
    return candidate, folder / candidate


def choose_file_dest(ctx: ItemContext, base: str, folder: Path, filename: str, reuse: mf.Manifest | None = None) -> tuple[str, Path]:
    if reuse is not None and ctx.layout.is_inside_models(ctx.layout.absolute(reuse.path)):
        return reuse.name, ctx.layout.absolute(reuse.path)
    from invokeai_model_install.root.registry import sanitize_name

    taken = set(ctx.registry.names()) | {m.name for m in mf.all_manifests(ctx.layout)}
    name = sanitize_name(base)
    candidate, n = name, 2
    while candidate in taken:
        candidate = f"{name}-{n}"
        n += 1
    stem, suffix = Path(filename).stem, Path(filename).suffix
    stem = sanitize_name(stem)
    dest, n = folder / f"{stem}{suffix}", 2
    while dest.exists():  # never overwrite a file that is there
        dest = folder / f"{stem}-{n}{suffix}"
        n += 1
    return candidate, dest


def file_size(src_path: Path, rel: str, single: str | None) -> int:
    p = src_path if single else src_path / rel
    try:
        return p.stat().st_size
    except OSError:
        return 0


def refresh_mtimes(layout: RootLayout, m: mf.Manifest) -> mf.Manifest:
    files = []
    for rec in m.files:
        try:
            st = layout.absolute(rec.path).stat()
            files.append(dataclasses.replace(rec, size=st.st_size, mtime_ns=st.st_mtime_ns))
        except OSError:
            files.append(rec)
    return dataclasses.replace(m, files=tuple(files))


def unlink_quiet(p: Path) -> None:
    try:
        p.unlink()
    except OSError:
        pass


def remove_path(layout: RootLayout, path: Path) -> None:
    """Delete a file or folder, only ever inside ``models/``."""
    if not layout.is_inside_models(path):
        raise ConfigError(f"refusing to delete {path}: it is outside {layout.models_dir}", "move it away by hand")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
