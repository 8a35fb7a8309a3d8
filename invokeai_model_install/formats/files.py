"""What a file or folder is by its name and layout: model-file suffixes, diffusers folders, and the walk
that finds models under a folder (used by imports of a folder, the scan, and the web page's folder search)."""

from __future__ import annotations

import os
from pathlib import Path

#: File suffixes that hold model weights (``.sft`` is safetensors' short name).
MODEL_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin")
#: Suffixes of safetensors files.
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
#: Suffixes of files that may be pickles (and so may hold code).
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")


def is_model_file_name(name: str) -> bool:
    """A name with one of :data:`MODEL_SUFFIXES` (any case)."""
    return name.lower().endswith(MODEL_SUFFIXES)


def is_component_dir(path: Path) -> bool:
    """One diffusers component (e.g. a VAE folder): ``config.json`` next to weights."""
    if not (path / "config.json").is_file():
        return False
    return any(p.suffix.lower() in (".safetensors", ".bin") for p in path.iterdir() if p.is_file())


def is_diffusers_dir(path: Path) -> bool:
    """A diffusers pipeline (``model_index.json``) or one component: one model, never descended into."""
    return (path / "model_index.json").is_file() or is_component_dir(path)


def _model_stem(name: str) -> str:
    """``name`` without its model suffix, lower case."""
    lower = name.lower()
    for suffix in MODEL_SUFFIXES:
        if lower.endswith(suffix):
            return lower[: -len(suffix)]
    return lower


def is_companion_vae(name: str, names: set[str]) -> bool:
    """``X.vae.pt`` (any model suffix) next to a model ``X.ckpt``: it belongs to that checkpoint (InvokeAI 2.3)."""
    stem = _model_stem(name)
    if not stem.endswith(".vae"):
        return False
    owner = stem[: -len(".vae")]
    return any(other != name and is_model_file_name(other) and _model_stem(other) == owner for other in names)


def model_paths(directory: Path) -> list[Path]:
    """Model files and diffusers folders under ``directory``, in walk order (folders and files sorted).

    Diffusers folders are not descended into; hidden files and folders (like ``.partial``) are skipped;
    companion VAEs (``X.vae.pt`` next to ``X.ckpt``) are not models of their own.
    """
    found: list[Path] = []
    for current, dirs, files in os.walk(directory):
        cur = Path(current)
        if is_diffusers_dir(cur):
            found.append(cur)
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        names = set(files)
        for name in sorted(files):
            if name.startswith(".") or not is_model_file_name(name) or is_companion_vae(name, names):
                continue
            found.append(cur / name)
    return found
