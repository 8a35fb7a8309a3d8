"""probe.probe: kind/base/variant/prediction type from headers only, on every layout.

Two sets of fixtures:
- key/shape fixtures built here: the real key NAMES with small (or sparse, never
  written) tensors; a probe reads only names, shapes and dtypes;
- the tiny, structurally real models of tests/plugin_models.py (``tiny_models``,
  ``tiny_checkpoints``, extras), probed at the end of this file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import pytest

from invokeai_model_install.identify import headers as probe_mod
from invokeai_model_install.errors import ProbeError
from invokeai_model_install.identify.headers import read_header
from invokeai_model_install.identify.probe import ProbeResult, companion_yaml, probe

U = "model.diffusion_model."
K_SD12 = U + "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"
K_SDXL = U + "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"
K_IN = U + "input_blocks.0.0.weight"

ST_DTYPES = {"float32": ("F32", 4), "float16": ("F16", 2), "bfloat16": ("BF16", 2), "int64": ("I64", 8)}


# --- fixture writers -----------------------------------------------------------------------


def write_safetensors(path: Path, spec: dict[str, tuple], metadata: dict | None = None) -> Path:
    """A valid .safetensors with ``spec`` = {name: (shape, dtype)}; the data area is sparse (never written)."""
    header: dict = {}
    offset = 0
    for name, (shape, dtype) in spec.items():
        code, width = ST_DTYPES[dtype]
        n = width
        for s in shape:
            n *= s
        header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset)  # a hole: the tensors are never written
    return path


def write_ckpt(path: Path, spec: dict[str, tuple], *, wrap: bool = True, legacy: bool = False, **top) -> Path:
    """A torch.save checkpoint of zero tensors (zip by default, legacy when asked)."""
    import torch

    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "int64": torch.int64}
    sd = {name: torch.zeros(shape, dtype=dtypes[dtype]) for name, (shape, dtype) in spec.items()}
    obj = {"state_dict": sd, **top} if wrap else sd
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def f32(*shape):
    return (shape, "float32")


def main_spec(ctx: int, in_ch: int = 4, *, xl: bool = False, dtype: str = "float32") -> dict:
    """The keys a probe looks at in an LDM main checkpoint (SD-1/2 or SDXL layout)."""
    spec = {
        K_IN: ((32, in_ch, 3, 3), dtype),
        U + "out.2.weight": ((4, 32, 3, 3), dtype),
        "first_stage_model.encoder.conv_in.weight": ((32, 3, 3, 3), dtype),
        "first_stage_model.decoder.conv_in.weight": ((32, 4, 3, 3), dtype),
    }
    if xl:
        spec[K_SDXL] = ((64, ctx), dtype)
        spec["conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight"] = ((49408, 32), dtype)
    else:
        spec[K_SD12] = ((32, ctx), dtype)
        spec["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] = ((49408, 32), dtype)
    return spec


@pytest.fixture(autouse=True, params=["whole-header", "in-place"])
def header_mode(request, monkeypatch):
    """Run every test twice: headers parsed/unpickled whole, and queried in place (the big-file paths).

    The in-place readers answer from the raw bytes (safetensors JSON, pickle opcodes)
    and must agree with the whole-header answers on every fixture.
    """
    in_place = request.param == "in-place"
    monkeypatch.setattr(probe_mod, "FULL_PARSE_BELOW", 0 if in_place else 10**15)
    monkeypatch.setattr(probe_mod, "PICKLE_IN_PLACE_ABOVE", 0 if in_place else 10**15)
    monkeypatch.setattr(probe_mod, "RECORDS_IN_PLACE_ABOVE", 0 if in_place else 10**15)
    return request.param


@pytest.fixture(scope="module")
def torch_mod():
    return pytest.importorskip("torch")


# --- main models: base and variant ---------------------------------------------------------


@pytest.mark.parametrize(
    "ctx, in_ch, xl, base, variant",
    [
        (768, 4, False, "sd-1", "normal"),
        (768, 9, False, "sd-1", "inpaint"),
        (1024, 4, False, "sd-2", "normal"),
        (1024, 9, False, "sd-2", "inpaint"),
        (1024, 5, False, "sd-2", "depth"),
        (2048, 4, True, "sdxl", "normal"),
        (2048, 9, True, "sdxl", "inpaint"),
        (1280, 4, True, "sdxl-refiner", "normal"),
    ],
)
def test_main_base_and_variant_from_safetensors_header(tmp_path, ctx, in_ch, xl, base, variant):
    path = write_safetensors(tmp_path / "m.safetensors", main_spec(ctx, in_ch, xl=xl))
    r = probe(path)
    assert (r.kind, r.base, r.variant, r.format) == ("main", base, variant, "safetensors")
    assert r.reason == ""
    assert r.size == path.stat().st_size
    assert r.dtype == "float32"


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("ctx, xl, base", [(768, False, "sd-1"), (1024, False, "sd-2"), (2048, True, "sdxl"),
                                           (1280, True, "sdxl-refiner")])
def test_main_from_pickle_checkpoint(tmp_path, torch_mod, legacy, ctx, xl, base):
    path = write_ckpt(tmp_path / "m.ckpt", main_spec(ctx, xl=xl, dtype="float16"), legacy=legacy,
                      global_step=12345, epoch=3)
    r = probe(path)
    assert (r.kind, r.base, r.variant, r.format, r.dtype) == ("main", base, "normal", "ckpt", "float16")
    assert r.global_step == 12345


def test_main_unwrapped_state_dict_and_other_suffixes(tmp_path, torch_mod):
    for name in ("m.pt", "m.pth", "m.bin", "m.noext"):
        r = probe(write_ckpt(tmp_path / name, main_spec(768), wrap=False))
        assert (r.kind, r.base, r.format, r.global_step) == ("main", "sd-1", "ckpt", None)


def test_main_base_from_any_cross_attention_when_release_blocks_are_missing(tmp_path):
    spec = {K_IN: f32(32, 4, 3, 3),
            U + "middle_block.1.transformer_blocks.0.attn2.to_k.weight": f32(64, 1024)}
    assert probe(write_safetensors(tmp_path / "m.safetensors", spec)).base == "sd-2"


def test_main_with_unsupported_input_channels_is_unknown_with_reason(tmp_path):
    r = probe(write_safetensors(tmp_path / "ip2p.safetensors", main_spec(768, in_ch=8)))
    assert r.kind == "unknown" and r.base == "sd-1"
    assert "8 input channels" in r.reason


def test_main_of_unknown_width_is_unknown(tmp_path):
    spec = {K_IN: f32(32, 4, 3, 3), U + "out.2.weight": f32(4, 32, 3, 3)}
    r = probe(write_safetensors(tmp_path / "m.safetensors", spec))
    assert r.kind == "unknown" and "cross-attention" in r.reason


def test_dtype_is_the_majority_and_ema_is_seen(tmp_path):
    spec = main_spec(768, dtype="float16")
    spec["model_ema.decay"] = ((), "float32")
    spec["model_ema.num_updates"] = ((), "int64")
    r = probe(write_safetensors(tmp_path / "a.safetensors", spec))
    assert r.dtype == "float16" and r.has_ema is False  # bookkeeping keys alone are not EMA weights
    spec["model_ema.diffusion_modelinput_blocks00weight"] = f32(32, 4, 3, 3)
    assert probe(write_safetensors(tmp_path / "b.safetensors", spec)).has_ema is True


# --- prediction type ----------------------------------------------------------------------


@pytest.mark.parametrize("step, expected", [(110000, "v"), (220000, "epsilon"), (5000, "undecided"), (None, "undecided")])
def test_sd2_prediction_type_from_global_step(tmp_path, torch_mod, step, expected):
    top = {} if step is None else {"global_step": step}
    r = probe(write_ckpt(tmp_path / "sd2.ckpt", main_spec(1024), **top))
    assert r.prediction_type == expected and r.global_step == step


@pytest.mark.parametrize("ctx, xl", [(768, False), (2048, True), (1280, True)])
def test_sd1_and_sdxl_are_epsilon_whatever_the_step(tmp_path, torch_mod, ctx, xl):
    r = probe(write_ckpt(tmp_path / "m.ckpt", main_spec(ctx, xl=xl), global_step=110000))
    assert r.prediction_type == "epsilon"


def test_sd2_safetensors_without_clues_is_undecided_and_metadata_can_decide(tmp_path):
    assert probe(write_safetensors(tmp_path / "a.safetensors", main_spec(1024))).prediction_type == "undecided"
    r = probe(write_safetensors(tmp_path / "b.safetensors", main_spec(1024), {"global_step": "110000"}))
    assert (r.prediction_type, r.global_step) == ("v", 110000)


@pytest.mark.parametrize("variant_ch", [9, 5])
def test_sd2_inpaint_and_depth_are_epsilon(tmp_path, variant_ch):
    assert probe(write_safetensors(tmp_path / "m.safetensors", main_spec(1024, variant_ch))).prediction_type == "epsilon"


V_YAML = "model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n  params:\n    parameterization: \"v\"\n    linear_start: 0.00085\n"
EPS_YAML = "model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n  params:\n    linear_start: 0.00085\n"


def test_companion_yaml_decides_prediction_type(tmp_path, torch_mod):
    ckpt = write_ckpt(tmp_path / "model.ckpt", main_spec(1024), global_step=220000)
    (tmp_path / "model.yaml").write_text(V_YAML)
    assert companion_yaml(ckpt) == tmp_path / "model.yaml"
    assert probe(ckpt).prediction_type == "v"  # the yaml beats the step
    (tmp_path / "model.yaml").write_text(EPS_YAML)
    assert probe(ckpt).prediction_type == "epsilon"
    st = write_safetensors(tmp_path / "other.safetensors", main_spec(1024))
    (tmp_path / "other.yml").write_text(V_YAML)
    assert probe(st).prediction_type == "v"


def test_unreadable_companion_yaml_is_no_evidence(tmp_path):
    st = write_safetensors(tmp_path / "m.safetensors", main_spec(1024))
    (tmp_path / "m.yaml").write_text("model: [unclosed\n  : :")
    assert probe(st).prediction_type == "undecided"


# --- other kinds ---------------------------------------------------------------------------


def test_vae_files(tmp_path, torch_mod):
    vae = {"encoder.conv_in.weight": f32(32, 3, 3, 3), "decoder.conv_in.weight": f32(32, 4, 3, 3),
           "quant_conv.weight": f32(8, 8, 1, 1)}
    r = probe(write_safetensors(tmp_path / "vae.safetensors", vae))
    assert (r.kind, r.base, r.variant, r.prediction_type) == ("vae", None, None, None)
    # the SD releases' vae-ft-mse-840000-ema-pruned.ckpt: a state_dict with loss keys too
    r = probe(write_ckpt(tmp_path / "vae.ckpt", {**vae, "loss.logvar": f32(1)}, global_step=840000))
    assert r.kind == "vae"
    fs = {"first_stage_model." + k: v for k, v in vae.items()}
    assert probe(write_safetensors(tmp_path / "fs.safetensors", fs)).kind == "vae"


@pytest.mark.parametrize(
    "spec, base",
    [
        ({"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": f32(4, 768),
          "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight": f32(320, 4),
          "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.alpha": ((), "float32")}, "sd-1"),
        ({"lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": f32(4, 1024),
          "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": f32(4096, 4)}, "sd-2"),
        ({"lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": f32(4, 768),
          "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight": f32(4, 2048)}, "sdxl"),
        ({"unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": f32(4, 2048),
          "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight": f32(640, 4)}, "sdxl"),
        ({"down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora.down.weight": f32(4, 768),
          "down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora.up.weight": f32(320, 4)}, "sd-1"),
        ({"lora_unet_mid_block_resnets_0_conv1.hada_w1_a": f32(8, 4)}, None),
    ],
    ids=["kohya-sd1", "kohya-te-sd2", "kohya-sdxl", "peft-sdxl", "diffusers-attnproc-sd1", "lycoris"],
)
def test_lora_files(tmp_path, spec, base):
    r = probe(write_safetensors(tmp_path / "lora.safetensors", spec))
    assert (r.kind, r.base, r.prediction_type) == ("lora", base, None)


def test_embedding_files(tmp_path, torch_mod):
    import torch

    a1111 = tmp_path / "cat.pt"
    torch.save({"string_to_token": {"*": torch.tensor(265)}, "string_to_param": {"*": torch.zeros(4, 768)},
                "name": "cat", "step": 3000}, a1111)
    assert (probe(a1111).kind, probe(a1111).base) == ("embedding", "sd-1")
    emb = write_safetensors(tmp_path / "e.safetensors", {"emb_params": f32(8, 1024)})
    assert (probe(emb).kind, probe(emb).base) == ("embedding", "sd-2")
    xl = write_safetensors(tmp_path / "xl.safetensors", {"clip_l": f32(2, 768), "clip_g": f32(2, 1280)})
    assert (probe(xl).kind, probe(xl).base) == ("embedding", "sdxl")
    learned = tmp_path / "learned_embeds.bin"
    torch.save({"<cat-toy>": torch.zeros(768)}, learned)
    assert (probe(learned).kind, probe(learned).base) == ("embedding", "sd-1")


def test_controlnet_files(tmp_path):
    ldm = {"control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": f32(320, 768),
           "control_model.input_hint_block.0.weight": f32(16, 3, 3, 3),
           K_SD12: f32(320, 768)}  # the original releases carry the whole SD model too
    r = probe(write_safetensors(tmp_path / "control_sd15_canny.safetensors", ldm))
    assert (r.kind, r.base, r.prediction_type) == ("controlnet", "sd-1", None)
    diffusers_single = {"controlnet_cond_embedding.conv_in.weight": f32(16, 3, 3, 3),
                        "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight": f32(640, 2048)}
    r = probe(write_safetensors(tmp_path / "cn.safetensors", diffusers_single))
    assert (r.kind, r.base) == ("controlnet", "sdxl")


@pytest.mark.parametrize(
    "spec",
    [{"foo": f32(32, 64), "bar.baz": f32(7)},
     {"weight": f32(10, 10), "bias": f32(10)},
     {f"t{i}": f32(3, 768) for i in range(20)}],
    ids=["random", "linear", "many-768"],
)
def test_random_tensors_are_unknown_with_a_reason(tmp_path, spec):
    r = probe(write_safetensors(tmp_path / "random.safetensors", spec))
    assert r.kind == "unknown" and r.reason and r.base is None


def test_empty_files_and_non_dict_pickles_are_unknown(tmp_path, torch_mod):
    import torch

    assert "no tensors" in probe(write_safetensors(tmp_path / "e.safetensors", {})).reason
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    assert probe(tmp_path / "list.pt").kind == "unknown"


def test_diffusers_unet_weights_alone_are_unknown(tmp_path):
    spec = {"conv_in.weight": f32(32, 4, 3, 3), "down_blocks.0.resnets.0.conv1.weight": f32(32, 32, 3, 3)}
    r = probe(write_safetensors(tmp_path / "diffusion_pytorch_model.safetensors", spec))
    assert r.kind == "unknown" and "diffusers folder" in r.reason


# --- diffusers folders ---------------------------------------------------------------------


def make_pipeline(folder: Path, cls: str, ctx: int, in_ch: int = 4, prediction: str | None = "epsilon") -> Path:
    (folder / "unet").mkdir(parents=True)
    (folder / "scheduler").mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": cls, "unet": ["diffusers", "UNet2DConditionModel"]}))
    (folder / "unet" / "config.json").write_text(json.dumps(
        {"_class_name": "UNet2DConditionModel", "cross_attention_dim": ctx, "in_channels": in_ch}))
    sched = {"_class_name": "DDIMScheduler"}
    if prediction:
        sched["prediction_type"] = prediction
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(sched))
    write_safetensors(folder / "unet" / "diffusion_pytorch_model.fp16.safetensors",
                      {"conv_in.weight": ((32, in_ch, 3, 3), "float16")})
    return folder


@pytest.mark.parametrize(
    "cls, ctx, in_ch, pred, expect",
    [
        ("StableDiffusionPipeline", 768, 4, "epsilon", ("sd-1", "normal", "epsilon")),
        ("StableDiffusionInpaintPipeline", 768, 9, "epsilon", ("sd-1", "inpaint", "epsilon")),
        ("StableDiffusionPipeline", 1024, 4, "v_prediction", ("sd-2", "normal", "v")),
        ("StableDiffusionPipeline", 1024, 4, None, ("sd-2", "normal", "epsilon")),
        ("StableDiffusionDepth2ImgPipeline", 1024, 5, "epsilon", ("sd-2", "depth", "epsilon")),
        ("StableDiffusionXLPipeline", 2048, 4, "epsilon", ("sdxl", "normal", "epsilon")),
        ("StableDiffusionXLImg2ImgPipeline", 1280, 4, "epsilon", ("sdxl-refiner", "normal", "epsilon")),
    ],
)
def test_diffusers_pipelines(tmp_path, cls, ctx, in_ch, pred, expect):
    folder = make_pipeline(tmp_path / "m", cls, ctx, in_ch, pred)
    r = probe(folder)
    assert (r.kind, r.format, r.dtype) == ("main", "diffusers", "float16")
    assert (r.base, r.variant, r.prediction_type) == expect
    assert r.size == sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_diffusers_components_and_odd_folders(tmp_path):
    def component(name: str, cfg: dict) -> Path:
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps(cfg))
        return d

    r = probe(component("vae", {"_class_name": "AutoencoderKL", "scaling_factor": 0.18215}))
    assert (r.kind, r.base) == ("vae", None)
    assert probe(component("vae-xl", {"_class_name": "AutoencoderKL", "scaling_factor": 0.13025})).base == "sdxl"
    r = probe(component("cn", {"_class_name": "ControlNetModel", "cross_attention_dim": 1024}))
    assert (r.kind, r.base) == ("controlnet", "sd-2")
    r = probe(component("unet", {"_class_name": "UNet2DConditionModel", "cross_attention_dim": 768, "in_channels": 9}))
    assert (r.kind, r.base, r.variant) == ("unknown", "sd-1", "inpaint") and "UNet alone" in r.reason
    assert probe(component("te", {"_class_name": "CLIPTextModel"})).kind == "unknown"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert probe(empty).kind == "unknown" and "model_index.json" in probe(empty).reason
    lora = tmp_path / "lora"
    lora.mkdir()
    write_safetensors(lora / "pytorch_lora_weights.safetensors",
                      {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": f32(4, 768)})
    assert (probe(lora).kind, probe(lora).base, probe(lora).format) == ("lora", "sd-1", "diffusers")
    no_unet = tmp_path / "no-unet"
    no_unet.mkdir()
    (no_unet / "model_index.json").write_text("{}")
    assert probe(no_unet).kind == "unknown"


def test_corrupt_diffusers_config_is_a_probe_error(tmp_path):
    folder = make_pipeline(tmp_path / "m", "StableDiffusionPipeline", 768)
    (folder / "unet" / "config.json").write_text("{not json")
    with pytest.raises(ProbeError, match="config.json"):
        probe(folder)


# --- unreadable input --------------------------------------------------------------------------


def test_broken_safetensors_header_names_the_file(tmp_path):
    bad = tmp_path / "broken.safetensors"
    raw = b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]'  # cut short
    bad.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 8)
    with pytest.raises(ProbeError) as info:
        probe(bad)
    assert "broken.safetensors" in info.value.one_line() and "not valid JSON" in str(info.value)
    assert info.value.hint


def test_pickle_renamed_safetensors_gets_a_clear_error(tmp_path, torch_mod):
    path = write_ckpt(tmp_path / "model.safetensors", main_spec(768))
    with pytest.raises(ProbeError) as info:
        probe(path)
    assert "model.safetensors" in str(info.value)
    assert "header too large" in str(info.value) and "renamed .safetensors" in str(info.value)
    # the real library's error for the same file, for comparison (FACTS.md)
    from safetensors import SafetensorError, safe_open

    with pytest.raises(SafetensorError, match="header too large"):
        safe_open(str(path), "pt")


def test_truncated_safetensors_is_a_probe_error(tmp_path):
    path = write_safetensors(tmp_path / "part.safetensors", main_spec(768))
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 100)
    with pytest.raises(ProbeError, match="truncated"):
        probe(path)


@pytest.mark.parametrize("content, words", [(b"<!DOCTYPE html><html>login</html>", "HTML"),
                                             (b"\x00\x01garbage", "not a model file"),
                                             (b"", "not a model file")])
def test_non_model_files_are_probe_errors(tmp_path, content, words):
    path = tmp_path / "model.ckpt"
    path.write_bytes(content)
    with pytest.raises(ProbeError, match=words):
        probe(path)


def test_html_named_safetensors_and_bad_zips_and_missing_paths(tmp_path):
    page = tmp_path / "m.safetensors"
    page.write_bytes(b"<html><body>please log in</body></html>" * 4)
    with pytest.raises(ProbeError, match="HTML"):
        probe(page)
    z = tmp_path / "notorch.ckpt"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ProbeError, match="data.pkl"):
        probe(z)
    p = tmp_path / "bad.ckpt"
    p.write_bytes(b"\x80\x02}q\x00(X\x01")  # a pickle cut in the middle
    with pytest.raises(ProbeError, match="bad.ckpt"):
        probe(p)
    with pytest.raises(ProbeError, match="no such file"):
        probe(tmp_path / "missing.safetensors")


def test_plain_pickle_of_a_dict_is_read_without_torch(tmp_path):
    # a non-torch pickle (no storages): read, nothing in it is a tensor
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"global_step": 5, "x": [1, 2]}))
    r = probe(path)
    assert r.kind == "unknown" and r.format == "ckpt"


# --- header only ---------------------------------------------------------------------------------


def _bytes_read() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar")


needs_proc_io = pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux /proc/self/io")


@needs_proc_io
def test_probe_of_a_4gb_safetensors_reads_only_its_header(tmp_path):
    # SD1.5-sized: 4.2 GB of tensors that were never written (a sparse file)
    spec = main_spec(768)
    spec.update({f"{U}big.{i}.weight": f32(1280, 1280, 3, 3) for i in range(72)})
    path = write_safetensors(tmp_path / "big.safetensors", spec)
    assert path.stat().st_size > 4_000_000_000
    before = _bytes_read()
    r = probe(path)
    read = _bytes_read() - before
    assert (r.kind, r.base, r.size) == ("main", "sd-1", path.stat().st_size)
    assert read < 200_000, f"probe read {read} bytes of a {r.size}-byte file"


@needs_proc_io
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_probe_of_a_pickle_checkpoint_reads_only_its_pickle(tmp_path, torch_mod, legacy):
    spec = main_spec(1024)
    spec.update({f"{U}big.{i}.weight": f32(1024, 1024) for i in range(12)})  # 48 MB of tensor data
    path = write_ckpt(tmp_path / "big.ckpt", spec, legacy=legacy, global_step=110000)
    before = _bytes_read()
    r = probe(path)
    read = _bytes_read() - before
    assert (r.kind, r.base, r.prediction_type) == ("main", "sd-2", "v")
    assert read < 1_000_000, f"probe read {read} bytes of a {r.size}-byte file"


def test_read_header_reports_every_tensor(tmp_path, torch_mod):
    spec = main_spec(768, dtype="float16")
    for path in (write_safetensors(tmp_path / "a.safetensors", spec), write_ckpt(tmp_path / "a.ckpt", spec)):
        header = read_header(path)
        assert {k: (v.shape, v.dtype) for k, v in header.tensors.items()} == spec


def test_probe_result_is_frozen():
    r = ProbeResult("main", "sd-1", "normal", "epsilon", "safetensors", "float16", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.kind = "vae"  # type: ignore[misc]
    assert r.reason == "" and r.has_ema is False and r.global_step is None


def test_truncated_exactly_at_a_tensor_boundary_is_still_caught(tmp_path):
    spec = {"a": f32(16), "b": f32(16), K_IN: f32(32, 4, 3, 3), K_SD12: f32(32, 768)}
    path = write_safetensors(tmp_path / "cut.safetensors", spec)
    header = read_header(path)  # whole file is fine
    assert len(header.tensors) == 4
    n = struct.unpack("<Q", path.read_bytes()[:8])[0]
    with open(path, "r+b") as f:
        f.truncate(8 + n + 64)  # after "a" (bytes 0-64): "b" starts exactly at the new end
    with pytest.raises(ProbeError, match="truncated"):
        probe(path)


def test_trailing_bytes_after_the_tensors_are_tolerated(tmp_path):
    path = write_safetensors(tmp_path / "pad.safetensors", main_spec(768))
    with open(path, "ab") as f:
        f.write(b"\0" * 10)
    assert probe(path).kind == "main"


def test_metadata_text_never_passes_for_tensor_names(tmp_path):
    decoy = {"note": "model.diffusion_model.input_blocks.0.0.weight", "model_ema.x": "control_model.y"}
    spec = {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": f32(4, 768)}
    r = probe(write_safetensors(tmp_path / "lora.safetensors", spec, decoy))
    assert (r.kind, r.base, r.has_ema) == ("lora", "sd-1", False)


# --- the shared tiny, structurally real models (tests/plugin_models.py) ---------------------------

from tests.modelgen import BASE_OF, KINDS  # noqa: E402

_PIPELINE_PREDICTION = {"sd-2-v": "v"}


def _variant(kind: str) -> str:
    return "inpaint" if kind.endswith("-inpaint") else "normal"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_tiny_diffusers_folders(tiny_models, kind):
    r = probe(tiny_models[kind])
    assert (r.kind, r.format, r.dtype) == ("main", "diffusers", "float32")
    assert (r.base, r.variant) == (BASE_OF[kind], _variant(kind))
    assert r.prediction_type == _PIPELINE_PREDICTION.get(kind, "epsilon")


@pytest.mark.parametrize("fmt", ["safetensors", "ckpt"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_tiny_single_file_checkpoints(tiny_checkpoints, kind, fmt):
    r = probe(tiny_checkpoints[kind, fmt])
    assert (r.kind, r.format) == ("main", fmt)
    assert (r.base, r.variant) == (BASE_OF[kind], _variant(kind))
    if BASE_OF[kind] != "sd-2":
        assert r.prediction_type == "epsilon"
    elif kind == "sd-2-inpaint":
        assert r.prediction_type == "epsilon"
    else:  # the weights cannot tell; the fixture's global_step is 0
        assert r.prediction_type == "undecided"
    assert r.has_ema is False and r.dtype == "float32"


@pytest.mark.parametrize("fmt, step, expected", [("ckpt", 110000, "v"), ("ckpt", 220000, "epsilon"),
                                                 ("safetensors", 110000, "v"), ("safetensors", 220000, "epsilon")])
def test_tiny_sd2_global_step(tiny_checkpoints, fmt, step, expected):
    r = probe(tiny_checkpoints["sd-2", fmt, f"step={step}"])
    assert (r.base, r.global_step, r.prediction_type) == ("sd-2", step, expected)


@pytest.mark.parametrize("fmt", ["safetensors", "ckpt"])
def test_tiny_checkpoint_with_ema(tiny_checkpoints, fmt):
    assert probe(tiny_checkpoints["sd-1", fmt, "ema"]).has_ema is True


def test_tiny_lightning_checkpoint(tiny_checkpoints):
    r = probe(tiny_checkpoints["sd-1", "ckpt", "lightning"])
    assert (r.kind, r.base, r.variant) == ("main", "sd-1", "normal")


def test_tiny_companion_yaml_on_a_real_checkpoint(tiny_checkpoints, tmp_path):
    src = tiny_checkpoints["sd-2-v", "safetensors"]
    local = tmp_path / "model.safetensors"
    os.symlink(src, local)
    (tmp_path / "model.yaml").write_text(V_YAML)
    assert probe(local).prediction_type == "v"


@pytest.mark.parametrize(
    "name, kind, base",
    [
        ("vae.safetensors", "vae", None),
        ("vae.ckpt", "vae", None),
        ("lora-sd-1.safetensors", "lora", "sd-1"),
        ("lora-sd-2.safetensors", "lora", "sd-2"),
        ("lora-sdxl.safetensors", "lora", "sdxl"),
        ("embedding.pt", "embedding", "sd-1"),
        ("embedding.safetensors", "embedding", "sd-1"),
        ("embedding-sd-2.pt", "embedding", "sd-2"),
        ("controlnet-sd-1.safetensors", "controlnet", "sd-1"),
    ],
)
def test_tiny_extras(tiny_extras, name, kind, base):
    r = probe(tiny_extras[name])
    assert (r.kind, r.base, r.variant, r.prediction_type, r.reason) == (kind, base, None, None, "")


def test_tiny_random_tensors_are_unknown(tiny_extras):
    r = probe(tiny_extras["random.safetensors"])
    assert r.kind == "unknown" and r.reason


@needs_proc_io
def test_tiny_ckpt_probe_reads_only_its_pickle(tiny_checkpoints):
    path = tiny_checkpoints["sdxl", "ckpt"]
    before = _bytes_read()
    assert probe(path).base == "sdxl"
    read = _bytes_read() - before
    assert read < path.stat().st_size / 10, f"read {read} of {path.stat().st_size} bytes"


def _forbid(*_args, **_kwargs):
    raise AssertionError("the whole header was parsed")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_main_checkpoints_are_identified_in_place(tiny_checkpoints, monkeypatch, kind):
    """The fast paths really answer (no silent fallback): the whole-header readers are disabled."""
    monkeypatch.setattr(probe_mod, "FULL_PARSE_BELOW", 0)
    monkeypatch.setattr(probe_mod, "PICKLE_IN_PLACE_ABOVE", 0)
    monkeypatch.setattr(probe_mod, "unpickle_bytes", _forbid)
    monkeypatch.setattr(probe_mod, "_read_pickle", _forbid)
    monkeypatch.setattr(probe_mod, "_safetensors_entries", _forbid)
    for fmt in ("safetensors", "ckpt"):
        r = probe(tiny_checkpoints[kind, fmt])
        assert (r.kind, r.base, r.variant, r.dtype) == ("main", BASE_OF[kind], _variant(kind), "float32")
    assert probe(tiny_checkpoints["sd-2", "ckpt", "step=110000"]).prediction_type == "v"
    assert probe(tiny_checkpoints["sd-1", "ckpt", "ema"]).has_ema is True
    assert probe(tiny_checkpoints["sd-1", "safetensors", "ema"]).has_ema is True
    assert probe(tiny_checkpoints["sd-1", "ckpt", "lightning"]).base == "sd-1"
