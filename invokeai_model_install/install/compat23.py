"""What InvokeAI 2.3.5 can run, and the weight names it needs (see docs/compatibility.md).

* :func:`refusal` - one line for a model 2.3.5 cannot run (SDXL), or None.
* :func:`fix_diffusers_folder` (from :mod:`convert.invokeai23`) - in a diffusers folder (a main model or a VAE) about to be placed in a
  root: rename the VAE mid-block attention weights to ``query/key/value/proj_attn`` (diffusers 0.16.1,
  2.3.5's pin, refuses the newer ``to_q/to_k/to_v/to_out.0``; current diffusers reads both) and give a
  text encoder saved without the ``text_model.`` prefix (transformers 5) that prefix (transformers 4.29
  would otherwise start it from random weights without a word).  Files that already have the old names
  are not touched.
"""

from __future__ import annotations

from invokeai_model_install.convert.invokeai23 import fix_diffusers_folder, fix_embedding, needs_fix  # noqa: F401
from invokeai_model_install.root.layout import BASES_NOT_IN_INVOKEAI23

#: base -> what to call it in messages
_BASE_WORDS = {"sdxl": "SDXL", "sdxl-refiner": "SDXL refiner"}

#: the plan flag that keeps such a model's files anyway
INSIST_FLAG = "--download-unsupported"


def refusal(kind: str, base: str | None) -> str | None:
    """Why InvokeAI 2.3.5 cannot use a model of this kind/base (one line), else None."""
    if kind == "main" and base in BASES_NOT_IN_INVOKEAI23:
        what = _BASE_WORDS.get(base or "", base)
        return (f"{what} needs InvokeAI 3 or newer: InvokeAI 2.3.5 cannot run it, so it is not registered in this root "
                f"(ComfyUI runs it from its models/checkpoints folder; {INSIST_FLAG} keeps the files here, unregistered)")
    return None


def starter_refusal(starter) -> str | None:
    """Why a catalogue entry cannot go into a 2.3 root (its ``requires``), else None."""
    if getattr(starter, "runs_in_invokeai23", True):
        return None
    return (f"{starter.key} needs {starter.requires}: InvokeAI 2.3.5 cannot run it, so it is not downloaded into this root "
            f"(ComfyUI or InvokeAI 3+ run it; {INSIST_FLAG} downloads it anyway, kept unregistered)")




from invokeai_model_install.install.questions import SkippedByUser  # noqa: E402


class Unsupported(SkippedByUser):
    """A model this root's InvokeAI cannot run: reported as skipped, with the one line of :func:`refusal`."""
