"""Issue 11 items that need the stand-in hub: sharded fp16 sets (11)."""

from __future__ import annotations

import json
import shutil

import pytest

from invokeai_model_install.app.configure import create_layout
from invokeai_model_install.install.placement import strip_variants
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.install.run import run_plan
from invokeai_model_install.root import manifest as mf
from invokeai_model_install.root.layout import RootLayout

torch = pytest.importorskip("torch")


@pytest.fixture
def root(tmp_path):
    layout = RootLayout(tmp_path / "invokeai")
    create_layout(layout)
    return layout


@pytest.fixture(scope="module")
def sharded_fp16_repo(tiny_models, tmp_path_factory):
    """The tiny SD-1 pipeline whose unet (diffusers) and text encoder (transformers) are sharded fp16 sets only."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    folder = tmp_path_factory.mktemp("sharded") / "repo"
    shutil.copytree(tiny_models["sd-1"], folder)
    for sub in ("unet", "text_encoder"):
        for f in (folder / sub).iterdir():
            if f.suffix in (".safetensors", ".bin") or f.name.endswith(".index.json"):
                f.unlink()
    unet = UNet2DConditionModel.from_pretrained(tiny_models["sd-1"] / "unet").to(torch.float16)
    unet.save_pretrained(folder / "unet", variant="fp16", max_shard_size="2MB")
    te = CLIPTextModel.from_pretrained(tiny_models["sd-1"] / "text_encoder").to(torch.float16)
    te.save_pretrained(folder / "text_encoder", variant="fp16", max_shard_size="200KB")
    assert (folder / "unet/diffusion_pytorch_model.safetensors.index.fp16.json").is_file()
    assert (folder / "text_encoder/model.safetensors.index.fp16.json").is_file()
    assert len(list((folder / "unet").glob("diffusion_pytorch_model*fp16*-of-*"))) > 1
    assert len(list((folder / "text_encoder").glob("model*fp16*-of-*"))) > 1
    return folder, unet.state_dict(), te.state_dict()


def test_sharded_fp16_set_is_renamed_consistently_and_loads(root, hub_server, sharded_fp16_repo):
    folder, unet_sd, te_sd = sharded_fp16_repo
    hub_server.add_repo("test/sharded", folder)
    result = run_plan(InstallPlan(imports=("test/sharded",)), root, on_event=lambda e: None)
    assert result.ok, result.failed
    dest = root.kind_dir("main-diffusers") / "sharded"
    assert not list(dest.rglob("*.fp16.*"))
    index = json.loads((dest / "unet/diffusion_pytorch_model.safetensors.index.json").read_text())
    assert all((dest / "unet" / shard).is_file() and ".fp16." not in shard for shard in index["weight_map"].values())
    # the manifest's hashes match what is on disk, the rewritten index included
    assert not mf.verify_manifest(root, mf.read_manifest(root, "sharded"), full=True)
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(dest, local_files_only=True)  # no variant= needed
    for name, tensor in unet_sd.items():
        assert torch.equal(pipe.unet.state_dict()[name].to(tensor.dtype), tensor), name
    for name, tensor in te_sd.items():
        assert torch.equal(pipe.text_encoder.state_dict()[name].to(tensor.dtype), tensor), name


def test_an_fp16_index_that_does_not_match_its_shards_is_left_alone(tmp_path):
    (tmp_path / "unet").mkdir()
    for name in ("diffusion_pytorch_model-00001-of-00002.fp16.safetensors", "diffusion_pytorch_model-00002-of-00002.fp16.safetensors"):
        (tmp_path / "unet" / name).write_bytes(b"x")
    index = {"metadata": {}, "weight_map": {"a": "diffusion_pytorch_model-00001-of-00002.fp16.safetensors",
                                            "b": "missing-00002-of-00002.fp16.safetensors"}}
    (tmp_path / "unet/diffusion_pytorch_model.safetensors.index.fp16.json").write_text(json.dumps(index))
    rels = sorted(f"unet/{p.name}" for p in (tmp_path / "unet").iterdir())
    assert strip_variants(tmp_path, rels) == {}
    assert sorted(f"unet/{p.name}" for p in (tmp_path / "unet").iterdir()) == rels


def test_older_shard_names_are_renamed_with_their_index(tmp_path):
    # x-00001-of-00002.fp16.safetensors (older writers) + x.safetensors.index.fp16.json: the case
    (tmp_path / "unet").mkdir()
    shards = ["diffusion_pytorch_model-00001-of-00002.fp16.safetensors", "diffusion_pytorch_model-00002-of-00002.fp16.safetensors"]
    for name in shards:
        (tmp_path / "unet" / name).write_bytes(name.encode())
    index = {"metadata": {"total_size": 2}, "weight_map": {"a": shards[0], "b": shards[1]}}
    (tmp_path / "unet/diffusion_pytorch_model.safetensors.index.fp16.json").write_text(json.dumps(index))
    (tmp_path / "unet/config.json").write_text("{}")
    rels = sorted(f"unet/{p.name}" for p in (tmp_path / "unet").iterdir())
    renamed = strip_variants(tmp_path, rels)
    assert renamed["unet/diffusion_pytorch_model.safetensors.index.fp16.json"] == "unet/diffusion_pytorch_model.safetensors.index.json"
    new_index = json.loads((tmp_path / "unet/diffusion_pytorch_model.safetensors.index.json").read_text())
    assert new_index["weight_map"] == {"a": "diffusion_pytorch_model-00001-of-00002.safetensors",
                                       "b": "diffusion_pytorch_model-00002-of-00002.safetensors"}
    assert new_index["metadata"] == {"total_size": 2}
    assert sorted(p.name for p in (tmp_path / "unet").iterdir()) == sorted(
        ["config.json", "diffusion_pytorch_model.safetensors.index.json", *new_index["weight_map"].values()])


# --- 12: pinned hashes beat the server's ---------------------------------------------------------


def _vae_repo(tmp_path, tiny_checkpoints, tag: bytes = b""):
    """A repo holding one single-file VAE; ``tag`` changes its bytes (a mirror serving other bytes)."""
    import hashlib

    from safetensors.torch import save_file

    folder = tmp_path / f"repo{len(tag)}"
    folder.mkdir()
    fill = 1.0 + len(tag)
    tensors = {"encoder.conv_in.weight": torch.full((32, 3, 3, 3), fill), "decoder.conv_in.weight": torch.full((32, 4, 3, 3), fill),
               "encoder.conv_in.bias": torch.zeros(32), "decoder.conv_in.bias": torch.zeros(32)}
    save_file(tensors, str(folder / "vae.safetensors"))
    return folder, hashlib.sha256((folder / "vae.safetensors").read_bytes()).hexdigest()


def _catalog(tmp_path, sha: str) -> "Path":
    p = tmp_path / "catalog.yaml"
    p.write_text(f"""
