#!/usr/bin/env python3
"""Generate ``invokeai_model_install/convert/data/``: what offline conversion needs.

Run from the checkout root (needs network access to PyPI once, for the CLIP vocabulary)::

    python tools/build_convert_data.py [--open-clip-wheel PATH]

It writes, reproducibly (sorted keys, fixed content):

* ``convert/data/clip_tokenizer/vocab.json`` and ``merges.txt``: the CLIP BPE tokenizer
  (49408 tokens), rebuilt from the real vocabulary that ships inside the PyPI wheel
  ``open-clip-torch`` (``open_clip/bpe_simple_vocab_16e6.txt.gz``), exactly the way
  open_clip's ``SimpleTokenizer`` builds its table.  One copy only: every skeleton's
  ``tokenizer*/`` folder holds just its small ``tokenizer_config.json`` and
  ``special_tokens_map.json``, and the converter copies the shared vocab next to them.
* one config-only skeleton per model type (``sd-1``, ``sd-1-inpaint``, ``sd-2``,
  ``sd-2-v``, ``sd-2-inpaint``, ``sdxl``, ``sdxl-refiner``): ``model_index.json``,
  ``unet/config.json``, ``vae/config.json``, ``text_encoder*/config.json``,
  ``scheduler/scheduler_config.json``, ``tokenizer*/``.  The values are those of the
  official diffusers repositories (stable-diffusion-v1-5, stable-diffusion-inpainting,
  stable-diffusion-2-1-base, stable-diffusion-2-1, stable-diffusion-2-inpainting,
  stable-diffusion-xl-base-1.0, stable-diffusion-xl-refiner-1.0); the safety checker
  and feature extractor are left out (model_index lists them as ``[null, null]``).

The skeleton values that depend on the weights (channels, layer counts, cross-attention
width, ...) are re-derived from the checkpoint's shapes at conversion time; the skeleton
supplies what weights cannot tell (sample sizes, scheduler, scaling factor, activations).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "invokeai_model_install" / "convert" / "data"
DIFFUSERS_VERSION = "0.42.1"
#: The wheel the vocabulary was taken from (sha256 c549ad5e...0043ce); the BPE table itself
#: has not changed across open_clip releases.
OPEN_CLIP_VERSION = "3.3.0"
TRANSFORMERS_VERSION = "5.23.0"

# ----------------------------------------------------------------------------------- tokenizer


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table (same as open_clip's)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def clip_vocab_from_bpe(bpe_gz: bytes) -> tuple[dict[str, int], list[str]]:
    """Build (vocab, merges) as open_clip's ``SimpleTokenizer.__init__`` does."""
    lines = gzip.decompress(bpe_gz).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab.extend("".join(m) for m in merges)
    vocab.extend(["<|startoftext|>", "<|endoftext|>"])
    return {tok: i for i, tok in enumerate(vocab)}, [" ".join(m) for m in merges]


