"""`dedupe`: identical model files across the root, linked UI folders and in-place folders share one copy."""

from __future__ import annotations

import shutil

import pytest

from invokeai_model_install.root import manifest as mf
from invokeai_model_install.share import a1111, dedupe
from tests.sharefixtures import populate_root


@pytest.fixture
def root(tmp_path, hub_server, tiny_models, tiny_extras, tiny_checkpoints):
    return populate_root(tmp_path / "invokeai", hub_server, tiny_models, tiny_extras, tiny_checkpoints, hub_models=False)


@pytest.fixture
def webui(tmp_path, root):
    """An A1111 folder linked to the root, holding its own copies of two of the root's models and one modified copy."""
    d = tmp_path / "webui"
    (d / "models" / "Stable-diffusion").mkdir(parents=True)
    (d / "models" / "Lora").mkdir(parents=True)
    a1111.link(root, d)
    a1111.unlink(root, d)  # linked once: the folder is recorded; its files are the user's own copies again
    ckpt = root.kind_dir("main") / "tiny-ckpt.safetensors"
    lora = root.kind_dir("lora") / "tiny-lora-sd-1.safetensors"
    shutil.copyfile(ckpt, d / "models" / "Stable-diffusion" / "copy-of-ckpt.safetensors")
    shutil.copyfile(lora, d / "models" / "Lora" / "copy-of-lora.safetensors")
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
