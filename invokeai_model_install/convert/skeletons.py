"""The packaged config-only skeletons (``convert/data/<type>/``): one per model type, plus the shared CLIP tokenizer."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from invokeai_model_install.errors import ConversionError

#: Package data: one config-only skeleton per model type + the shared CLIP tokenizer files.
CONVERT_DATA = Path(__file__).resolve().parent / "data"

SKELETONS = ("sd-1", "sd-1-inpaint", "sd-2", "sd-2-v", "sd-2-inpaint", "sdxl", "sdxl-refiner")

TOKENIZER_SHARED = ("vocab.json", "merges.txt")



def skeleton_dir(name: str) -> Path:
    """The packaged config-only skeleton folder for a model type (see :data:`SKELETONS`)."""
    if name not in SKELETONS:
        raise ValueError(f"no skeleton {name!r}; one of {SKELETONS}")
    return CONVERT_DATA / name


def materialize_skeleton(name: str, dest: str | os.PathLike) -> Path:
    """Copy a skeleton into ``dest`` with full tokenizer folders (what diffusers'
    ``from_single_file(config=...)`` wants); used by the benchmark and tests."""
    dest = Path(dest)
    shutil.copytree(skeleton_dir(name), dest)
    for tok in ("tokenizer", "tokenizer_2"):
        if (dest / tok).is_dir():
            for f in TOKENIZER_SHARED:
                shutil.copyfile(CONVERT_DATA / "clip_tokenizer" / f, dest / tok / f)
    return dest


def skeleton_for(base: str, variant: str, prediction: str) -> str:
    if base == "sd-1":
        return "sd-1-inpaint" if variant == "inpaint" else "sd-1"
    if base == "sd-2":
        if variant == "inpaint":
            return "sd-2-inpaint"
        return "sd-2-v" if prediction == "v" else "sd-2"
    if base in ("sdxl", "sdxl-refiner"):
        return base
    raise ConversionError(f"no conversion for base {base!r}")


def read_skeleton(name: str) -> dict[str, Any]:
    root = skeleton_dir(name)
    return {str(p.relative_to(root)).replace(os.sep, "/"): json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(root.rglob("*.json"))}
