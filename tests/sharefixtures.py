"""A root holding one installed model of every kind, for the sharing tests (links, dedupe, lock files).

Hub repos (a diffusers pipeline, a diffusers VAE) are installed from the stand-in hub; single files
(checkpoint, VAE, LoRA, embedding, ControlNet) are copied into the root's folder for their kind and
registered where they are - what a user gets from the installer and from the root's own folders.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from invokeai_model_install.app.configure import create_layout
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.install.worker import run_plan
from invokeai_model_install.root import manifest as mf
from invokeai_model_install.root.layout import RootLayout

SINGLE_FILES = {  # tiny_extras name -> our kind
    "vae.safetensors": "vae",
    "lora-sd-1.safetensors": "lora",
    "embedding.pt": "embedding",
    "controlnet-sd-1.safetensors": "controlnet",
}


def publish(hub, tiny_models) -> None:
    hub.add_repo("test/tiny-sd", tiny_models["sd-1"])
    hub.add_repo("test/tiny-vae", tiny_models["sd-1"] / "vae")


def populate_root(root: Path, hub, tiny_models, tiny_extras, tiny_checkpoints, *, hub_models: bool = True) -> RootLayout:
    layout = RootLayout(root)
    create_layout(layout)
    lines = []
    if hub_models:
        publish(hub, tiny_models)
        lines += ["test/tiny-sd", "test/tiny-vae"]
    ckpt = layout.kind_dir("main") / "tiny-ckpt.safetensors"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tiny_checkpoints[("sd-1", "safetensors")], ckpt)
    lines.append(str(ckpt))
    for name, kind in SINGLE_FILES.items():
        dest = layout.kind_dir(kind) / f"tiny-{name}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tiny_extras[name], dest)
        lines.append(str(dest))
    result = run_plan(InstallPlan(imports=tuple(lines)), layout, settings=None)
    assert result.ok, [o.one_line() for o in result.failed]
    assert len(list(mf.all_manifests(layout))) == len(lines)
    return layout
