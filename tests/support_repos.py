"""Stand-ins for the three support repos InvokeAI 2.3.5 reads for checkpoint models (``install.support``).

Files with the real names and tiny contents (JSON configs, a tiny tokenizer, a real one-tensor
``model.safetensors`` and a ``pytorch_model.bin``) - enough for the installer's selection, download,
verification and HF-cache layout.  Loadable ones (written by transformers 4.29) are made by
tests/compat235/make_support.py for the InvokeAI 2.3.5 suite.
"""

from __future__ import annotations

import json
from pathlib import Path

SUPPORT_REPO_IDS = ("openai/clip-vit-large-patch14", "CompVis/stable-diffusion-safety-checker", "stabilityai/stable-diffusion-2")


def _weights(folder: Path, seed: int) -> None:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    t = torch.arange(8, dtype=torch.float32) + seed
    save_file({"w": t}, str(folder / "model.safetensors"))
    torch.save({"w": t}, str(folder / "pytorch_model.bin"))
    (folder / "flax_model.msgpack").write_bytes(b"never fetched")


def _tokenizer(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({"a": 0, "b": 1}))
    (folder / "merges.txt").write_text("#version: 0.2\na b\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    (folder / "special_tokens_map.json").write_text(json.dumps({"bos_token": "<|startoftext|>"}))


def make_support_repos(dest: Path) -> dict[str, Path]:
    """``repo_id -> folder`` of the three stand-ins under ``dest``."""
    out = {}
    clip = dest / "clip"
    _tokenizer(clip)
    (clip / "config.json").write_text(json.dumps({"model_type": "clip"}))
    _weights(clip, 1)
    out["openai/clip-vit-large-patch14"] = clip
    sc = dest / "safety"
    sc.mkdir(parents=True)
    (sc / "config.json").write_text(json.dumps({"model_type": "clip"}))
    (sc / "preprocessor_config.json").write_text(json.dumps({"crop_size": 224}))
    _weights(sc, 2)
    out["CompVis/stable-diffusion-safety-checker"] = sc
    sd2 = dest / "sd2"
    _tokenizer(sd2 / "tokenizer")
    (sd2 / "text_encoder").mkdir(parents=True)
    (sd2 / "text_encoder" / "config.json").write_text(json.dumps({"model_type": "clip_text_model"}))
    _weights(sd2 / "text_encoder", 3)
    (sd2 / "unet").mkdir()
    (sd2 / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not needed by 2.3.5: never fetched")
    (sd2 / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    out["stabilityai/stable-diffusion-2"] = sd2
    return out
