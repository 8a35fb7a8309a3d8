"""Helpers shared by the web manager's tests (tests/test_web_*.py): a root with a few installed models.

``build_template_root`` installs, through the real worker (thread mode), a tiny SD-1
checkpoint and a LoRA that live inside ``ROOT/models``, and writes a stanza for a
checkpoint outside the root.  Tests copy the template (``copy_root``) instead of
installing again: everything in models.yaml and the manifests is root-relative.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from invokeai_model_install.app.configure import create_layout
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.install.worker import run_plan
from invokeai_model_install.root.layout import RootLayout
from invokeai_model_install.root.registry import Registry

LEGACY = "legacy-sd1"
LORA = "lora-sd-1"
OUTSIDE = "outside-model"


def build_template_root(root: Path, outside_dir: Path, tiny_checkpoints, tiny_extras) -> RootLayout:
    layout = RootLayout(root)
    create_layout(layout)
    ckpt = layout.kind_dir("main") / f"{LEGACY}.safetensors"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tiny_checkpoints["sd-1", "safetensors"], ckpt)
    lora = layout.kind_dir("lora") / f"{LORA}.safetensors"
    lora.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tiny_extras["lora-sd-1.safetensors"], lora)
    result = run_plan(InstallPlan(imports=(str(ckpt), str(lora))), layout)
    assert result.ok, result.to_json()
    outside_dir.mkdir(parents=True, exist_ok=True)
    outside = outside_dir / "outside.ckpt"
    outside.write_bytes(b"not ours to delete")
    with Registry(layout.models_yaml).transaction() as doc:
        doc.add(OUTSIDE, {"description": "A checkpoint outside the root", "weights": str(outside),
                          "config": "configs/stable-diffusion/v1-inference.yaml", "format": "ckpt", "width": 512, "height": 512})
    names = Registry(layout.models_yaml).names()
    assert names == [LEGACY, LORA, OUTSIDE], names
    return layout


def copy_root(template: RootLayout, dest: Path) -> RootLayout:
    shutil.copytree(template.root, dest, symlinks=True)
    return RootLayout(dest)
