"""``dedupe [--dry-run]``: one copy of identical model files across the root, linked UI folders and in-place folders.

1. Collect regular files (symlinks are not followed; files already hard-linked together count once)
   under the root's model folders, the ComfyUI/A1111 folders ``link`` recorded, the files of models
   registered in place (manifests with paths outside the root) and any ``--dir`` given.
2. Group by size; hash (sha256) only files whose size another file shares.
3. For each set of identical files keep one (a file of the root first) and, unless ``dry_run``, replace
   every other by a reflink of it where the filesystem has them (copy-on-write: the files stay
   independent) or else a hard link, through a temporary name and ``os.replace`` (atomic: the path always
   holds a complete file).  Right before replacing, the kept file and the duplicate are hashed again
   and their size and mtime re-checked: a file modified since the scan is never merged.
   Files that already share all their blocks (reflinked by an earlier run, ``cp --reflink``) are one
   copy already, like hard links: they are left alone and not counted (FIEMAP tells; a size whose files
   all share the same blocks is not even hashed).
4. Manifests of the root get the new mtimes, so ``verify``'s quick check stays quick.

Files on different filesystems cannot share bytes: they are reported, not touched.
"""

from __future__ import annotations

import dataclasses
import errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from invokeai_model_install.root import manifest as mf
from invokeai_model_install.root.layout import RootLayout
from invokeai_model_install.share import folders

#: files smaller than this are left alone by default (configs and tokenizer files that a user may edit in place)
DEFAULT_MIN_SIZE = 1 << 20  # `dedupe --help` says 1048576 (app/share_commands.py: the parser does not import this module)
_FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
_FS_IOC_FIEMAP = 0xC020660B  # linux/fs.h: _IOWR('f', 11, struct fiemap)
_FIEMAP_FLAG_SYNC = 0x1
_FIEMAP_EXTENT_LAST = 0x1
_FIEMAP_EXTENT_SHARED = 0x2000
# unknown location, delayed allocation, encoded, encrypted, inline: no physical address to compare
_FIEMAP_EXTENT_VAGUE = 0x2 | 0x4 | 0x8 | 0x80 | 0x100 | 0x200 | 0x400


@dataclass
class DupGroup:
    sha256: str
    size: int
    keeper: str
    duplicates: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)  # per duplicate: reflink | hardlink | would (dry run)


@dataclass
class DedupeResult:
    scanned_files: int = 0
    hashed_files: int = 0
    groups: list[DupGroup] = field(default_factory=list)
    reclaimed_bytes: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    dry_run: bool = False


def scan_roots(layout: RootLayout, extra_dirs: Iterable[Path] = ()) -> list[Path]:
    """Folders to look in: the root's model folders, linked UI folders, ``extra_dirs``."""
    dirs: list[Path] = [layout.models_dir]
    for paths in folders.root_folders(layout).values():
        dirs += paths
    record = folders.read_links(layout)
    for comfy in record.get("comfyui", {}):
        dirs.append(Path(comfy) / "models")
    for webui in record.get("a1111", {}):
        dirs += [Path(webui) / "models", Path(webui) / "embeddings"]
    dirs += [Path(d).absolute() for d in extra_dirs]
    out: list[Path] = []
    for d in dirs:
        if d.is_dir() and d not in out:
            out.append(d)
    return out


def _skip_dir(layout: RootLayout, path: Path) -> bool:
    return path.name.startswith(".") or path in (layout.partial_dir, layout.manifests_dir)


def collect(layout: RootLayout, extra_dirs: Iterable[Path] = (), min_size: int = DEFAULT_MIN_SIZE) -> dict[tuple[int, int], list[Path]]:
    """(device, inode) -> paths of that file, for regular files of at least ``min_size`` bytes."""
    files: dict[tuple[int, int], list[Path]] = {}
    seen_paths: set[Path] = set()

    def add(p: Path) -> None:
        if p in seen_paths:
            return
        try:
            st = p.lstat()
        except OSError:
            return
        if not _is_regular(st.st_mode) or st.st_size < max(min_size, 1):
            return
        seen_paths.add(p)
        files.setdefault((st.st_dev, st.st_ino), []).append(p)

    for base in scan_roots(layout, extra_dirs):
        for dirpath, dirnames, filenames in os.walk(base):  # does not follow symlinked folders
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if not _skip_dir(layout, here / d))
            for name in sorted(filenames):
                add(here / name)
    for m in mf.all_manifests(layout):  # models registered in place, outside the root
        for rec in m.files:
            p = layout.absolute(rec.path)
            if not layout.is_inside_models(p):
                add(p.absolute())
    return files


