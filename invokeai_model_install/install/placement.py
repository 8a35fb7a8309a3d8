"""Where a model goes under ``models/``: free names, destinations that never overwrite, moves and deletes."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from invokeai_model_install.errors import ConfigError
from invokeai_model_install.formats.files import MODEL_SUFFIXES
from invokeai_model_install.install.item import ItemContext
from invokeai_model_install.root import manifest as mf
from invokeai_model_install.root.layout import RootLayout

def single_model_file(rels: list[str]) -> str | None:
    """The relpath when the download is one model file (not a folder of components)."""
    models = [r for r in rels if r.lower().endswith(MODEL_SUFFIXES)]
    if len(rels) == 1 and models:
        return rels[0]
    if len(models) == 1 and not any(Path(r).name in ("config.json", "model_index.json") for r in rels):
        return models[0]
    return None


_VARIANT_NAME = re.compile(r"^(?P<stem>[^/]+)\.(?P<variant>fp16)\.(?P<ext>safetensors|bin)$")


_VARIANT_INDEX = re.compile(r"^(?P<stem>[^/]+)\.(?P<ext>safetensors|bin)\.index\.fp16\.json$")


#: a shard of a variant set as diffusers and transformers name it today: ``model.fp16-00001-of-00002.safetensors``
_VARIANT_SHARD = re.compile(r"^(?P<stem>[^/]+)\.fp16(?P<shard>-\d+-of-\d+)\.(?P<ext>safetensors|bin)$")


def _plain(name: str) -> str | None:
    """The name without the ``fp16`` variant: ``x.fp16.safetensors``, ``x-00001-of-00002.fp16.safetensors``
    (older writers) and ``x.fp16-00001-of-00002.safetensors`` lose it; None for other names."""
    m = _VARIANT_SHARD.match(name)
    if m:
        return f"{m['stem']}{m['shard']}.{m['ext']}"
    m = _VARIANT_NAME.match(name)
    return f"{m['stem']}.{m['ext']}" if m else None


def _sharded_moves(folder: Path, parent: str, index: str, names: set[str]) -> tuple[dict[str, str], dict] | None:
    """Renames for one fp16 shard index and its shards (``{old: new}`` names in ``parent``) and the rewritten
    index, or None to leave that set alone (an unexpected layout: it still loads with ``variant="fp16"``)."""
    m = _VARIANT_INDEX.match(index)
    new_index = f"{m['stem']}.{m['ext']}.index.json"
    if new_index in names:
        return None
    try:
        data = json.loads((folder / parent / index).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
        return None
    moves = {index: new_index}
    for shard in set(weight_map.values()):
        plain = _plain(shard)
        if plain is None or shard not in names or (plain in names and plain not in moves.values()):
            return None
        moves[shard] = plain
    if len(set(moves.values())) != len(moves):
        return None
    data = dict(data, weight_map={k: moves[v] for k, v in weight_map.items()})
    return moves, data


def strip_variants(folder: Path, rels: list[str]) -> dict[str, str]:
    """Rename ``x.fp16.safetensors`` to ``x.safetensors`` in a downloaded folder; returns old -> new relpaths.

    A diffusers folder whose weights carry the variant suffix loads only with
    ``variant="fp16"``; with plain names it loads with no arguments (what InvokeAI
    does).  A sharded fp16 set (``X.safetensors.index.fp16.json`` naming
    ``X-00001-of-00002.fp16.safetensors``...) is renamed as a whole: every shard, and
    the index rewritten to the plain names as ``X.safetensors.index.json`` (the caller
    re-hashes it).  A set laid out any other way, or a plain index's shards, keep
    their names: the folder still loads as it was.
    """
    renamed: dict[str, str] = {}
    by_parent: dict[str, set[str]] = {}
    for rel in rels:
        parent, _, name = rel.rpartition("/")
        by_parent.setdefault(parent, set()).add(name)
    for parent, names in sorted(by_parent.items()):
        def rel_of(name: str, _parent: str = parent) -> str:
            return f"{_parent}/{name}" if _parent else name

        moves: dict[str, str] = {}
        rewrites: dict[str, dict] = {}
        left_alone: set[str] = set()
        for index in sorted(n for n in names if _VARIANT_INDEX.match(n)):
            found = _sharded_moves(folder, parent, index, names)
            if found is None:
                left_alone.add(index)
                continue
            set_moves, data = found
            if set(set_moves) & set(moves):
                left_alone.add(index)
                continue
            moves.update(set_moves)
            rewrites[index] = data
        if left_alone or any(n.endswith(".index.json") for n in names):
            # a set we do not rename lists its shards by name: rename nothing in this folder
            moves, rewrites = {}, {}
        else:
            for name in sorted(names):
                plain = _plain(name)
                if plain is None or name in moves or plain in names or plain in moves.values():
                    continue
                moves[name] = plain
        for old, new in sorted(moves.items()):
            if old in rewrites:
                continue
            os.replace(folder / rel_of(old), folder / rel_of(new))
            renamed[rel_of(old)] = rel_of(new)
        for index, data in rewrites.items():
            if index not in moves:
                continue
            target = folder / rel_of(moves[index])
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            os.replace(tmp, target)
            (folder / rel_of(index)).unlink()
            renamed[rel_of(index)] = rel_of(moves[index])
    return renamed


# --- choosing a name and a destination: under one root-wide lock, reserved until the manifest exists -----
#
# Two installers with different sources of the same base name (two URLs ending in model.safetensors) must not
# pick the same name or path.  The choice is made under ``models/.partial/locks/placement.lock`` and written
# down at once as a reservation (``locks/reserved/<name>.json``: name, destination, owner); a manifest, written
# later, then holds the name and the path.  Reservations of a process that is gone are ignored; each item's
# own are dropped when it ends (pipeline ``_install``).  The owner names its machine (``PID-THREAD@HOST``): on a
# root shared over the network another machine's process ids mean nothing here, so its reservations hold
# until they are FOREIGN_RESERVATION_S old (an installer that died there); older ones without a host are this
# machine's.


@contextlib.contextmanager
def _placement_lock(layout: RootLayout):
    from filelock import FileLock

    folder = layout.partial_dir / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / "placement.lock"), timeout=120):
        yield


#: a reservation written on another machine counts as left behind after this long (seconds)
FOREIGN_RESERVATION_S = 24 * 3600


def _host() -> str:
    import socket

    return socket.gethostname() or "localhost"


def _owner() -> str:
    return f"{os.getpid()}-{threading.get_ident()}@{_host()}"


def _owner_gone(owner: str, reservation: Path) -> bool:
    """True when the installer that wrote ``reservation`` is gone (its process, or for another machine: its age)."""
    pid, _, host = owner.partition("@")
    if host and host != _host():
        try:
            return time.time() - reservation.stat().st_mtime > FOREIGN_RESERVATION_S
        except OSError:
            return True
    return not _pid_alive(pid.split("-")[0])


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


def _reserved_dir(layout: RootLayout) -> Path:
    return layout.partial_dir / "locks" / "reserved"


def _reservations(layout: RootLayout) -> list[tuple[Path, dict]]:
    out = []
    folder = _reserved_dir(layout)
    if not folder.is_dir():
        return out
    for f in folder.glob("*.json"):
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or _owner_gone(str(data.get("owner", "")), f):
            unlink_quiet(f)  # left by an installer that is gone
            continue
        out.append((f, data))
    return out


def _taken(ctx: ItemContext) -> tuple[set[str], set[Path]]:
    """Names and destinations in use: models.yaml, manifests (name and path), live reservations."""
    manifests = mf.all_manifests(ctx.layout)
    names = set(ctx.registry.names()) | {m.name for m in manifests}
    paths = {ctx.layout.absolute(m.path) for m in manifests}
    for _f, data in _reservations(ctx.layout):
        names.add(str(data.get("name")))
        if data.get("dest"):
            paths.add(Path(data["dest"]))
    return names, paths


def _reserve(layout: RootLayout, name: str, dest: Path | None) -> None:
    folder = _reserved_dir(layout)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{hashlib.sha1(name.encode()).hexdigest()[:16]}.json"
    tmp = target.with_name(target.name + f".{os.getpid()}-{_host()}.tmp")
    tmp.write_text(json.dumps({"name": name, "dest": str(dest) if dest else None, "owner": _owner()}), encoding="utf-8")
    os.replace(tmp, target)


def release_reservations(layout: RootLayout) -> None:
    """Drop this thread's reservations (its manifests now hold the names, or the item failed)."""
    me = _owner()
    for f, data in _reservations(layout):
        if data.get("owner") == me:
            unlink_quiet(f)


