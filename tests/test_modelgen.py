"""The test fixtures themselves: tiny models are real pipelines, and our single-file writer
agrees with diffusers' own LDM -> diffusers conversion (so round trips through it mean something)."""

from __future__ import annotations

import json
import zipfile

import pytest

from tests import modelgen

PIPELINES = {
    "sd-1": "StableDiffusionPipeline",
    "sd-1-inpaint": "StableDiffusionInpaintPipeline",
    "sd-2": "StableDiffusionPipeline",
    "sd-2-v": "StableDiffusionPipeline",
    "sdxl": "StableDiffusionXLPipeline",
    "sdxl-inpaint": "StableDiffusionXLInpaintPipeline",
    "sdxl-refiner": "StableDiffusionXLImg2ImgPipeline",
}


def _components(pipe) -> dict:
    return {name: getattr(pipe, name) for name in ("unet", "vae", "text_encoder", "text_encoder_2")
            if getattr(pipe, name, None) is not None}


@pytest.mark.parametrize("kind", ["sd-1", "sd-1-inpaint", "sd-2", "sdxl", "sdxl-inpaint", "sdxl-refiner"])
def test_writer_matches_diffusers_from_single_file(kind, tiny_models, tiny_checkpoints, monkeypatch):
    """diffusers' own converter reads our single file back into exactly the folder's weights."""
    import diffusers
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tiny_models[kind]
    single = tiny_checkpoints[kind, "safetensors"]
    cls = getattr(diffusers, PIPELINES[kind])
    converted = cls.from_single_file(str(single), config=str(folder), local_files_only=True)
    original = diffusers.DiffusionPipeline.from_pretrained(str(folder), local_files_only=True)
    a, b = _components(converted), _components(original)
    assert a.keys() == b.keys()
    compared = 0
    for name in b:
        sa, sb = a[name].state_dict(), b[name].state_dict()
        assert sa.keys() == sb.keys(), name
        for key, tensor in sb.items():
            assert torch.equal(sa[key], tensor), f"{name}.{key}"
            compared += 1
    assert compared > 500


def test_tiny_model_keeps_real_structure(tiny_models):
    unet = json.loads((tiny_models["sdxl"] / "unet" / "config.json").read_text())
    assert unet["cross_attention_dim"] == 2048 and unet["layers_per_block"] == 2
    te2 = json.loads((tiny_models["sdxl"] / "text_encoder_2" / "config.json").read_text())
    te1 = json.loads((tiny_models["sdxl"] / "text_encoder" / "config.json").read_text())
    assert te2["num_hidden_layers"] >= 10 and te2["hidden_size"] != te1["hidden_size"]
    inpaint = json.loads((tiny_models["sd-1-inpaint"] / "unet" / "config.json").read_text())
    assert inpaint["in_channels"] == 9
    sched = json.loads((tiny_models["sd-2-v"] / "scheduler" / "scheduler_config.json").read_text())
    assert sched["prediction_type"] == "v_prediction"


def test_tokenizer_is_the_real_clip_tokenizer(tiny_models):
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(tiny_models["sd-1"] / "tokenizer"))
    assert len(tok) == 49408 and tok.model_max_length == 77
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_fp16_variant_loads(tiny_models, monkeypatch):
    import diffusers
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tiny_models.fp16("sd-1")
    assert (folder / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    assert (folder / "text_encoder" / "model.fp16.safetensors").is_file()
    pipe = diffusers.DiffusionPipeline.from_pretrained(str(folder), variant="fp16", dtype=torch.float16,
                                                       local_files_only=True)
    assert pipe.unet.dtype == torch.float16


def test_ckpt_extras(tiny_checkpoints):
    import torch

    path = tiny_checkpoints["sd-1", "ckpt", "ema", "lightning", "step=470000"]
    with zipfile.ZipFile(path) as zf:
        pkl = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        assert b"pytorch_lightning.callbacks.model_checkpoint" in zf.read(pkl)
    with pytest.raises(Exception):  # the lightning global: plain weights_only refuses it
        torch.load(str(path), weights_only=True)
    import sys

    assert "pytorch_lightning" not in sys.modules  # the stub was only there while pickling
    path2 = tiny_checkpoints["sd-1", "ckpt", "ema"]
    doc = torch.load(str(path2), weights_only=True, mmap=True)
    sd = doc["state_dict"]
    ema = [k for k in sd if k.startswith("model_ema.") and k not in ("model_ema.decay", "model_ema.num_updates")]
    plain = [k for k in sd if k.startswith("model.diffusion_model.")]
    assert len(ema) == len(plain) > 100
    key = "model.diffusion_model.input_blocks.0.0.weight"
    flat = "model_ema." + "".join(key.split(".")[1:])
    assert torch.equal(sd[key], sd[flat] + 1.0)


def test_extras_have_expected_keys(tiny_extras):
    from safetensors import safe_open

    with safe_open(str(tiny_extras["lora-sd-1.safetensors"]), "pt") as f:
        keys = list(f.keys())
    assert any(k.startswith("lora_unet_") and k.endswith(".lora_down.weight") for k in keys)
    assert any(k.startswith("lora_te_") for k in keys) and any(k.endswith(".alpha") for k in keys)
    with safe_open(str(tiny_extras["controlnet-sd-1.safetensors"]), "pt") as f:
        k = "control_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"
        assert f.get_slice(k).get_shape()[-1] == 768
    with safe_open(str(tiny_extras["vae.safetensors"]), "pt") as f:
        assert "encoder.conv_in.weight" in f.keys() and "decoder.conv_in.weight" in f.keys()
    assert modelgen.BASE_OF["sdxl-refiner"] == "sdxl-refiner"