pinned-vae:
  description: A pinned single-file VAE
  repo_id: test/pinned-vae
  file: vae.safetensors
  sha256: {sha}
  format: ckpt
  recommended: false
  size: 1000
""")
    return p


def test_catalogue_pin_refuses_a_mirror_with_other_bytes_and_a_matching_lfs_hash(root, hub_server, tiny_checkpoints, tmp_path):
    good, good_sha = _vae_repo(tmp_path, tiny_checkpoints)
    evil, evil_sha = _vae_repo(tmp_path, tiny_checkpoints, tag=b"x")
    assert good_sha != evil_sha
    catalog = _catalog(tmp_path, good_sha)
    hub_server.add_repo("test/pinned-vae", evil)  # the mirror's LFS hash matches the bytes it sends
    result = run_plan(InstallPlan(install_starters=("pinned-vae",)), root, catalog_path=catalog, on_event=lambda e: None)
    assert [o.status for o in result.outcomes] == ["failed"]
    msg = result.outcomes[0].message
    assert "vae.safetensors" in msg and good_sha in msg and evil_sha in msg, msg
    assert not any((root.models_dir).rglob("vae.safetensors"))
    assert hub_server.stats.served("/test/pinned-vae/resolve/*/vae.safetensors") == 0  # refused before fetching
    # the real bytes install
    hub_server.add_repo("test/pinned-vae", good)
    result = run_plan(InstallPlan(install_starters=("pinned-vae",)), root, catalog_path=catalog, on_event=lambda e: None)
    assert [o.status for o in result.outcomes] == ["installed"], result.outcomes


def test_manifest_hashes_pin_a_repair_at_the_same_revision(tmp_path):
    from types import SimpleNamespace

    from invokeai_model_install.errors import IntegrityError
    from invokeai_model_install.install.pins import apply_pins, manifest_pins
    from invokeai_model_install.net.settings import RemoteFile, Resolved

    rec = mf.FileRecord("models/diffusers/m/unet/diffusion_pytorch_model.safetensors", 10, "a" * 64)
    man = SimpleNamespace(revision="c0ffee", path="models/diffusers/m", files=(rec,))
    resolved = Resolved((RemoteFile("http://h/x", "unet/diffusion_pytorch_model.fp16.safetensors", 10, "b" * 64),), "c0ffee")
    pins = manifest_pins(man, resolved, None)
    assert pins == {"unet/diffusion_pytorch_model.fp16.safetensors": "a" * 64}
    with pytest.raises(IntegrityError, match="diffusion_pytorch_model.fp16.safetensors"):
        apply_pins(resolved, pins, "m", what="the manifest")
    # another revision is another set of files: no pin
    assert manifest_pins(man, Resolved(resolved.files, "beef"), None) == {}
    unlisted = Resolved((RemoteFile("http://h/x", "unet/diffusion_pytorch_model.fp16.safetensors", 10, None),), "c0ffee")
    assert apply_pins(unlisted, pins, "m", what="the manifest").files[0].sha256 == "a" * 64


# --- 13: two installers, different sources, same base name ------------------------------------------


def test_two_installers_with_the_same_base_name_never_share_a_destination(root, make_file_server, monkeypatch, tmp_path):
    import threading

    from safetensors.torch import save_file

    from invokeai_model_install.install import pipeline
    from invokeai_model_install.net.settings import DownloadSettings
    from invokeai_model_install.root.registry import Registry

    srv = make_file_server()
    contents = {}
    for sub, fill in (("a", 1.0), ("b", 2.0)):
        (srv.folder / sub).mkdir()
        save_file({"encoder.conv_in.weight": torch.full((32, 3, 3, 3), fill), "decoder.conv_in.weight": torch.full((32, 4, 3, 3), fill)},
                  str(srv.folder / sub / "model.safetensors"))
        contents[sub] = (srv.folder / sub / "model.safetensors").read_bytes()

    # both installers reach the point between choosing a destination and writing their manifest together
    barrier = threading.Barrier(2, timeout=10)
    real = pipeline._stanza_or_none  # called for every kind (a VAE gets no stanza in a 2.3 root)

    def slow_stanza(*args, **kwargs):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "_stanza_or_none", slow_stanza)
    settings = DownloadSettings(hf_endpoint="http://127.0.0.1:9", backoff=0.01, retries=1)
    results = {}

    def install(sub):
        results[sub] = run_plan(InstallPlan(imports=(srv.url_for(f"{sub}/model.safetensors"),)), root, settings=settings,
                                on_event=lambda e: None)

    threads = [threading.Thread(target=install, args=(sub,)) for sub in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r.ok for r in results.values()), {k: r.outcomes for k, r in results.items()}
    names = {results[s].outcomes[0].name for s in ("a", "b")}
    assert len(names) == 2, names
    paths = {results[s].outcomes[0].path for s in ("a", "b")}
    assert len(paths) == 2, paths
    for sub in ("a", "b"):
        out = results[sub].outcomes[0]
        assert (root.root / out.path).read_bytes() == contents[sub]
        m = mf.read_manifest(root, out.name)
        assert m is not None and m.path == out.path and not mf.verify_manifest(root, m, full=True)
    assert {m.name for m in mf.all_manifests(root) if m.state == "installed"} >= names  # VAEs: manifests, no stanza
    assert not list((root.partial_dir / "locks" / "reserved").glob("*.json"))  # reservations released
