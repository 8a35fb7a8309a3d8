"""The plan checked against the diffusers models built on torch's ``meta`` device (no memory), beside the writing."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

from invokeai_model_install.errors import ConversionError


def check_shapes(component: str, produced: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]],
                  src: Path) -> None:
    missing = sorted(set(expected) - set(produced))
    extra = sorted(set(produced) - set(expected))
    wrong = sorted(k for k in set(expected) & set(produced) if tuple(expected[k]) != tuple(produced[k]))
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} of the wrong shape (e.g. {k}: {produced[k]} vs {expected[k]})")
        raise ConversionError(
            f"{src.name}: its {component} does not have the layout of a supported model: " + "; ".join(parts),
            hint="this checkpoint is not a standard SD 1.x/2.x/SDXL model; install it as a single file instead",
        )


class ShapeChecks(threading.Thread):
    """The meta-device shape checks, run beside the writing.

    Importing diffusers' model classes costs ~1.5-3 s here; the writer spends its time in
    syscalls and torch casts (GIL released), so the two overlap.  The result is awaited
    before the output is moved into place: a failed check still leaves nothing behind.
    """

    def __init__(self, checks: list[tuple[str, dict, str, dict, Path]]) -> None:
        super().__init__(name="convert-shape-checks", daemon=True)
        self._checks = checks
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for component, produced, cls_name, config, path in self._checks:
                check_shapes(component, produced, meta_shapes(cls_name, config), path)
        except BaseException as exc:  # re-raised in the converting thread
            self.error = exc

    def result(self) -> None:
        self.join()
        if self.error is not None:
            raise self.error


def meta_shapes(cls_name: str, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """State-dict shapes of a diffusers model built on the meta device (no memory, ~0.1-0.4 s)."""
    import torch
    import diffusers

    cls = getattr(diffusers, cls_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.device("meta"):
            model = cls.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if cls_name == "AutoencoderKL":
        # we write the mid-block attention with the names diffusers 0.16.1 loads (current diffusers reads both)
        from invokeai_model_install.convert.ldm_keys import legacy_vae_attention_name

        shapes = {legacy_vae_attention_name(k): v for k, v in shapes.items()}
    return shapes