def _is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)


def _stat_key(p: Path) -> tuple[int, int, int, int]:
    st = p.lstat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _reflink(src: Path, dest: Path) -> bool:
    """Copy-on-write clone of ``src`` at ``dest`` (new file); False where the filesystem has none."""
    try:
        import fcntl  # not on Windows: no reflinks there
    except ImportError:
        return False
    try:
        with open(src, "rb") as fin, open(dest, "xb") as fout:
            fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
        return True
    except OSError as exc:
        try:
            dest.unlink()
        except FileNotFoundError:
            pass
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.EBADF):
            return False
        raise


def _shared_extents(p: Path) -> tuple[tuple[int, int, int], ...] | None:
    """``p``'s extents (logical, physical, length) when every one is shared with another file, else None.

    Two files of one size with the same such map are the same blocks on disk: one copy already (a reflink).
    None where FIEMAP is not available (not Linux, not supported by the filesystem) or a block is unshared.
    """
    try:
        import fcntl
        import struct
    except ImportError:
        return None
    header = struct.Struct("=QQIIII")  # struct fiemap: start, length, flags, mapped, count, reserved
    extent = struct.Struct("=QQQQQI12x")  # struct fiemap_extent: logical, physical, length, 2 reserved, flags
    try:
        with open(p, "rb") as fh:
            buf = bytearray(header.pack(0, 0xFFFFFFFFFFFFFFFF, _FIEMAP_FLAG_SYNC, 0, 0, 0))
            fcntl.ioctl(fh.fileno(), _FS_IOC_FIEMAP, buf)  # extent count 0: how many there are
            count = header.unpack_from(buf)[3] + 8
            if count > 100_000:
                return None
            buf = bytearray(header.pack(0, 0xFFFFFFFFFFFFFFFF, _FIEMAP_FLAG_SYNC, 0, count, 0)) + bytearray(extent.size * count)
            fcntl.ioctl(fh.fileno(), _FS_IOC_FIEMAP, buf)
    except OSError:
        return None
    mapped = header.unpack_from(buf)[3]
    out = []
    for i in range(mapped):
        logical, physical, length, _, _, flags = extent.unpack_from(buf, header.size + i * extent.size)
        if not flags & _FIEMAP_EXTENT_SHARED or flags & _FIEMAP_EXTENT_VAGUE:
            return None
        out.append((logical, physical, length))
    if not out or not extent.unpack_from(buf, header.size + (mapped - 1) * extent.size)[5] & _FIEMAP_EXTENT_LAST:
        return None  # empty, or more extents than we asked for (the file grew): not sure
    return tuple(out)


def _replace_with(keeper: Path, dup: Path, use_reflink: bool) -> str:
    tmp = dup.with_name(f".{dup.name}.dedupe-tmp")
    if tmp.exists():
        tmp.unlink()
    method = "reflink" if use_reflink and _reflink(keeper, tmp) else "hardlink"
    if method == "hardlink":
        os.link(keeper, tmp)
    try:
        if method == "reflink":  # a new file: it keeps the duplicate's permissions (and owner, where we may)
            st = dup.lstat()
            os.chmod(tmp, st.st_mode & 0o7777)
            if hasattr(os, "chown") and (st.st_uid, st.st_gid) != (tmp.lstat().st_uid, tmp.lstat().st_gid):
                try:
                    os.chown(tmp, st.st_uid, st.st_gid)
                except PermissionError:
                    pass
        os.replace(tmp, dup)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return method


