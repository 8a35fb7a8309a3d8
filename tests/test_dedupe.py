"""`dedupe`: identical model files across the root, linked UI folders and in-place folders share one copy."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from invokeai_model_install.root import manifest as mf
from invokeai_model_install.share import a1111, dedupe
from tests import reflinkfs
from tests.sharefixtures import populate_root


@pytest.fixture
def root(tmp_path, hub_server, tiny_models, tiny_extras, tiny_checkpoints):
    return populate_root(tmp_path / "invokeai", hub_server, tiny_models, tiny_extras, tiny_checkpoints, hub_models=False)


@pytest.fixture
def webui(tmp_path, root):
    """An A1111 folder linked to the root, holding its own copies of two of the root's models and one modified copy."""
    return make_webui(tmp_path / "webui", root)


def make_webui(d: Path, root) -> Path:
    (d / "models" / "Stable-diffusion").mkdir(parents=True)
    (d / "models" / "Lora").mkdir(parents=True)
    a1111.link(root, d)
    a1111.unlink(root, d)  # linked once: the folder is recorded; its files are the user's own copies again
    ckpt = root.kind_dir("main") / "tiny-ckpt.safetensors"
    lora = root.kind_dir("lora") / "tiny-lora-sd-1.safetensors"
    # written, not copied: a copy may already be a reflink (copy_file_range clones on XFS and Btrfs)
    (d / "models" / "Stable-diffusion" / "copy-of-ckpt.safetensors").write_bytes(ckpt.read_bytes())
    (d / "models" / "Lora" / "copy-of-lora.safetensors").write_bytes(lora.read_bytes())
    modified = bytearray(lora.read_bytes())
    modified[-1] ^= 0xFF  # same size, one byte different
    (d / "models" / "Lora" / "modified-lora.safetensors").write_bytes(bytes(modified))
    return d


def _record_links(root, webui):
    from invokeai_model_install.share import folders

    data = folders.read_links(root)
    data.setdefault("a1111", {})[str(webui)] = {"links": []}
    folders.write_links(root, data)


def test_dedupe_merges_identical_files_and_never_a_modified_one(root, webui):
    _record_links(root, webui)
    ckpt = root.kind_dir("main") / "tiny-ckpt.safetensors"
    lora = root.kind_dir("lora") / "tiny-lora-sd-1.safetensors"
    copy_ckpt = webui / "models" / "Stable-diffusion" / "copy-of-ckpt.safetensors"
    copy_lora = webui / "models" / "Lora" / "copy-of-lora.safetensors"
    modified = webui / "models" / "Lora" / "modified-lora.safetensors"
    expected = ckpt.stat().st_size + lora.stat().st_size

    dry = dedupe.dedupe(root, dry_run=True, min_size=1)
    assert dry.reclaimed_bytes == expected
    assert {g.keeper for g in dry.groups} == {str(ckpt), str(lora)}  # the root's file is the one kept
    assert ckpt.stat().st_nlink == 1 and copy_ckpt.stat().st_ino != ckpt.stat().st_ino  # nothing touched

    before_modified = modified.read_bytes()
    result = dedupe.dedupe(root, min_size=1)
    assert result.reclaimed_bytes == expected
    for ours, theirs in ((ckpt, copy_ckpt), (lora, copy_lora)):
        assert ours.stat().st_ino == theirs.stat().st_ino and ours.stat().st_nlink == 2
    assert modified.stat().st_nlink == 1 and modified.read_bytes() == before_modified
    # every installed model still verifies (manifests got the new mtimes: the quick check needs no re-hash)
    for m in mf.all_manifests(root):
        assert mf.verify_manifest(root, m, full=True) == []
        for rec in m.files:
            assert root.absolute(rec.path).stat().st_mtime_ns == rec.mtime_ns
    # a second run finds nothing left to do
    again = dedupe.dedupe(root, min_size=1)
    assert again.reclaimed_bytes == 0 and not again.groups


def test_a_file_modified_after_the_scan_is_never_merged(root, webui):
    _record_links(root, webui)
    copy_ckpt = webui / "models" / "Stable-diffusion" / "copy-of-ckpt.safetensors"
    ckpt = root.kind_dir("main") / "tiny-ckpt.safetensors"

    def meddle(keeper, dup):
        if dup == copy_ckpt:  # another program rewrites the duplicate between the scan and the merge
            data = bytearray(dup.read_bytes())
            data[100] ^= 0x01
            dup.write_bytes(bytes(data))

    meddled = copy_ckpt.read_bytes()
    meddled = meddled[:100] + bytes([meddled[100] ^ 0x01]) + meddled[101:]
    result = dedupe.dedupe(root, min_size=1, before_replace=meddle)
    assert (str(copy_ckpt), "changed since the scan; not merged") in result.skipped
    assert copy_ckpt.read_bytes() == meddled and copy_ckpt.stat().st_ino != ckpt.stat().st_ino
    assert result.reclaimed_bytes == (root.kind_dir("lora") / "tiny-lora-sd-1.safetensors").stat().st_size


