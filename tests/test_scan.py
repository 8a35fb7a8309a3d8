"""Autoscan: which files in a folder are new (by path and by content hash)."""

import pytest

from invokeai_model_install.root import manifest as mf
from invokeai_model_install.errors import SourceError
from invokeai_model_install.root.layout import RootLayout
from invokeai_model_install.root.registry import Registry
from invokeai_model_install.install.scan import find_new_models, model_paths


@pytest.fixture
def world(tmp_path):
    layout = RootLayout(tmp_path / "root")
    layout.models_dir.mkdir(parents=True)
    d = tmp_path / "scan"
    (d / "sub" / "deeper").mkdir(parents=True)
    (d / "a.safetensors").write_bytes(b"a")
    (d / "sub" / "b.ckpt").write_bytes(b"b")
    (d / "sub" / "deeper" / "c.pt").write_bytes(b"c")
    (d / "notes.txt").write_text("not a model")
    (d / ".hidden").mkdir()
    (d / ".hidden" / "h.safetensors").write_bytes(b"h")
    # a diffusers folder counts once, its inner weights are not separate models
    pipe = d / "pipe"
    (pipe / "unet").mkdir(parents=True)
    (pipe / "model_index.json").write_text("{}")
    (pipe / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"u")
    # a companion VAE of a.safetensors-like checkpoint
    (d / "sub" / "b.vae.pt").write_bytes(b"v")
    return layout, d


def test_walk(world):
    _layout, d = world
    assert [p.relative_to(d).as_posix() for p in model_paths(d)] == ["a.safetensors", "pipe", "sub/b.ckpt", "sub/deeper/c.pt"]


def test_registered_by_path_or_by_hash_are_not_new(world, tmp_path):
    layout, d = world
    with Registry(layout.models_yaml).transaction() as doc:
        doc.add("a", {"weights": str(d / "a.safetensors"), "format": "ckpt"})  # by path (absolute, outside the root)
    # c.pt was installed earlier from another place: same bytes, different path
    other = layout.kind_dir("main") / "c-copy.pt"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"c")
    mf.write_manifest(layout, mf.Manifest(name="c", key="file:x", source="x", kind="main", format="ckpt",
                                          path=layout.relative(other), files=mf.record_files(layout, [other])))
    # the pipe folder was converted from... no: it is registered by a manifest path
    mf.write_manifest(layout, mf.Manifest(name="p", key="file:p", source="p", kind="main", format="diffusers",
                                          path=str(d / "pipe")))
    new = [p.relative_to(d).as_posix() for p in find_new_models(d, layout)]
    assert new == ["sub/b.ckpt"]


def test_conversion_source_hash_counts(world):
    layout, d = world
    import hashlib

    mf.write_manifest(layout, mf.Manifest(name="conv", key="k#diffusers", source="s", kind="main", format="diffusers",
                                          path="models/diffusers/conv",
                                          source_sha256=(("/somewhere/else.ckpt", hashlib.sha256(b"b").hexdigest()),)))
    assert "sub/b.ckpt" not in [p.relative_to(d).as_posix() for p in find_new_models(d, layout)]


def test_missing_folder(world, tmp_path):
    layout, _ = world
    with pytest.raises(SourceError, match="does not exist"):
        find_new_models(tmp_path / "nope", layout)
