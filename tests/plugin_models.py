"""Fixtures: tiny, structurally real SD models, cached per session (built by tests/modelgen.py).

All three fixtures are session-scoped and LAZY: nothing is built until a test asks for a
key, and each key is built once per session (a test needing only sd-1 never builds SDXL).
Treat what they return as read-only (copy a file or folder before changing it).

``tiny_models`` -- ``tiny_models[kind] -> Path`` of a diffusers pipeline folder
    (``model_index.json``, ``unet``, ``vae``, ``text_encoder[_2]``, ``tokenizer[_2]``,
    ``scheduler``; fp32 ``.safetensors``).  kinds (``tests.modelgen.KINDS``): ``sd-1``,
    ``sd-1-inpaint``, ``sd-2`` (epsilon, DDIM), ``sd-2-v`` (``prediction_type=v_prediction``),
    ``sd-2-inpaint``, ``sdxl``, ``sdxl-inpaint``, ``sdxl-refiner``.  40-95 MB each, ~0.3-1 s to build.
    ``tiny_models.fp16(kind)`` -> the same weights with ``*.fp16.safetensors`` variant files too
    (for hub ``variant="fp16"`` tests).

``tiny_checkpoints`` -- ``tiny_checkpoints[kind, fmt] -> Path`` of a single-file checkpoint in
    the original layout (LDM for SD 1/2, SGM for SDXL) of ``tiny_models[kind]``; ``fmt`` is
    ``"safetensors"`` or ``"ckpt"``.  Extras as a third key element, any of
    ``"ema"`` (model_ema.* weights = the folder's, plain UNet weights shifted), ``"lightning"``
    (ckpt only: pickled pytorch_lightning ModelCheckpoint reference like sd-v1-4.ckpt),
    ``"step=N"`` (global_step; safetensors: in the header metadata), e.g.
    ``tiny_checkpoints["sd-2", "ckpt", "step=110000"]``.  The file is named ``<kind>.<ext>``
    inside its own folder (so no companion ``.yaml``/``.vae.*`` is next to it).
    sd-2 files carry ``global_step`` 0 unless asked: their prediction type is undecided.

``tiny_extras`` -- ``tiny_extras[name] -> Path`` of other kinds of file:
    ``vae.safetensors`` / ``vae.ckpt`` (standalone sd-1-shaped VAE, original layout),
    ``lora-sd-1.safetensors`` / ``lora-sd-2.safetensors`` / ``lora-sdxl.safetensors`` (kohya keys),
    ``embedding.pt`` (string_to_param), ``embedding.safetensors`` (emb_params),
    ``embedding-sd-2.pt`` (1024 wide), ``controlnet-sd-1.safetensors`` (control_model.*),
    ``random.safetensors`` (random tensors: the probe must answer "unknown").

Expected answers for the probe: ``tests.modelgen.BASE_OF[kind]``; variant ``inpaint`` for the
``*-inpaint`` kinds, else ``normal``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import pytest


class _LazyCache:
    """A dict-like cache whose values are built on first access by ``build(key, folder)``."""

    def __init__(self, root: Path, build: Callable[[object, Path], Path]) -> None:
        self._root = root
        self._build = build
        self._items: dict = {}
        self._lock = threading.Lock()

    def __getitem__(self, key) -> Path:
        with self._lock:
            if key not in self._items:
                folder = self._root / _slug(key)
                folder.mkdir(parents=True, exist_ok=False)
                self._items[key] = self._build(key, folder)
            return self._items[key]

    def __contains__(self, key) -> bool:
        return key in self._items


def _slug(key) -> str:
    parts = key if isinstance(key, tuple) else (key,)
    return "_".join(str(p).replace("/", "-").replace("=", "-") for p in parts)


class TinyModels(_LazyCache):
    """``tiny_models[kind]`` and ``tiny_models.fp16(kind)`` (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        from tests import modelgen

        def build(key, folder: Path) -> Path:
            kind, fp16 = key if isinstance(key, tuple) else (key, False)
            return modelgen.make_diffusers_model(kind, folder / kind, variant_fp16=fp16)

        super().__init__(root, build)

    def fp16(self, kind: str) -> Path:
        """The tiny ``kind`` folder with ``*.fp16.safetensors`` variant files beside the fp32 ones."""
        return self[(kind, True)]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> TinyModels:
    """Lazy ``kind -> diffusers folder`` of tiny random SD models (see the module docstring)."""
    return TinyModels(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory, tiny_models) -> _LazyCache:
    """Lazy ``(kind, fmt[, extras...]) -> single-file checkpoint`` (see the module docstring)."""
    from tests import modelgen

    def build(key, folder: Path) -> Path:
        kind, fmt, *extras = key
        step = None
        for extra in extras:
            if extra.startswith("step="):
                step = int(extra.split("=", 1)[1])
            elif extra not in ("ema", "lightning"):
                raise KeyError(f"unknown checkpoint extra {extra!r}")
        ext = {"safetensors": "safetensors", "ckpt": "ckpt"}[fmt]
        return modelgen.write_single_file(
            tiny_models[kind], folder / f"{kind}.{ext}", fmt=fmt, global_step=step,
            with_ema="ema" in extras, lightning_callbacks="lightning" in extras,
        )

    return _LazyCache(tmp_path_factory.mktemp("tiny-checkpoints"), build)


@pytest.fixture(scope="session")
def tiny_extras(tmp_path_factory) -> _LazyCache:
    """Lazy ``name -> file`` of VAE, LoRA, embedding, ControlNet and random-tensor files."""
    from tests import modelgen

    builders: dict[str, Callable[[Path], Path]] = {
        "vae.safetensors": lambda p: modelgen.make_vae_file(p, "safetensors"),
        "vae.ckpt": lambda p: modelgen.make_vae_file(p, "ckpt"),
        "lora-sd-1.safetensors": lambda p: modelgen.make_lora_file(p, "sd-1"),
        "lora-sd-2.safetensors": lambda p: modelgen.make_lora_file(p, "sd-2"),
        "lora-sdxl.safetensors": lambda p: modelgen.make_lora_file(p, "sdxl"),
        "embedding.pt": lambda p: modelgen.make_embedding_file(p, "string_to_param"),
        "embedding.safetensors": lambda p: modelgen.make_embedding_file(p, "emb_params"),
        "embedding-sd-2.pt": lambda p: modelgen.make_embedding_file(p, "string_to_param", width=1024),
        "controlnet-sd-1.safetensors": lambda p: modelgen.make_controlnet_file(p, base="sd-1"),
        "random.safetensors": lambda p: modelgen.make_random_tensors_file(p),
    }

    def build(name, folder: Path) -> Path:
        if name not in builders:
            raise KeyError(f"unknown extra {name!r}; one of {sorted(builders)}")
        return builders[name](folder / name)

    return _LazyCache(tmp_path_factory.mktemp("tiny-extras"), build)