def test_a_kept_file_modified_after_the_scan_stops_its_group(root, webui):
    _record_links(root, webui)
    ckpt = root.kind_dir("main") / "tiny-ckpt.safetensors"
    copy_ckpt = webui / "models" / "Stable-diffusion" / "copy-of-ckpt.safetensors"
    original = copy_ckpt.read_bytes()

    def meddle(keeper, dup):
        if keeper == ckpt:
            with open(keeper, "r+b") as fh:
                fh.seek(200)
                fh.write(b"\x00\x01\x02")

    result = dedupe.dedupe(root, min_size=1, before_replace=meddle)
    assert (str(ckpt), "changed since the scan; nothing merged with it") in result.skipped
    assert copy_ckpt.read_bytes() == original and copy_ckpt.stat().st_nlink == 1


def test_in_place_models_and_extra_folders_are_included(root, tmp_path, tiny_extras):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    a = outside / "a.safetensors"
    b = tmp_path / "other" / "b.safetensors"
    b.parent.mkdir()
    shutil.copyfile(tiny_extras["lora-sd-2.safetensors"], a)
    shutil.copyfile(tiny_extras["lora-sd-2.safetensors"], b)
    from invokeai_model_install.install.plan import InstallPlan
    from invokeai_model_install.install.worker import run_plan

    assert run_plan(InstallPlan(imports=(str(a),)), root).ok  # registered in place, outside the root
    assert dedupe.dedupe(root, min_size=1).reclaimed_bytes == 0  # b is in no folder we know
    result = dedupe.dedupe(root, min_size=1, extra_dirs=[b.parent])
    assert result.reclaimed_bytes == a.stat().st_size and a.stat().st_ino == b.stat().st_ino


def test_the_roots_own_file_is_kept_even_beside_models(root, tmp_path):
    """A 2.3 root keeps LoRAs in ROOT/loras, outside models/: still the root's file, kept whatever the paths' order."""
    lora = root.kind_dir("lora") / "tiny-lora-sd-1.safetensors"
    assert root.models_dir not in lora.parents
    other = tmp_path / "AAA-ComfyUI" / "models" / "loras" / "tiny-lora-sd-1.safetensors"  # sorts before the root
    other.parent.mkdir(parents=True)
    other.write_bytes(lora.read_bytes())
    inode = lora.stat().st_ino
    result = dedupe.dedupe(root, min_size=1, extra_dirs=[other.parent])
    assert [(g.keeper, g.duplicates) for g in result.groups] == [(str(lora), [str(other)])]
    assert lora.stat().st_ino == inode == other.stat().st_ino


# --- on a filesystem with reflinks (XFS on a loop device: tests/reflinkfs.py) ----------------------------


@pytest.fixture(scope="session")
def reflink_fs():
    """A mounted XFS with reflinks for the session.  Not possible here: skipped, saying why; with CI set
    (``.ci/run``: root, xfsprogs installed) that FAILS instead: CI must test reflinks."""
    why = reflinkfs.unavailable()
    if why is None:
        try:
            with reflinkfs.mounted_reflink_fs() as mnt:
                yield mnt
            return
        except RuntimeError as exc:
            why = f"cannot make a reflink filesystem here: {exc}"
    if os.environ.get("CI"):
        pytest.fail(f"{why}; .ci/run runs as root and installs xfsprogs: CI must test reflinks", pytrace=False)
    pytest.skip(why)


@pytest.fixture
def on_reflink_fs(reflink_fs, request):
    """This test's own folder on the reflink filesystem (removed after it)."""
    d = reflink_fs / re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
    d.mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def reflink_root(on_reflink_fs, hub_server, tiny_models, tiny_extras, tiny_checkpoints):
    layout = populate_root(on_reflink_fs / "invokeai", hub_server, tiny_models, tiny_extras, tiny_checkpoints, hub_models=False)
    webui = make_webui(on_reflink_fs / "webui", layout)
    _record_links(layout, webui)
    return layout, webui


def _pairs(root, webui):
    ckpt = root.kind_dir("main") / "tiny-ckpt.safetensors"
    lora = root.kind_dir("lora") / "tiny-lora-sd-1.safetensors"
    return (
        (ckpt, webui / "models" / "Stable-diffusion" / "copy-of-ckpt.safetensors"),
        (lora, webui / "models" / "Lora" / "copy-of-lora.safetensors"),
    )


def _owner_mode(p: Path) -> tuple[int, int, int]:
    st = p.stat()
    return st.st_uid, st.st_gid, st.st_mode & 0o7777