def dedupe(
    layout: RootLayout,
    *,
    dry_run: bool = False,
    extra_dirs: Iterable[Path] = (),
    min_size: int = DEFAULT_MIN_SIZE,
    reflink: bool = True,
    progress: Callable[[str], None] | None = None,
    before_replace: Callable[[Path, Path], None] | None = None,
) -> DedupeResult:
    """Find identical files and (unless ``dry_run``) make them share one copy.

    :param before_replace: called with (keeper, duplicate) after the scan and before the re-check
        (the point where another program could still change a file; tests use it to do exactly that).
    """
    result = DedupeResult(dry_run=dry_run)
    by_inode = collect(layout, extra_dirs, min_size)
    result.scanned_files = sum(len(v) for v in by_inode.values())
    by_size: dict[int, list[tuple[int, int]]] = {}
    for key, paths in by_inode.items():
        by_size.setdefault(paths[0].lstat().st_size, []).append(key)
    root_dirs = _root_dirs(layout)
    replaced: dict[Path, Path] = {}
    for size, keys in sorted(by_size.items(), reverse=True):
        if len(keys) < 2:
            continue
        extents = {key: _shared_extents(by_inode[key][0]) for key in keys}
        if None not in extents.values() and len(set(extents.values())) == 1:
            continue  # all these files are the same blocks on disk (reflinked): one copy already
        by_hash: dict[str, list[tuple[int, int]]] = {}
        stats: dict[tuple[int, int], tuple[int, int, int, int]] = {}
        for key in keys:
            p = by_inode[key][0]
            if progress:
                progress(str(p))
            try:
                stats[key] = _stat_key(p)
                digest = mf.sha256_file(p)
            except OSError as exc:
                result.skipped.append((str(p), f"cannot read ({exc.strerror or exc})"))
                continue
            result.hashed_files += 1
            by_hash.setdefault(digest, []).append(key)
        for digest, same in by_hash.items():
            if len(same) < 2:
                continue

            def rank(key: tuple[int, int]) -> tuple:
                paths = by_inode[key]
                inside = any(_inside(p, root_dirs) for p in paths)
                return (not inside, -len(paths), str(sorted(paths)[0]))

            same.sort(key=rank)
            keeper_key = same[0]
            keeper = sorted(by_inode[keeper_key])[0]
            group = DupGroup(digest, size, str(keeper))
            keeper_ok: bool | None = None
            for key in same[1:]:
                if key[0] != keeper_key[0]:
                    for p in by_inode[key]:
                        result.skipped.append((str(p), f"same bytes as {keeper} but on another filesystem; not merged"))
                    continue
                if extents[key] is not None and extents[key] == extents[keeper_key]:
                    continue  # already shares every block with the kept file (reflinked)
                if dry_run:
                    group.duplicates += [str(p) for p in sorted(by_inode[key])]
                    group.methods += ["would"] * len(by_inode[key])
                    result.reclaimed_bytes += size
                    continue
                all_done = True
                for dup in sorted(by_inode[key]):
                    if before_replace is not None:
                        before_replace(keeper, dup)
                    if keeper_ok is None:  # re-hash the kept file right before its first use
                        keeper_ok = _unchanged(keeper, stats[keeper_key], digest)
                        if not keeper_ok:
                            result.skipped.append((str(keeper), "changed since the scan; nothing merged with it"))
                    if not keeper_ok:
                        break
                    if not _unchanged(dup, stats[key], digest):
                        all_done = False
                        result.skipped.append((str(dup), "changed since the scan; not merged"))
                        continue
                    try:
                        method = _replace_with(keeper, dup, reflink)
                    except OSError as exc:
                        all_done = False
                        result.skipped.append((str(dup), f"cannot replace ({exc.strerror or exc}); left as it was"))
                        continue
                    group.duplicates.append(str(dup))
                    group.methods.append(method)
                    replaced[dup] = keeper
                if not keeper_ok:
                    break
                if all_done:
                    result.reclaimed_bytes += size
            if group.duplicates:
                result.groups.append(group)
    if replaced:
        _refresh_manifests(layout, set(replaced))
    return result


def _unchanged(p: Path, before: tuple[int, int, int, int], digest: str) -> bool:
    """True when ``p`` is still the file that was scanned: same inode, size and mtime, and re-hashed now to ``digest``."""
    try:
        if _stat_key(p) != before:
            return False
        now = mf.sha256_file(p)
        return now == digest and _stat_key(p) == before
    except OSError:
        return False


def _root_dirs(layout: RootLayout) -> list[Path]:
    """The root's own folders: ``models/`` and those outside it (a 2.3 root keeps ``loras/`` and ``embeddings/`` beside it)."""
    dirs = [layout.models_dir] + [p for paths in folders.root_folders(layout).values() for p in paths]
    out: list[Path] = []
    for d in dirs:
        try:
            d = d.resolve()
        except OSError:
            continue
        if d not in out:
            out.append(d)
    return out


def _inside(p: Path, dirs: list[Path]) -> bool:
    try:
        p = p.resolve()
    except OSError:
        return False
    return any(p == d or d in p.parents for d in dirs)


def _refresh_manifests(layout: RootLayout, paths: set[Path]) -> None:
    """A replaced file has the kept file's mtime: record it, so ``verify``'s quick check does not re-hash."""
    for m in mf.all_manifests(layout):
        changed = False
        files = []
        for rec in m.files:
            p = layout.absolute(rec.path).absolute()
            if p in paths:
                try:
                    rec = dataclasses.replace(rec, mtime_ns=p.stat().st_mtime_ns)
                    changed = True
                except OSError:
                    pass
            files.append(rec)
        if changed:
            mf.write_manifest(layout, dataclasses.replace(m, files=tuple(files)))
