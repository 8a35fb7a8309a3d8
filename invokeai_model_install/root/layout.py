"""Where things live under an InvokeAI root directory.

Root precedence: ``--root DIR`` beats ``INVOKEAI_ROOT``, which beats ``~/invokeai``.
Nothing here reads globals at import time: callers pass the environment in
(default ``os.environ`` at call time) so tests can use ``tmp_path`` roots.

Layout::

    ROOT/
      invokeai.init                 one startup option per line (--autoconvert "DIR")
      configs/models.yaml           the registry of installed models
      configs/stable-diffusion/     legacy LDM configs (v1-inference.yaml ...)
      models/
        diffusers/                  main models in diffusers format (one folder each)
        checkpoints/                main models as single files (.ckpt/.safetensors)
        vae/                        VAEs (diffusers folders or single files)
        lora/                       LoRA / LyCORIS files
        embeddings/                 textual-inversion embeddings
        controlnet/                 ControlNet models
        upscale_models/ text_encoders/ clip_vision/ ipadapter/ t2i_adapter/
                                    files kept for other UIs (ComfyUI, A1111); no models.yaml stanza
        .partial/                   resumable partial downloads (safe to delete)
        .manifests/                 one JSON manifest per installed model
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Mapping

#: Model kind -> folder name under ``models/``.  Kinds match :mod:`probe` results.
KIND_DIRS: dict[str, str] = {
    "main": "checkpoints",
    "main-diffusers": "diffusers",
    "vae": "vae",
    "lora": "lora",
    "embedding": "embeddings",
    "controlnet": "controlnet",
    # kept for other UIs (ComfyUI, A1111), no models.yaml stanza: see identify/families.py
    "upscaler": "upscale_models",
    "text_encoder": "text_encoders",
    "clip_vision": "clip_vision",
    "ip_adapter": "ipadapter",
    "t2i_adapter": "t2i_adapter",
}


#: Model kind -> ComfyUI's folder under ``COMFY_DIR/models`` (its ``folder_paths`` names), for ``--layout comfyui``.
COMFY_KIND_DIRS: dict[str, str] = {
    "main": "checkpoints",
    "main-diffusers": "diffusers",
    "vae": "vae",
    "lora": "loras",
    "embedding": "embeddings",
    "controlnet": "controlnet",
    "t2i_adapter": "controlnet",
    "upscaler": "upscale_models",
    "text_encoder": "text_encoders",
    "clip_vision": "clip_vision",
    "ip_adapter": "ipadapter",
    "diffusion_model": "diffusion_models",
}


def resolve_root(cli_root: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The root directory: ``--root`` beats ``INVOKEAI_ROOT`` beats ``~/invokeai``.

    The path is expanded (``~``) and made absolute; it need not exist.
    """
    env = os.environ if environ is None else environ
    if cli_root:
        raw = str(cli_root)
    elif env.get("INVOKEAI_ROOT"):
        raw = env["INVOKEAI_ROOT"]
    else:
        home = env.get("HOME") or str(Path.home())
        raw = str(Path(home) / "invokeai")
    return Path(os.path.expanduser(raw)).absolute()


@dataclass(frozen=True)
class RootLayout:
    """Paths of one root directory.  ``config_file`` may point outside the root (``--config_file``)."""

    root: Path
    config_file_override: Path | None = None

    #: which program reads this tree: ``invokeai`` (models.yaml) or ``comfyui`` (folders only, see ComfyLayout)
    flavour: ClassVar[str] = "invokeai"
    #: whether installed models get a models.yaml stanza (a ComfyUI tree has no models.yaml)
    has_registry: ClassVar[bool] = True

    @property
    def configs_dir(self) -> Path:
        return self.root / "configs"

    @property
    def models_yaml(self) -> Path:
        """The registry: ``configs/models.yaml`` unless ``--config_file`` gave another."""
        if self.config_file_override is not None:
            return self.config_file_override
        return self.configs_dir / "models.yaml"

    @property
    def legacy_configs_dir(self) -> Path:
        return self.configs_dir / "stable-diffusion"

    @property
    def init_file(self) -> Path:
        return self.root / "invokeai.init"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def partial_dir(self) -> Path:
        """Resumable partial downloads; kept across runs, safe to delete."""
        return self.models_dir / ".partial"

    @property
    def manifests_dir(self) -> Path:
        return self.models_dir / ".manifests"

    def kind_dir(self, kind: str) -> Path:
        """Folder under ``models/`` for a model kind (see :data:`KIND_DIRS`)."""
        return self.models_dir / KIND_DIRS[kind]

    def exists(self) -> bool:
        """True when the root has been set up (its models.yaml folder exists)."""
        return self.configs_dir.is_dir()

    def relative(self, path: Path) -> str:
        """``path`` relative to the root when inside it (as stored in models.yaml), else absolute."""
        path = Path(path).absolute()
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def absolute(self, stored: str) -> Path:
        """Resolve a path as stored in models.yaml (relative paths are against the root)."""
        p = Path(os.path.expanduser(stored))
        return p if p.is_absolute() else (self.root / p)

    def is_inside_models(self, path: Path) -> bool:
        """True when ``path`` (after resolving symlinks and ``..``) is inside ``models/``."""
        try:
            Path(path).resolve().relative_to(self.models_dir.resolve())
        except ValueError:
            return False
        return True


@dataclass(frozen=True)
class ComfyLayout(RootLayout):
    """A ComfyUI tree (``--layout comfyui --root COMFY_DIR``): each kind in ComfyUI's folder under
    ``COMFY_DIR/models`` (:data:`COMFY_KIND_DIRS`), no models.yaml.  What we installed is recorded in
    manifests under ``models/.invokeai-manifests`` (re-runs, ``list``, ``delete`` and ``verify`` read them);
    partial downloads wait in ``models/.invokeai-partial``.  ComfyUI lists only its own folder names, so
    neither hidden folder shows up in it."""

    flavour: ClassVar[str] = "comfyui"
    has_registry: ClassVar[bool] = False

    @property
    def models_yaml(self) -> Path:
        """Never written (``has_registry`` is False); reading it gives an empty registry."""
        return self.manifests_dir / "no-models.yaml"

    @property
    def partial_dir(self) -> Path:
        return self.models_dir / ".invokeai-partial"

    @property
    def manifests_dir(self) -> Path:
        return self.models_dir / ".invokeai-manifests"

    def kind_dir(self, kind: str) -> Path:
        return self.models_dir / COMFY_KIND_DIRS[kind]

    def exists(self) -> bool:
        """True when COMFY_DIR has its ``models`` folder."""
        return self.models_dir.is_dir()