def test_on_a_reflink_filesystem_duplicates_become_reflinks_sharing_blocks(reflink_root, reflink_fs):
    root, webui = reflink_root
    pairs = _pairs(root, webui)
    modified = webui / "models" / "Lora" / "modified-lora.safetensors"
    before_modified = modified.read_bytes()
    for ours, theirs in pairs:  # real copies to begin with: no block shared
        assert not any(shared for _, _, shared in reflinkfs.extents(ours) + reflinkfs.extents(theirs))
    expected = sum(ours.stat().st_size for ours, _ in pairs)
    inodes = {p: p.stat().st_ino for pair in pairs for p in pair}
    os.chmod(pairs[0][1], 0o640)  # the user's copy: its permissions and owner stay its own
    os.chown(pairs[0][1], 1234, 5678)
    owner_mode = {theirs: _owner_mode(theirs) for _, theirs in pairs}
    assert owner_mode[pairs[0][1]] == (1234, 5678, 0o640)
    free_before = reflinkfs.free_bytes(reflink_fs)

    result = dedupe.dedupe(root, min_size=1)

    assert {(g.keeper, tuple(g.duplicates), tuple(g.methods)) for g in result.groups} == {
        (str(ours), (str(theirs),), ("reflink",)) for ours, theirs in pairs
    }
    assert result.reclaimed_bytes == expected and not result.skipped
    for ours, theirs in pairs:
        # still two files (a reflink is not a hard link: each can change on its own) with the same bytes...
        assert ours.stat().st_ino == inodes[ours] and theirs.stat().st_ino != ours.stat().st_ino
        assert ours.stat().st_nlink == 1 and theirs.stat().st_nlink == 1
        assert ours.read_bytes() == theirs.read_bytes()
        assert _owner_mode(theirs) == owner_mode[theirs]
        # ... in the same blocks on disk, marked shared by the filesystem
        assert reflinkfs.extents(theirs) == reflinkfs.extents(ours)
        assert all(shared for _, _, shared in reflinkfs.extents(ours))
    # the space is really free: at least the bytes reported (blocks are whole), at most a block per file more
    freed = reflinkfs.free_bytes(reflink_fs) - free_before
    assert expected <= freed <= expected + len(pairs) * 64 * 1024, freed
    # the modified copy is never merged
    assert modified.read_bytes() == before_modified
    assert not any(shared for _, _, shared in reflinkfs.extents(modified))
    for m in mf.all_manifests(root):
        assert mf.verify_manifest(root, m, full=True) == []
        for rec in m.files:
            assert root.absolute(rec.path).stat().st_mtime_ns == rec.mtime_ns

    # reflinked files are one copy already: nothing to do, nothing claimed, and the checkpoint whose size no
    # other file has is not even read again
    hashed: list[str] = []
    for dry_run in (True, False):
        again = dedupe.dedupe(root, min_size=1, dry_run=dry_run, progress=hashed.append)
        assert again.reclaimed_bytes == 0 and not again.groups and not again.skipped
    assert not {str(p) for p in pairs[0]} & set(hashed)
    assert [ours.stat().st_ino for ours, _ in pairs] == [inodes[ours] for ours, _ in pairs]


def test_a_reflinked_copy_is_copy_on_write(reflink_root):
    root, webui = reflink_root
    (ckpt, copy_ckpt), (lora, copy_lora) = _pairs(root, webui)
    result = dedupe.dedupe(root, min_size=1)
    assert sorted(m for g in result.groups for m in g.methods) == ["reflink", "reflink"]
    original_ckpt, original_lora = ckpt.read_bytes(), lora.read_bytes()

    # the user edits the A1111 copy in place: the root's model keeps its bytes (and still verifies)
    with open(copy_lora, "r+b") as fh:
        fh.seek(len(original_lora) // 2)
        fh.write(b"edited in place")
    # and a write into the root's file leaves the A1111 copy alone
    with open(ckpt, "r+b") as fh:
        fh.seek(len(original_ckpt) // 2)
        fh.write(b"edited in place")
    assert lora.read_bytes() == original_lora and copy_lora.read_bytes() != original_lora
    assert copy_ckpt.read_bytes() == original_ckpt and ckpt.read_bytes() != original_ckpt
    assert reflinkfs.extents(copy_lora) != reflinkfs.extents(lora)
    lora_model = next(m for m in mf.all_manifests(root) if any(root.absolute(r.path) == lora for r in m.files))
    assert mf.verify_manifest(root, lora_model, full=True) == []
    # the edited files differ now: dedupe leaves them apart
    after = dedupe.dedupe(root, min_size=1)
    assert not after.groups and after.reclaimed_bytes == 0
    assert copy_lora.read_bytes() != lora.read_bytes() and copy_ckpt.read_bytes() != ckpt.read_bytes()
