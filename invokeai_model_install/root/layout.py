"""Where things live under an InvokeAI root directory.

Root precedence: ``--root DIR`` beats ``INVOKEAI_ROOT``, which beats ``~/invokeai``.
Nothing here reads globals at import time: callers pass the environment in
(default ``os.environ`` at call time) so tests can use ``tmp_path`` roots.

This module is the one source of truth for folder locations: the installer, the
migration of older roots, and the links for other UIs (``share/``) all read them here.

Layout (the places InvokeAI 2.3.5 looks; see docs/compatibility.md for the file:line
references in 2.3.5 that each rule rests on)::

    ROOT/
      .version                      "2.3.5.post2" in a root we created (2.3.5 then skips its upgrade step)
      invokeai.init                 one startup option per line (--autoconvert "DIR")
      configs/models.yaml           the registry: MAIN models only (2.3.5 lists every stanza as a main model)
      configs/stable-diffusion/     legacy LDM configs (v1-inference.yaml ...)
      loras/                        LoRA / LyCORIS files (2.3.5's LoraManager walks this folder; no stanza)
      embeddings/                   textual-inversion embeddings (loaded into every model; no stanza)
      models/
        sd/                         main models in diffusers format downloaded from the hub (``path:`` stanzas)
        converted_ckpts/            checkpoints we converted to diffusers (2.3.5's own folder for them)
        checkpoints/                main models as single files (.ckpt/.safetensors; ``weights:`` stanzas)
        vae/                        single-file VAEs (``vae: <file>`` on a checkpoint stanza; no stanza of their own)
        controlnet/                 ControlNet models (kept for other UIs; 2.3.5 has no loader, no stanza)
        upscale_models/ text_encoders/ clip_vision/ ipadapter/ t2i_adapter/
                                    files kept for other UIs (ComfyUI, A1111); no models.yaml stanza
        hub/                        the HuggingFace cache 2.3.5 reads (models--org--name/{snapshots,refs}):
                                    the support models and hub VAEs (``vae: {repo_id: ...}``)
        .partial/                   resumable partial downloads (safe to delete)
        .manifests/                 one JSON manifest per installed model (also the unregistered kinds)

Never used: ``models/diffusers`` (2.3.5's start-up ``migrate_models()`` treats anything there as its
pre-2.3 cache, asks ``continue>`` and moves it away).  Roots written by earlier versions of this
package used it; :mod:`invokeai_model_install.install.migrate` moves them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Mapping

#: Model kind -> folder, relative to the ROOT (POSIX).  Kinds match :mod:`probe` results.
KIND_DIRS: dict[str, str] = {
    "main": "models/checkpoints",
    "main-diffusers": "models/sd",
    "vae": "models/vae",
    "lora": "loras",
    "embedding": "embeddings",
    "controlnet": "models/controlnet",
    # kept for other UIs (ComfyUI, A1111), no models.yaml stanza: see identify/families.py
    "upscaler": "models/upscale_models",
    "text_encoder": "models/text_encoders",
    "clip_vision": "models/clip_vision",
    "ip_adapter": "models/ipadapter",
    "t2i_adapter": "models/t2i_adapter",
}

#: Kinds that get a models.yaml stanza.  InvokeAI 2.3.5 lists every stanza as a main model
#: (``list_models`` hides only configs containing ``/VAE/``), so nothing else is registered.
REGISTERED_KINDS: tuple[str, ...] = ("main",)

#: Bases InvokeAI 2.3.5 cannot run (diffusers 0.16.1 has no ``text_time`` embedding; no SDXL LDM yaml).
BASES_NOT_IN_INVOKEAI23: tuple[str, ...] = ("sdxl", "sdxl-refiner")

#: What ``invokeai-configure`` writes to ``ROOT/.version`` when it creates a root.
INVOKEAI23_VERSION = "2.3.5.post2"

#: Folder names (relative to the root) that earlier versions of this package used; see install/migrate.py.
OLD_KIND_DIRS: dict[str, str] = {
    "main-diffusers": "models/diffusers",
    "lora": "models/lora",
    "embedding": "models/embeddings",
}


def hf_cache_name(repo_id: str) -> str:
    """``org/name`` -> ``models--org--name`` (huggingface_hub's cache folder name)."""
    return "models--" + repo_id.replace("/", "--")


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
        """Folder for a model kind (see :data:`KIND_DIRS`)."""
        return self.root / KIND_DIRS[kind]

    @property
    def converted_dir(self) -> Path:
        """Checkpoints converted to diffusers: ``models/converted_ckpts`` (2.3.5's ``Globals.converted_ckpts_dir``)."""
        return self.models_dir / "converted_ckpts"

    @property
    def hub_dir(self) -> Path:
        """The HuggingFace cache 2.3.5 reads: ``models/hub`` (``global_cache_dir("hub")`` when HF_HOME is unset)."""
        return self.models_dir / "hub"

    def hf_repo_dir(self, repo_id: str) -> Path:
        """``models/hub/models--org--name`` for ``org/name``."""
        return self.hub_dir / hf_cache_name(repo_id)

    @property
    def legacy_diffusers_dir(self) -> Path:
        """``models/diffusers``: never used (2.3.5 moves anything in it); earlier versions of this package did."""
        return self.models_dir / "diffusers"

    @property
    def version_file(self) -> Path:
        """``ROOT/.version``: 2.3.5 runs its upgrade step when it is missing or older than itself."""
        return self.root / ".version"

    def folders(self) -> list[Path]:
        """Every folder a set-up root has (what ``invokeai-configure`` creates)."""
        out = [self.root, self.configs_dir, self.legacy_configs_dir, self.models_dir]
        out += [self.kind_dir(kind) for kind in KIND_DIRS]
        out += [self.converted_dir, self.hub_dir]
        return list(dict.fromkeys(out))

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

    def managed_dirs(self) -> list[Path]:
        """Folders whose contents this package may delete: ``models/``, ``loras/``, ``embeddings/``."""
        return [self.models_dir, self.kind_dir("lora"), self.kind_dir("embedding")]

    def is_inside_models(self, path: Path) -> bool:
        """True when ``path`` (after resolving symlinks and ``..``) is inside ``models/`` (or ``loras/``,
        ``embeddings/``: the folders 2.3.5 reads LoRAs and embeddings from, which we fill too)."""
        resolved = Path(path).resolve()
        for folder in self.managed_dirs():
            try:
                resolved.relative_to(folder.resolve())
            except ValueError:
                continue
            return True
        return False


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

    @property
    def converted_dir(self) -> Path:
        """Conversions go where ComfyUI keeps diffusers folders."""
        return self.kind_dir("main-diffusers")

    def exists(self) -> bool:
        """True when COMFY_DIR has its ``models`` folder."""
        return self.models_dir.is_dir()