def read_open_clip_bpe(wheel: Path | None) -> bytes:
    """The gzipped BPE table from the open-clip-torch wheel (downloaded when not given)."""
    if wheel is None:
        tmp = Path(tempfile.mkdtemp(prefix="open-clip-wheel-"))
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", f"open-clip-torch=={OPEN_CLIP_VERSION}",
             "-d", str(tmp)],
            check=True,
        )
        wheel = next(tmp.glob("open_clip_torch-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        return zf.read("open_clip/bpe_simple_vocab_16e6.txt.gz")


def tokenizer_config(pad_token: str) -> dict:
    """tokenizer_config.json of the CLIP tokenizers in the official SD repos."""
    return {
        "add_prefix_space": False,
        "bos_token": "<|startoftext|>",
        "clean_up_tokenization_spaces": True,
        "do_lower_case": True,
        "eos_token": "<|endoftext|>",
        "errors": "replace",
        "model_max_length": 77,
        "pad_token": pad_token,
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": "<|endoftext|>",
    }


def special_tokens_map(pad_token: str) -> dict:
    return {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": pad_token,
        "unk_token": "<|endoftext|>",
    }


# ----------------------------------------------------------------------------------- configs

SCALED_LINEAR = {"beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000}


def pndm_scheduler() -> dict:
    return {"_class_name": "PNDMScheduler", **SCALED_LINEAR, "clip_sample": False, "set_alpha_to_one": False,
            "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None, "prediction_type": "epsilon",
            "timestep_spacing": "leading"}


def ddim_scheduler(prediction_type: str) -> dict:
    return {"_class_name": "DDIMScheduler", **SCALED_LINEAR, "clip_sample": False, "set_alpha_to_one": False,
            "steps_offset": 1, "trained_betas": None, "prediction_type": prediction_type,
            "timestep_spacing": "leading"}


def euler_scheduler() -> dict:
    return {"_class_name": "EulerDiscreteScheduler", **SCALED_LINEAR, "interpolation_type": "linear",
            "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": False, "skip_prk_steps": True,
            "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": None, "use_karras_sigmas": False}


def unet_config(**over) -> dict:
    base = {
        "_class_name": "UNet2DConditionModel",
        "act_fn": "silu",
        "attention_head_dim": 8,
        "block_out_channels": [320, 640, 1280, 1280],
        "center_input_sample": False,
        "cross_attention_dim": 768,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "downsample_padding": 1,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "in_channels": 4,
        "layers_per_block": 2,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-05,
        "norm_num_groups": 32,
        "out_channels": 4,
        "sample_size": 64,
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    }
    base.update(over)
    return base


def sd2_unet(**over) -> dict:
    cfg = unet_config(attention_head_dim=[5, 10, 20, 20], cross_attention_dim=1024, use_linear_projection=True,
                      dual_cross_attention=False, num_class_embeds=None, only_cross_attention=False,
                      upcast_attention=False)
    cfg.update(over)
    return cfg


def sdxl_unet() -> dict:
    return unet_config(
        addition_embed_type="text_time", addition_embed_type_num_heads=64, addition_time_embed_dim=256,
        attention_head_dim=[5, 10, 20], block_out_channels=[320, 640, 1280], cross_attention_dim=2048,
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        projection_class_embeddings_input_dim=2816, sample_size=128, transformer_layers_per_block=[1, 2, 10],
        up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], use_linear_projection=True,
        upcast_attention=None,
    )


def sdxl_refiner_unet() -> dict:
    return unet_config(
        addition_embed_type="text_time", addition_embed_type_num_heads=64, addition_time_embed_dim=256,
        attention_head_dim=[6, 12, 24, 24], block_out_channels=[384, 768, 1536, 1536], cross_attention_dim=1280,
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        projection_class_embeddings_input_dim=2560, sample_size=128, transformer_layers_per_block=4,
        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        use_linear_projection=True, upcast_attention=None,
    )


def vae_config(sample_size: int, scaling_factor: float = 0.18215, **over) -> dict:
    base = {
        "_class_name": "AutoencoderKL",
        "act_fn": "silu",
        "block_out_channels": [128, 256, 512, 512],
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "in_channels": 3,
        "latent_channels": 4,
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "out_channels": 3,
        "sample_size": sample_size,
        "scaling_factor": scaling_factor,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
    }
    base.update(over)
    return base


def clip_l_config() -> dict:
    """openai/clip-vit-large-patch14 text tower (SD1, SDXL's first encoder)."""
    return {
        "architectures": ["CLIPTextModel"],
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "dropout": 0.0,
        "eos_token_id": 2,
        "hidden_act": "quick_gelu",
        "hidden_size": 768,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "intermediate_size": 3072,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": 77,
        "model_type": "clip_text_model",
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "pad_token_id": 1,
        "projection_dim": 768,
        "torch_dtype": "float32",
        "vocab_size": 49408,
    }


def open_clip_h_config() -> dict:
    """OpenCLIP ViT-H/14 text tower as SD2 uses it (penultimate layer: 23 of 24 layers)."""
    cfg = clip_l_config()
    cfg.update(hidden_act="gelu", hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
               num_hidden_layers=23, projection_dim=512)
    return cfg


def open_clip_bigg_config() -> dict:
    """OpenCLIP ViT-bigG/14 text tower with projection (SDXL's second encoder)."""
    cfg = clip_l_config()
    cfg.update(architectures=["CLIPTextModelWithProjection"], hidden_act="gelu", hidden_size=1280,
               intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32, projection_dim=1280)
    return cfg


def model_index(pipeline: str, components: dict[str, list | None], **extra) -> dict:
    index = {"_class_name": pipeline, "_diffusers_version": DIFFUSERS_VERSION}
    index.update({k: (v if v is not None else [None, None]) for k, v in components.items()})
    index.update(extra)
    return index


SD_COMPONENTS = {
    "feature_extractor": None,
    "safety_checker": None,
    "scheduler": None,  # filled per skeleton
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


def skeletons() -> dict[str, dict]:
    """Every skeleton: {relative path: JSON document} (tokenizers handled separately)."""
    out: dict[str, dict] = {}

    def sd(name, pipeline, unet, vae, scheduler, text_encoder, pad):
        comps = dict(SD_COMPONENTS, scheduler=["diffusers", scheduler["_class_name"]])
        out[name] = {
            "model_index.json": model_index(pipeline, comps, requires_safety_checker=False),
            "unet/config.json": unet,
            "vae/config.json": vae,
            "scheduler/scheduler_config.json": scheduler,
            "text_encoder/config.json": text_encoder,
            "tokenizer/tokenizer_config.json": tokenizer_config(pad),
            "tokenizer/special_tokens_map.json": special_tokens_map(pad),
        }

    sd("sd-1", "StableDiffusionPipeline", unet_config(), vae_config(512), pndm_scheduler(), clip_l_config(),
       "<|endoftext|>")
    sd("sd-1-inpaint", "StableDiffusionInpaintPipeline", unet_config(in_channels=9), vae_config(512),
       ddim_scheduler("epsilon"), clip_l_config(), "<|endoftext|>")
    sd("sd-2", "StableDiffusionPipeline", sd2_unet(), vae_config(512), ddim_scheduler("epsilon"),
       open_clip_h_config(), "!")
    sd("sd-2-v", "StableDiffusionPipeline", sd2_unet(sample_size=96, upcast_attention=True), vae_config(768),
       ddim_scheduler("v_prediction"), open_clip_h_config(), "!")
    sd("sd-2-inpaint", "StableDiffusionInpaintPipeline", sd2_unet(in_channels=9), vae_config(512),
       ddim_scheduler("epsilon"), open_clip_h_config(), "!")

    xl_vae = vae_config(1024, scaling_factor=0.13025, force_upcast=True)
    out["sdxl"] = {
        "model_index.json": model_index(
            "StableDiffusionXLPipeline",
            {"feature_extractor": None, "image_encoder": None, "scheduler": ["diffusers", "EulerDiscreteScheduler"],
             "text_encoder": ["transformers", "CLIPTextModel"],
             "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]},
            force_zeros_for_empty_prompt=True,
        ),
        "unet/config.json": sdxl_unet(),
        "vae/config.json": xl_vae,
        "scheduler/scheduler_config.json": euler_scheduler(),
        "text_encoder/config.json": clip_l_config(),
        "text_encoder_2/config.json": open_clip_bigg_config(),
        "tokenizer/tokenizer_config.json": tokenizer_config("<|endoftext|>"),
        "tokenizer/special_tokens_map.json": special_tokens_map("<|endoftext|>"),
        "tokenizer_2/tokenizer_config.json": tokenizer_config("!"),
        "tokenizer_2/special_tokens_map.json": special_tokens_map("!"),
    }
    out["sdxl-refiner"] = {
        "model_index.json": model_index(
            "StableDiffusionXLImg2ImgPipeline",
            {"feature_extractor": None, "image_encoder": None, "scheduler": ["diffusers", "EulerDiscreteScheduler"],
             "text_encoder": None, "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
             "tokenizer": None, "tokenizer_2": ["transformers", "CLIPTokenizer"],
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]},
            force_zeros_for_empty_prompt=False, requires_aesthetics_score=True,
        ),
        "unet/config.json": sdxl_refiner_unet(),
        "vae/config.json": xl_vae,
        "scheduler/scheduler_config.json": euler_scheduler(),
        "text_encoder_2/config.json": open_clip_bigg_config(),
        "tokenizer_2/tokenizer_config.json": tokenizer_config("!"),
        "tokenizer_2/special_tokens_map.json": special_tokens_map("!"),
    }
    for docs in out.values():
        for rel, doc in docs.items():
            if rel.startswith(("unet/", "vae/", "scheduler/")):
                doc["_diffusers_version"] = DIFFUSERS_VERSION
            elif rel.startswith("text_encoder"):
                doc["transformers_version"] = TRANSFORMERS_VERSION
    return out


def write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--open-clip-wheel", type=Path, help="a downloaded open_clip_torch-*.whl (else pip downloads it)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    out: Path = args.out
    for sub in out.glob("*"):
        if sub.is_dir():
            shutil.rmtree(sub)
    vocab, merges = clip_vocab_from_bpe(read_open_clip_bpe(args.open_clip_wheel))
    assert len(vocab) == 49408, len(vocab)
    tok = out / "clip_tokenizer"
    tok.mkdir(parents=True, exist_ok=True)
    # Same serialisation as transformers' CLIPTokenizer.save_pretrained (compact vocab, "#version" header).
    (tok / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    with io.open(tok / "merges.txt", "w", encoding="utf-8", newline="\n") as fh:
        fh.write("#version: 0.2\n")
        fh.write("\n".join(merges) + "\n")
    for name, docs in skeletons().items():
        for rel, doc in docs.items():
            write_json(out / name / rel, doc)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
