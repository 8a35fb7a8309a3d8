"""Sidecar manifests: write/read, lookup by source key, quick and full verification, known hashes."""

import hashlib
import json
import os

from invokeai_model_install.root import manifest as mf
from invokeai_model_install.root.layout import RootLayout


def make(tmp_path):
    layout = RootLayout(tmp_path / "root")
    folder = layout.kind_dir("main-diffusers") / "m"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "w.bin").write_bytes(b"weights" * 100)
    (folder / "model_index.json").write_text("{}")
    files = mf.record_files(layout, [folder])
    m = mf.Manifest(name="m", key="hub:o/m", source="o/m", kind="main", format="diffusers",
                    path=layout.relative(folder), files=files, revision="abc", stanza={"path": "models/sd/m"})
    mf.write_manifest(layout, m)
    return layout, folder, m


def test_round_trip_and_lookup(tmp_path):
    layout, folder, m = make(tmp_path)
    got = mf.read_manifest(layout, "m")
    assert got is not None and got.files == m.files and got.revision == "abc" and got.installed_at
    assert [x.name for x in mf.find_by_key(layout, "hub:o/m")] == ["m"]
    assert mf.find_by_key(layout, "hub:o/other") == []
    data = json.loads(mf.manifest_path(layout, "m").read_text())
    rec = next(f for f in data["files"] if f["path"].endswith("w.bin"))
    assert rec["path"] == "models/sd/m/unet/w.bin"  # relative to the root
    assert rec["sha256"] == hashlib.sha256(b"weights" * 100).hexdigest()
    assert rec["size"] == 700


def test_verify_detects_missing_size_and_content(tmp_path):
    layout, folder, m = make(tmp_path)
    assert mf.verify_manifest(layout, m) == []
    assert mf.verify_manifest(layout, m, full=True) == []
    w = folder / "unet" / "w.bin"
    # same size, different bytes, mtime kept: only the full check can see it
    st = w.stat()
    w.write_bytes(b"WEIGHTS" * 100)
    os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert mf.verify_manifest(layout, m) == []
    assert [p.problem for p in mf.verify_manifest(layout, m, full=True)] == ["sha256"]
    # a changed mtime makes the quick check hash too
    os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert [p.problem for p in mf.verify_manifest(layout, m)] == ["sha256"]
    w.write_bytes(b"short")
    assert [p.problem for p in mf.verify_manifest(layout, m)] == ["size"]
    w.unlink()
    assert [p.problem for p in mf.verify_manifest(layout, m)] == ["missing"]


def test_unreadable_manifest_is_ignored(tmp_path):
    layout, _folder, _m = make(tmp_path)
    (layout.manifests_dir / "broken.json").write_text("{not json")
    assert [m.name for m in mf.all_manifests(layout)] == ["m"]
    assert mf.read_manifest(layout, "broken") is None


def test_known_paths_and_hashes_include_conversion_sources(tmp_path):
    layout, folder, m = make(tmp_path)
    src = tmp_path / "outside.ckpt"
    src.write_bytes(b"ckpt")
    digest = hashlib.sha256(b"ckpt").hexdigest()
    mf.write_manifest(layout, mf.Manifest(name="c", key="file:x#diffusers", source=str(src), kind="main", format="diffusers",
                                          path="models/diffusers/c", source_sha256=((str(src), digest),)))
    paths, hashes = mf.known_paths_and_hashes(layout)
    assert src.resolve() in paths and folder.resolve() in paths
    assert digest in hashes and m.files[0].sha256 in hashes


def test_rename_and_remove(tmp_path):
    layout, _folder, m = make(tmp_path)
    m2 = mf.rename_manifest(layout, m, "m-2")
    assert mf.read_manifest(layout, "m") is None and mf.read_manifest(layout, "m-2").key == m.key
    mf.remove_manifest(layout, "m-2")
    mf.remove_manifest(layout, "m-2")  # twice is fine
    assert list(mf.all_manifests(layout)) == []
    assert m2.name == "m-2"