def free_name(ctx: ItemContext, base: str) -> str:
    """A free model name for ``base`` (``base``, ``base-2``...), reserved for this item."""
    from invokeai_model_install.root.registry import sanitize_name

    with _placement_lock(ctx.layout):
        taken, _paths = _taken(ctx)
        name = sanitize_name(base)
        n = 2
        candidate = name
        while candidate in taken:
            candidate = f"{name}-{n}"
            n += 1
        _reserve(ctx.layout, candidate, None)
    return candidate


def choose_dir_dest(ctx: ItemContext, base: str, folder: Path, reuse: mf.Manifest | None = None) -> tuple[str, Path]:
    if reuse is not None and ctx.layout.is_inside_models(ctx.layout.absolute(reuse.path)):
        return reuse.name, ctx.layout.absolute(reuse.path)  # repair a damaged install where it is
    from invokeai_model_install.root.registry import sanitize_name

    with _placement_lock(ctx.layout):
        taken, paths = _taken(ctx)
        name = sanitize_name(base)
        candidate, n = name, 2
        while candidate in taken or (folder / candidate).exists() or folder / candidate in paths:
            candidate = f"{name}-{n}"
            n += 1
        _reserve(ctx.layout, candidate, folder / candidate)
    return candidate, folder / candidate


def choose_file_dest(ctx: ItemContext, base: str, folder: Path, filename: str, reuse: mf.Manifest | None = None) -> tuple[str, Path]:
    if reuse is not None and ctx.layout.is_inside_models(ctx.layout.absolute(reuse.path)):
        return reuse.name, ctx.layout.absolute(reuse.path)
    from invokeai_model_install.root.registry import sanitize_name

    with _placement_lock(ctx.layout):
        taken, paths = _taken(ctx)
        name = sanitize_name(base)
        candidate, n = name, 2
        while candidate in taken:
            candidate = f"{name}-{n}"
            n += 1
        stem, suffix = Path(filename).stem, Path(filename).suffix
        stem = sanitize_name(stem)
        dest, n = folder / f"{stem}{suffix}", 2
        while dest.exists() or dest in paths:  # never overwrite a file that is there, or promised to another
            dest = folder / f"{stem}-{n}{suffix}"
            n += 1
        _reserve(ctx.layout, candidate, dest)
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
