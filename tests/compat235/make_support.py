"""Write TINY but real versions of the three support repos InvokeAI 2.3.5 needs for checkpoint models.

Runs INSIDE the InvokeAI 2.3.5 venv (transformers 4.29.2, diffusers 0.16.1), so every file is
written by the library versions of that era, exactly as ``save_pretrained`` wrote the real repos
(``pytorch_model.bin`` + ``model.safetensors``, ``text_model.`` key prefix, ``torch_dtype`` ...):

    $VENV/bin/python tests/compat235/make_support.py OUT --sd1 TINY_SD1_FOLDER --sd2 TINY_SD2_FOLDER

writes one plain folder per repo (the repo's files, as on the hub), to publish on the stand-in hub
or to lay out in an HF cache::

    OUT/openai/clip-vit-large-patch14/            config.json (CLIPConfig: text + vision), pytorch_model.bin,
                                                  model.safetensors, vocab.json, merges.txt,
                                                  tokenizer_config.json, special_tokens_map.json,
                                                  preprocessor_config.json
    OUT/CompVis/stable-diffusion-safety-checker/  config.json, pytorch_model.bin, model.safetensors,
                                                  preprocessor_config.json
    OUT/stabilityai/stable-diffusion-2/           tokenizer/{vocab.json, merges.txt, tokenizer_config.json,
                                                  special_tokens_map.json}, text_encoder/{config.json,
                                                  pytorch_model.bin, model.safetensors}, model_index.json

Why the shapes matter: 2.3.5 builds the text encoder of a checkpoint model from these configs and
then loads the checkpoint's weights into it strictly (``ckpt_to_diffuser.py`` ~845-860 for SD-1,
~973-1040 for SD-2).  So the CLIP text config must equal the tiny SD-1 model's text encoder, and
the SD-2 text encoder must have ONE MORE layer than the tiny SD-2 model: a single-file SD-2 model
carries one more OpenCLIP layer than it uses, and 2.3.5 drops only ``resblocks.23`` (the real
24th layer), so the tiny file's extra layer is loaded too.  The vocabulary is the real CLIP BPE
vocabulary (from the package's ``convert_data/clip_tokenizer``), so tokenizers load and work.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
_PKG = HERE.parent.parent / "invokeai_model_install"
#: the package's converter data (``convert_data/`` before the restructuring, ``convert/data/`` after)
CONVERT_DATA = next((p for p in (_PKG / "convert" / "data", _PKG / "convert_data") if (p / "clip_tokenizer").is_dir()),
                    _PKG / "convert_data")

#: The real preprocessor_config.json of openai/clip-vit-large-patch14 and of the safety checker.
PREPROCESSOR = {
    "crop_size": 224,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "size": 224,
}

#: The repo ids and the files 2.3.5 reads from each (loading offline reads exactly these).
REPOS = {
    "openai/clip-vit-large-patch14": ["config.json", "pytorch_model.bin", "model.safetensors", "vocab.json",
                                      "merges.txt", "tokenizer_config.json", "special_tokens_map.json",
                                      "preprocessor_config.json"],
    "CompVis/stable-diffusion-safety-checker": ["config.json", "pytorch_model.bin", "model.safetensors",
                                                "preprocessor_config.json"],
    "stabilityai/stable-diffusion-2": ["model_index.json", "tokenizer/vocab.json", "tokenizer/merges.txt",
                                       "tokenizer/tokenizer_config.json", "tokenizer/special_tokens_map.json",
                                       "text_encoder/config.json", "text_encoder/pytorch_model.bin",
                                       "text_encoder/model.safetensors"],
}


def _text_config(folder: Path, extra_layers: int = 0) -> dict:
    cfg = json.loads((folder / "text_encoder" / "config.json").read_text())
    keep = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "max_position_embeddings", "hidden_act", "layer_norm_eps", "bos_token_id", "eos_token_id",
            "pad_token_id", "projection_dim")
    out = {k: cfg[k] for k in keep if k in cfg}
    out["num_hidden_layers"] += extra_layers
    return out


def _tiny_vision() -> dict:
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=1,
                image_size=224, patch_size=32, projection_dim=32)


def _tokenizer(dest: Path, skeleton: str) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(CONVERT_DATA / "clip_tokenizer" / name, dest / name)
    for p in (CONVERT_DATA / skeleton / "tokenizer").glob("*.json"):
        shutil.copyfile(p, dest / p.name)


def _save(model, dest: Path) -> None:
    model.save_pretrained(str(dest))  # pytorch_model.bin (4.29 default), as the 2022/23 repos have
    model.save_pretrained(str(dest), safe_serialization=True)  # and model.safetensors beside it


def build(out: Path, sd1: Path, sd2: Path, seed: int = 0) -> dict[str, Path]:
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    made: dict[str, Path] = {}

    # openai/clip-vit-large-patch14: a CLIPModel whose text tower is the tiny SD-1 text encoder
    d = out / "openai" / "clip-vit-large-patch14"
    d.mkdir(parents=True, exist_ok=True)
    text = _text_config(sd1)
    cfg = CLIPConfig(text_config=text, vision_config=_tiny_vision(), projection_dim=text.get("projection_dim", 32))
    _save(CLIPModel(cfg), d)
    _tokenizer(d, "sd-1")
    (d / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2) + "\n")
    made["openai/clip-vit-large-patch14"] = d

    # CompVis/stable-diffusion-safety-checker: StableDiffusionSafetyChecker (a CLIPConfig) + preprocessor
    d = out / "CompVis" / "stable-diffusion-safety-checker"
    d.mkdir(parents=True, exist_ok=True)
    cfg = CLIPConfig(text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=1),
                     vision_config=_tiny_vision(), projection_dim=32)
    _save(StableDiffusionSafetyChecker(cfg), d)
    (d / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2) + "\n")
    made["CompVis/stable-diffusion-safety-checker"] = d

    # stabilityai/stable-diffusion-2: tokenizer/ and text_encoder/ (one layer more than the tiny SD-2 model)
    d = out / "stabilityai" / "stable-diffusion-2"
    (d / "text_encoder").mkdir(parents=True, exist_ok=True)
    _save(CLIPTextModel(CLIPTextConfig(**_text_config(sd2, extra_layers=1))), d / "text_encoder")
    _tokenizer(d / "tokenizer", "sd-2")
    index = json.loads((CONVERT_DATA / "sd-2-v" / "model_index.json").read_text())
    (d / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    made["stabilityai/stable-diffusion-2"] = d

    for repo, files in REPOS.items():
        missing = [f for f in files if not (made[repo] / f).is_file()]
        assert not missing, f"{repo}: {missing} not written"
    return made


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--sd1", type=Path, required=True, help="tiny SD-1 diffusers folder (its text_encoder/config.json)")
    ap.add_argument("--sd2", type=Path, required=True, help="tiny SD-2 diffusers folder (its text_encoder/config.json)")
    opts = ap.parse_args()
    made = build(opts.out, opts.sd1, opts.sd2)
    print(json.dumps({k: str(v) for k, v in made.items()}))


if __name__ == "__main__":
    main()
