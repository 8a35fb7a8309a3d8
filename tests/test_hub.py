"""Hub resolution (file selection, pinning, errors) and hub downloads against the stand-in hub."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from invokeai_model_install.net import engine, hub
from invokeai_model_install.net.settings import DownloadSettings
from invokeai_model_install.errors import AuthError, DownloadError, IntegrityError, NotFoundError, OfflineError, SourceError
from invokeai_model_install.net.sources import HubSource


def settings(hub_server, **kw) -> DownloadSettings:
    base = dict(hf_endpoint=hub_server.url, backoff=0.01, retries=2, read_timeout=10, split_size=1 << 20)
    base.update(kw)
    return DownloadSettings(**base)


def write(root: Path, files: dict[str, bytes | str]) -> Path:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def blob(n: int, seed: str) -> bytes:
    return (hashlib.sha256(seed.encode()).digest() * (n // 32 + 1))[:n]


PIPELINE_INDEX = json.dumps(
    {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.42.1",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "PNDMScheduler"],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
    }
)


@pytest.fixture
def pipeline_repo(tmp_path) -> Path:
    return write(
        tmp_path / "pipe",
        {
            "model_index.json": PIPELINE_INDEX,
            "README.md": "# card",
            "v1-5-pruned.ckpt": blob(3000, "ckpt"),
            "v1-5-pruned.safetensors": blob(3000, "st"),
            "sample.png": b"\x89PNG",
            "unet/config.json": "{}",
            "unet/diffusion_pytorch_model.safetensors": blob(4000, "unet32"),
            "unet/diffusion_pytorch_model.fp16.safetensors": blob(2000, "unet16"),
            "unet/diffusion_pytorch_model.bin": blob(4000, "unetbin"),
            "unet/diffusion_pytorch_model.fp16.bin": blob(2000, "unetbin16"),
            "unet/diffusion_flax_model.msgpack": blob(100, "flax"),
            "vae/config.json": "{}",
            "vae/diffusion_pytorch_model.bin": blob(500, "vaebin"),
            "vae/diffusion_pytorch_model.safetensors": blob(500, "vaest"),
            "text_encoder/config.json": "{}",
            "text_encoder/model-00001-of-00002.safetensors": blob(700, "s1"),
            "text_encoder/model-00002-of-00002.safetensors": blob(300, "s2"),
            "text_encoder/model.safetensors.index.json": "{}",
            "text_encoder/pytorch_model.bin": blob(1000, "tebin"),
            "text_encoder/flax_model.msgpack": blob(100, "teflax"),
            "tokenizer/vocab.json": "{}",
            "tokenizer/merges.txt": "#version: 0.2\n",
            "tokenizer/tokenizer_config.json": "{}",
            "tokenizer/special_tokens_map.json": "{}",
            "scheduler/scheduler_config.json": "{}",
            "safety_checker/config.json": "{}",
            "safety_checker/model.safetensors": blob(900, "safety"),
            "onnx/unet/model.onnx": blob(100, "onnx"),
        },
    )


def test_pipeline_fp16_picks_variant_safetensors_and_whole_shard_sets(hub_server, pipeline_repo):
    sha = hub_server.add_repo("owner/pipe", pipeline_repo)
    r = hub.resolve_hub(HubSource("owner/pipe"), settings(hub_server), precision="fp16")
    assert sorted(f.relpath for f in r.files) == [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model-00001-of-00002.safetensors",
        "text_encoder/model-00002-of-00002.safetensors",
        "text_encoder/model.safetensors.index.json",
        "tokenizer/merges.txt",
        "tokenizer/special_tokens_map.json",
        "tokenizer/tokenizer_config.json",
        "tokenizer/vocab.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    ]
    assert r.commit == sha and r.kind_hint == "main-diffusers" and r.repo_id == "owner/pipe"
    assert r.total_size == sum(f.size for f in r.files)
    assert all(f"/owner/pipe/resolve/{sha}/" in f.url for f in r.files)  # pinned to the commit
    unet = next(f for f in r.files if f.relpath.startswith("unet/diffusion"))
    assert unet.sha256 == hashlib.sha256(blob(2000, "unet16")).hexdigest()
    cfg = next(f for f in r.files if f.relpath == "unet/config.json")
    assert cfg.sha256 is None and cfg.git_oid  # small files are verified by their git blob id


def test_pipeline_fp32_takes_the_full_weights(hub_server, pipeline_repo):
    hub_server.add_repo("owner/pipe", pipeline_repo)
    r = hub.resolve_hub(HubSource("owner/pipe"), settings(hub_server), precision="fp32")
    rels = {f.relpath for f in r.files}
    assert "unet/diffusion_pytorch_model.safetensors" in rels
    assert not any("fp16" in x or x.endswith(".bin") for x in rels)


def test_fp16_falls_back_to_full_weights_and_bin_when_no_safetensors(hub_server, tmp_path):
    repo = write(tmp_path / "r", {
        "model_index.json": json.dumps({"_class_name": "X", "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}),
        "unet/config.json": "{}", "unet/diffusion_pytorch_model.bin": blob(100, "a"),
        "vae/config.json": "{}", "vae/diffusion_pytorch_model.safetensors": blob(100, "b"),
    })
    hub_server.add_repo("o/old", repo)
    rels = {f.relpath for f in hub.resolve_hub(HubSource("o/old"), settings(hub_server), precision="fp16").files}
    assert rels == {"model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.bin", "vae/config.json", "vae/diffusion_pytorch_model.safetensors"}


def test_subfolder_single_component_and_single_file(hub_server, pipeline_repo, tmp_path):
    hub_server.add_repo("owner/pipe", pipeline_repo)
    s = settings(hub_server)
    r = hub.resolve_hub(HubSource("owner/pipe", subfolder="vae"), s)
    assert sorted(f.relpath for f in r.files) == ["config.json", "diffusion_pytorch_model.safetensors"] and r.kind_hint is None
    r = hub.resolve_hub(HubSource("owner/pipe", path_in_repo="unet/diffusion_pytorch_model.bin"), s)
    assert [f.relpath for f in r.files] == ["diffusion_pytorch_model.bin"]
    vae = write(tmp_path / "vae", {"config.json": "{}", "diffusion_pytorch_model.bin": blob(10, "x"), "diffusion_pytorch_model.safetensors": blob(10, "y"), "README.md": "x"})
    hub_server.add_repo("o/vae", vae)
    assert sorted(f.relpath for f in hub.resolve_hub(HubSource("o/vae"), s).files) == ["config.json", "diffusion_pytorch_model.safetensors"]
    lora = write(tmp_path / "lora", {"my_lora.ckpt": blob(50, "c"), "my_lora.safetensors": blob(50, "s"), "README.md": "x", "preview.png": b"png"})
    hub_server.add_repo("o/lora", lora)
    assert [f.relpath for f in hub.resolve_hub(HubSource("o/lora"), s).files] == ["my_lora.safetensors"]
    many = write(tmp_path / "many", {"a.safetensors": blob(5, "a"), "b.safetensors": blob(5, "b")})
    hub_server.add_repo("o/many", many)
    with pytest.raises(SourceError, match="a.safetensors, b.safetensors"):
        hub.resolve_hub(HubSource("o/many"), s)
    with pytest.raises(NotFoundError):
        hub.resolve_hub(HubSource("owner/pipe", subfolder="nope"), s)


def test_missing_repo_revision_and_file(hub_server, pipeline_repo):
    hub_server.add_repo("owner/pipe", pipeline_repo)
    s = settings(hub_server)
    with pytest.raises(NotFoundError, match="owner/missing"):
        hub.resolve_hub(HubSource("owner/missing"), s)
    with pytest.raises(NotFoundError, match="revision 'v9'"):
        hub.resolve_hub(HubSource("owner/pipe", revision="v9"), s)
    with pytest.raises(NotFoundError, match="nope.ckpt"):
        hub.resolve_hub(HubSource("owner/pipe", path_in_repo="nope.ckpt"), s)


def test_revision_pins_to_its_commit(hub_server, pipeline_repo, tmp_path):
    first = hub_server.add_repo("owner/pipe", pipeline_repo)
    second = hub_server.add_repo("owner/pipe", write(tmp_path / "v2", {"model.safetensors": blob(10, "v2")}))
    s = settings(hub_server)
    assert hub.resolve_hub(HubSource("owner/pipe"), s).commit == second
    assert hub.resolve_hub(HubSource("owner/pipe", revision=first), s).commit == first


def test_unreachable_hub_and_offline(tmp_path):
    s = DownloadSettings(hf_endpoint="http://127.0.0.1:9", retries=0, connect_timeout=2, read_timeout=2)
    with pytest.raises(DownloadError, match="127.0.0.1:9"):
        hub.resolve_hub(HubSource("o/x"), s)
    with pytest.raises(OfflineError, match="o/x"):
        hub.resolve_hub(HubSource("o/x"), DownloadSettings(offline=True))


def test_gated_repo_names_the_license_page_then_works_with_a_token(hub_server, pipeline_repo, tmp_path):
    hub_server.add_repo("owner/gated", pipeline_repo, gated=True)
    with pytest.raises(AuthError) as err:
        r = hub.resolve_hub(HubSource("owner/gated", subfolder="vae"), settings(hub_server))
        engine.download(r, tmp_path / "d", partial_dir=tmp_path / "p", settings=settings(hub_server))
    assert f"{hub_server.url}/owner/gated" in err.value.one_line()
    assert "HF_TOKEN" in err.value.hint
    with pytest.raises(AuthError, match=f"{hub_server.url}/owner/gated"):
        hub.resolve_hub(HubSource("owner/gated"), settings(hub_server))  # the pipeline's model_index.json is gated too
    hub_server.grant("owner/gated", "hf_granted")
    s = settings(hub_server, hf_token="hf_granted")
    r = hub.resolve_hub(HubSource("owner/gated"), s)
    res = engine.download(r, tmp_path / "d", partial_dir=tmp_path / "p", settings=s)
    assert (tmp_path / "d" / "unet" / "diffusion_pytorch_model.fp16.safetensors").read_bytes() == blob(2000, "unet16")
    assert res.fetched_bytes == r.total_size
    assert set(hub_server.stats.auth_headers("/owner/gated/resolve/*")) == {"Bearer hf_granted"}


def test_hub_download_through_a_cdn_redirect_keeps_the_token_home(hub_server, pipeline_repo, make_file_server, tmp_path):
    sha = hub_server.add_repo("owner/pipe", pipeline_repo)
    hub_server.valid_tokens.add("hf_secret_token")
    cdn = make_file_server(pipeline_repo, host="127.0.0.2")
    hub_server.faults.redirect(f"/owner/pipe/resolve/{sha}/*.safetensors", lambda p: cdn.url_for(p.split("/", 5)[5]))
    s = settings(hub_server, hf_token="hf_secret_token")
    r = hub.resolve_hub(HubSource("owner/pipe"), s)
    res = engine.download(r, tmp_path / "d", partial_dir=tmp_path / "p", settings=s)
    assert len(res.paths) == len(r.files)
    for f in r.files:
        assert res.paths[f.relpath].read_bytes() == (pipeline_repo / f.relpath).read_bytes()
    assert cdn.stats.requests_for("*.safetensors") and cdn.stats.auth_headers() == []
    assert "Bearer hf_secret_token" in hub_server.stats.auth_headers()


def test_hub_serving_wrong_bytes_is_caught_by_the_lfs_sha256(hub_server, pipeline_repo, tmp_path):
    hub_server.add_repo("owner/pipe", pipeline_repo)
    hub_server.faults.corrupt("*/unet/diffusion_pytorch_model.fp16.safetensors")
    s = settings(hub_server)
    r = hub.resolve_hub(HubSource("owner/pipe", subfolder="unet"), s)
    with pytest.raises(IntegrityError, match="expected sha256"):
        engine.download(r, tmp_path / "d", partial_dir=tmp_path / "p", settings=s)
    assert not (tmp_path / "d" / "diffusion_pytorch_model.fp16.safetensors").exists()
    hub_server.faults.clear()
    hub_server.faults.corrupt("*/unet/config.json")  # a small non-LFS file: checked by its git blob id
    with pytest.raises(IntegrityError, match="git blob"):
        engine.download(r, tmp_path / "d2", partial_dir=tmp_path / "p", settings=s)


def test_hub_429_is_retried(hub_server, pipeline_repo, tmp_path):
    hub_server.add_repo("owner/pipe", pipeline_repo)
    s = settings(hub_server)
    r = hub.resolve_hub(HubSource("owner/pipe", subfolder="vae"), s)
    hub_server.faults.status("*/vae/diffusion_pytorch_model.safetensors", 429, times=1, retry_after=0)
    res = engine.download(r, tmp_path / "d", partial_dir=tmp_path / "p", settings=s)
    assert res.paths["diffusion_pytorch_model.safetensors"].read_bytes() == blob(500, "vaest")
