"""The kinds beyond SD 1/2/XL (identify/families.py): tiny real files with the key names and the shapes
detection reads - upscalers, CLIP text encoders, CLIP vision, IP-Adapter, T2I-Adapter, SD 3/3.5, FLUX.1;
and what an InvokeAI root does with them."""

from __future__ import annotations

import shutil
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from invokeai_model_install.app.configure import create_layout
from invokeai_model_install.identify import headers, probe
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.install.worker import run_plan
from invokeai_model_install.root import manifest as mf
from invokeai_model_install.root.layout import RootLayout
from invokeai_model_install.root.registry import Registry


def t(*shape):
    return torch.zeros(*shape, dtype=torch.float16)


def flux_dit(prefix="", dev=True, h=32):
    sd = {prefix + "img_in.weight": t(h, 64), prefix + "txt_in.weight": t(h, 4096 // 64),
          prefix + "time_in.in_layer.weight": t(h, 256), prefix + "vector_in.in_layer.weight": t(h, 768),
          prefix + "double_blocks.0.img_attn.qkv.weight": t(3 * h, h), prefix + "double_blocks.0.txt_attn.qkv.weight": t(3 * h, h),
          prefix + "single_blocks.0.linear1.weight": t(7 * h, h), prefix + "final_layer.linear.weight": t(64, h)}
    if dev:
        sd[prefix + "guidance_in.in_layer.weight"] = t(h, 256)
    return sd


def sd3_mmdit(prefix="", blocks=2, attn2=False, h=32):
    sd = {prefix + "x_embedder.proj.weight": t(h, 16, 2, 2), prefix + "context_embedder.weight": t(h, 4096)}
    for i in range(blocks):
        sd[f"{prefix}joint_blocks.{i}.context_block.attn.qkv.weight"] = t(3 * h, h)
        sd[f"{prefix}joint_blocks.{i}.x_block.attn.qkv.weight"] = t(3 * h, h)
        if attn2:
            sd[f"{prefix}joint_blocks.{i}.x_block.attn2.qkv.weight"] = t(3 * h, h)
    return sd


def vae_and_clip(prefix_vae="first_stage_model."):
    return {prefix_vae + "encoder.conv_in.weight": t(8, 3, 3, 3), prefix_vae + "decoder.conv_in.weight": t(8, 16, 3, 3),
            "text_encoders.clip_l.transformer.text_model.embeddings.token_embedding.weight": t(16, 768)}


def esrgan_old(c=8):
    sd = {"model.0.weight": t(c, 3, 3, 3), "model.0.bias": t(c)}
    for b in range(2):
        for r in (1, 2, 3):
            for k in range(1, 6):
                sd[f"model.1.sub.{b}.RDB{r}.conv{k}.0.weight"] = t(c, c, 3, 3)
    sd.update({"model.1.sub.2.weight": t(c, c, 3, 3), "model.3.weight": t(c, c, 3, 3), "model.6.weight": t(c, c, 3, 3),
               "model.8.weight": t(c, c, 3, 3), "model.10.weight": t(3, c, 3, 3)})
    return sd


def rrdbnet(c=8):
    sd = {"conv_first.weight": t(c, 3, 3, 3), "conv_body.weight": t(c, c, 3, 3), "conv_up1.weight": t(c, c, 3, 3),
          "conv_up2.weight": t(c, c, 3, 3), "conv_hr.weight": t(c, c, 3, 3), "conv_last.weight": t(3, c, 3, 3)}
    for r in (1, 2, 3):
        for k in range(1, 6):
            sd[f"body.0.rdb{r}.conv{k}.weight"] = t(c, c, 3, 3)
    return sd


def swinir(c=8):
    return {"conv_first.weight": t(c, 3, 3, 3), "patch_embed.norm.weight": t(c),
            "layers.0.residual_group.blocks.0.attn.relative_position_bias_table": t(225, 2),
            "layers.0.residual_group.blocks.0.attn.qkv.weight": t(3 * c, c), "conv_after_body.weight": t(c, c, 3, 3),
            "conv_before_upsample.0.weight": t(c, c, 3, 3), "conv_last.weight": t(3, c, 3, 3)}


def compact(c=8):
    return {"body.0.weight": t(c, 3, 3, 3), "body.0.bias": t(c), "body.1.weight": t(c), "body.2.weight": t(c, c, 3, 3),
            "body.2.bias": t(c), "body.3.weight": t(c), "body.4.weight": t(48, c, 3, 3), "body.4.bias": t(48)}


def clip_text(prefix="text_model.", width=768):
    return {prefix + "embeddings.token_embedding.weight": t(16, width), prefix + "embeddings.position_embedding.weight": t(77, width),
            prefix + "encoder.layers.0.self_attn.q_proj.weight": t(width, width), prefix + "final_layer_norm.weight": t(width)}


def t5():
    return {"shared.weight": t(16, 8), "encoder.block.0.layer.0.SelfAttention.q.weight": t(8, 8),
            "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": t(32, 2), "encoder.final_layer_norm.weight": t(8)}


def clip_vision_model(width=1280):
    return {"vision_model.embeddings.patch_embedding.weight": t(width, 3, 14, 14), "vision_model.embeddings.class_embedding": t(width),
            "vision_model.encoder.layers.0.self_attn.k_proj.weight": t(8, 8), "visual_projection.weight": t(1024, width)}


def ip_adapter_parts(ctx=768):
    return ({"proj.weight": t(4 * 8, 1024), "norm.weight": t(8)},
            {"1.to_k_ip.weight": t(8, ctx), "1.to_v_ip.weight": t(8, ctx)})


def t2i(prefix=""):
    return {prefix + "conv_in.weight": t(8, 192, 3, 3), prefix + "body.0.block1.weight": t(8, 8, 3, 3),
            prefix + "body.0.block2.weight": t(8, 8, 1, 1), prefix + "body.1.in_conv.weight": t(16, 8, 1, 1)}


def write(path, sd, fmt="safetensors"):
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save(sd, str(path))
    return path


CASES = {
    "flux1-dev.safetensors": (lambda: flux_dit(), "diffusion_model", "flux.1", "dev"),
    "flux1-schnell-whole.safetensors": (lambda: {**flux_dit("model.diffusion_model.", dev=False), **vae_and_clip("vae.")}, "main", "flux.1", "schnell"),
    "sd3_medium.safetensors": (lambda: sd3_mmdit(), "diffusion_model", "sd-3", "medium"),
    "sd3.5_medium_incl_clips.safetensors": (lambda: {**sd3_mmdit("model.diffusion_model.", attn2=True), **vae_and_clip()}, "main", "sd-3.5", "medium"),
    "sd3.5_large.safetensors": (lambda: sd3_mmdit(blocks=38, h=8), "diffusion_model", "sd-3.5", "large"),
    "RealESRGAN_x4plus.pth": (lambda: {"params_ema": rrdbnet()}, "upscaler", None, "realesrgan"),
    "4x-UltraSharp.pth": (lambda: esrgan_old(), "upscaler", None, "esrgan"),
    "SwinIR_x4.safetensors": (lambda: swinir(), "upscaler", None, "swinir"),
    "realesr-general-x4v3.pth": (lambda: {"params": compact()}, "upscaler", None, "realesrgan-compact"),
    "clip_l.safetensors": (lambda: clip_text(), "text_encoder", "clip-l", "clip"),
    "clip_g.safetensors": (lambda: clip_text(width=1280), "text_encoder", "clip-g", "clip"),
    "clip_l-transformers5.safetensors": (lambda: clip_text(prefix=""), "text_encoder", "clip-l", "clip"),
    "t5xxl_fp16.safetensors": (lambda: t5(), "text_encoder", "t5", "t5"),
    "clip_vision_h.safetensors": (lambda: clip_vision_model(), "clip_vision", "vit-h", None),
    "ip-adapter_sd15.bin": (lambda: dict(zip(("image_proj", "ip_adapter"), ip_adapter_parts())), "ip_adapter", "sd-1", None),
    "ip-adapter_sdxl.safetensors": (lambda: {**{f"image_proj.{k}": v for k, v in ip_adapter_parts(2048)[0].items()},
                                             **{f"ip_adapter.{k}": v for k, v in ip_adapter_parts(2048)[1].items()}}, "ip_adapter", "sdxl", None),
    "t2iadapter_canny_sd15v2.pth": (lambda: t2i(), "t2i_adapter", None, None),
    "t2i-adapter-diffusers.safetensors": (lambda: t2i("adapter."), "t2i_adapter", None, None),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_new_kind_is_told_from_its_header(tmp_path, name):
    build, kind, base, variant = CASES[name]
    path = write(tmp_path / name, build(), "safetensors" if name.endswith(".safetensors") else "pt")
    r = probe.probe(path)
    assert (r.kind, r.base, r.variant) == (kind, base, variant), r
    assert r.prediction_type is None


def _in_place(monkeypatch):
    """Every header queried in place (the big-file paths: safetensors JSON bytes, zip data.pkl opcodes)."""
    monkeypatch.setattr(headers, "FULL_PARSE_BELOW", 0)
    monkeypatch.setattr(headers, "PICKLE_IN_PLACE_ABOVE", 0)
    monkeypatch.setattr(headers, "RECORDS_IN_PLACE_ABOVE", 0)


#: the family rules skip a name's lookups when ``may_have`` says its bytes are nowhere in the header;
#: on a big header (an SD checkpoint) they run for every file, so this is where a skip could hide a match
IN_PLACE_CASES = sorted(CASES)
#: a state dict wrapped in another dict ({"params_ema": {...}}, an IP-Adapter's two parts): the pickle's
#: bytes cannot join the two levels of names, so these are unpickled whole (small files) and flattened
WRAPPED = {"ip-adapter_sd15.bin", "RealESRGAN_x4plus.pth", "realesr-general-x4v3.pth"}


@pytest.mark.parametrize("name", IN_PLACE_CASES)
def test_each_new_kind_is_told_from_a_header_queried_in_place(tmp_path, monkeypatch, name):
    build, kind, base, variant = CASES[name]
    path = write(tmp_path / name, build(), "safetensors" if name.endswith(".safetensors") else "pt")
    _in_place(monkeypatch)
    index = headers.open_index(path)[0]
    assert (type(index) is headers.TensorIndex) == (name in WRAPPED)  # really in place, except the wrapped
    r = probe.probe(path)
    assert (r.kind, r.base, r.variant) == (kind, base, variant), r


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_full_size_realesrgan_pth_is_an_upscaler(tmp_path, legacy):
    # the real RealESRGAN_x4plus.pth layout: 23 RRDB blocks (~700 tensors) under "params_ema"; its data.pkl
    # is far above the in-place threshold, and the wrapped names must still be found (widths kept small)
    sd = rrdbnet()
    for b in range(1, 23):
        for r in (1, 2, 3):
            for k in range(1, 6):
                sd[f"body.{b}.rdb{r}.conv{k}.weight"] = t(8, 8, 3, 3)
                sd[f"body.{b}.rdb{r}.conv{k}.bias"] = t(8)
    path = tmp_path / "RealESRGAN_x4plus.pth"
    torch.save({"params_ema": sd}, str(path), _use_new_zipfile_serialization=not legacy)
    if not legacy:
        with zipfile.ZipFile(path) as z:
            assert len(z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))) > headers.PICKLE_IN_PLACE_ABOVE
    r = probe.probe(path)
    assert (r.kind, r.variant) == ("upscaler", "realesrgan"), r


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_may_have_is_false_only_for_bytes_no_name_contains(tmp_path, monkeypatch, fmt):
    sd = {**flux_dit("model.diffusion_model."), **rrdbnet(), **t5()}
    path = write(tmp_path / f"m.{fmt}", sd, fmt)
    _in_place(monkeypatch)
    index = headers.open_index(path)[0]
    assert type(index) is not headers.TensorIndex
    for name in sd:
        for fragment in (name, name[: len(name) // 2], name[len(name) // 2:]):
            assert index.may_have(fragment), fragment
    for absent in ("joint_blocks.0.context_block.attn.qkv.weight", "model.0.weight", "body.0.weight", "params_ema."):
        assert not index.may_have(absent) and index.get(absent) is None and not index.has_prefix(absent)
    assert headers.TensorIndex({}).may_have("anything")  # names in a dict: lookups are cheap, never skipped


def test_sd_models_and_adapters_stay_what_they_were(tiny_extras, tiny_checkpoints):
    assert probe.probe(tiny_checkpoints[("sd-1", "safetensors")]).kind == "main"
    for name, kind in (("vae.safetensors", "vae"), ("lora-sd-1.safetensors", "lora"), ("embedding.pt", "embedding"),
                       ("controlnet-sd-1.safetensors", "controlnet")):
        assert probe.probe(tiny_extras[name]).kind == kind


@pytest.fixture
def root(tmp_path):
    layout = RootLayout(tmp_path / "invokeai")
    create_layout(layout)
    return layout


def test_an_upscaler_goes_to_upscale_models_unregistered(root, file_server):
    write(file_server.folder / "RealESRGAN_x4plus.pth", {"params_ema": rrdbnet()}, "pt")
    result = run_plan(InstallPlan(imports=(file_server.url_for("RealESRGAN_x4plus.pth"),)), root)
    assert result.ok, [o.one_line() for o in result.failed]
    placed = root.models_dir / "upscale_models" / "RealESRGAN_x4plus.pth"
    assert placed.is_file()
    assert Registry(root.models_yaml).load() == {}  # InvokeAI 2.3 has no loader for it: no stanza
    (m,) = list(mf.all_manifests(root))
    assert (m.kind, m.state, m.path) == ("upscaler", "installed", "models/upscale_models/RealESRGAN_x4plus.pth")
    again = run_plan(InstallPlan(imports=(file_server.url_for("RealESRGAN_x4plus.pth"),)), root)
    assert [o.status for o in again.outcomes] == ["skipped"]
    # ComfyUI sees it under upscale_models
    from invokeai_model_install.share import comfyui

    assert "models/upscale_models" in comfyui.section_folders(root)["upscale_models"]


@pytest.mark.parametrize("name", ["flux1-dev.safetensors", "sd3.5_medium_incl_clips.safetensors"])
def test_a_newer_family_is_refused_in_an_invokeai_root_in_one_line(root, file_server, tmp_path, name):
    build, *_ = CASES[name]
    write(file_server.folder / name, build())
    result = run_plan(InstallPlan(imports=(file_server.url_for(name),)), root)
    (failed,) = result.failed
    line = failed.one_line()
    assert "InvokeAI 2.3 cannot run it" in line and ("FLUX.1 dev" in line or "Stable Diffusion 3.5" in line)
    assert "\n" not in line and Registry(root.models_yaml).load() == {}
    assert not any(p.is_file() for p in root.models_dir.rglob("*") if ".partial" not in p.parts)
    # a local file too (it stays where it is, unregistered)
    local = write(tmp_path / "local" / name, build())
    result = run_plan(InstallPlan(imports=(str(local),)), root)
    assert "InvokeAI 2.3 cannot run it" in result.failed[0].one_line() and local.is_file()


def test_in_place_registers_a_comfyui_tree_where_it_is(root, tmp_path, tiny_checkpoints, tiny_extras, capsys):
    """`--add ~/ComfyUI/models --in-place`: every model this root can use is registered where it lies; nothing is
    copied, moved or converted; a FLUX file is left alone with a note (not a failure)."""
    from invokeai_model_install.app import cli

    tree = tmp_path / "ComfyUI" / "models"
    ckpt = tree / "checkpoints" / "dreamshaper.safetensors"
    ckpt.parent.mkdir(parents=True)
    shutil.copy(tiny_checkpoints[("sd-1", "safetensors")], ckpt)
    lora = tree / "loras" / "sub" / "style.safetensors"
    lora.parent.mkdir(parents=True)
    shutil.copy(tiny_extras["lora-sd-1.safetensors"], lora)
    up = write(tree / "upscale_models" / "RealESRGAN_x4plus.pth", {"params_ema": rrdbnet()}, "pt")
    flux = write(tree / "diffusion_models" / "flux1-dev.safetensors", flux_dit())
    before = {p: p.stat().st_ino for p in tree.rglob("*") if p.is_file()}
    root_files = {p for p in root.root.rglob("*") if p.is_file()}
    capsys.readouterr()
    code = cli.main(["--root", str(root.root), "--add", str(tree), "--in-place", "--json"])
    import json

    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    by_path = {o["path"]: o["status"] for o in out["items"]}
    assert by_path[str(flux)] == "skipped" and "InvokeAI 2.3 cannot run it" in next(o["message"] for o in out["items"] if o["path"] == str(flux))
    stanzas = Registry(root.models_yaml).load()
    assert stanzas["dreamshaper"]["weights"] == str(ckpt)
    # a LoRA has no stanza in a 2.3 root; in place it is recorded where it is (its manifest)
    assert "style" not in stanzas and mf.read_manifest(root, "style").path == str(lora)
    assert {m.name: m.path for m in mf.all_manifests(root)}["RealESRGAN_x4plus"] == str(up)  # no stanza, in place
    assert {p: p.stat().st_ino for p in tree.rglob("*") if p.is_file()} == before  # nothing moved or rewritten
    new = {p for p in root.root.rglob("*") if p.is_file()} - root_files
    assert not [p for p in new if p.suffix in (".safetensors", ".pth", ".ckpt", ".bin")], new  # no copy of any model
    assert cli.main(["--root", str(root.root), "--add", str(tree), "--in-place", "--convert"]) == 2
