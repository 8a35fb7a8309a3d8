"""The install plan: one frozen value that every front end builds.

The form, the command-line flags and a plan file (``--plan FILE.yaml``) all
produce an :class:`InstallPlan`; the worker executes it item by item.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

Precision = Literal["fp16", "fp32"]
Device = Literal["auto", "cpu", "cuda", "mps"]
PredictionType = Literal["epsilon", "v"]


@dataclass(frozen=True)
class InstallPlan:
    """What the user asked for.  Plain data: no paths are resolved, nothing is fetched.

    :param install_starters: catalogue keys to install (installed ones are skipped).
    :param remove_starters: model names to remove from models.yaml.
    :param purge: with removals, also delete their files inside the root's ``models/``.
    :param imports: import lines: URLs, file/folder paths, repo ids (``owner/name[:sub][@rev]``).
    :param scan_dir: a folder whose model files are imported (recursively).
    :param autoscan: ``True`` writes ``--autoconvert "scan_dir"`` to invokeai.init,
        ``False`` removes it, ``None`` leaves invokeai.init alone.
    :param convert: convert imported single-file checkpoints to diffusers.
    :param precision: ``fp16`` (default) or ``fp32`` (``--full-precision``).
    :param device: where conversion runs: ``auto`` picks CUDA when present.
    :param convert_models: installed single-file models (by name) to convert to diffusers in place
        of their stanza (``convert NAME``, the web page's "Convert to Diffusers"); nothing is downloaded.
    :param in_place: local files and folders (``--add DIR``, ``scan_dir``) are registered where they are and never
        converted or copied; files this root cannot use (unknown, or a family InvokeAI 2.3 cannot run) are skipped
        with a note instead of failing (``--add ~/ComfyUI/models --in-place``).
    :param locked: models of a lock file (``share.lockfile.LockedModel``), reproduced byte for byte.
    :param lock_files: a folder to take locked files from (found by size and sha256) instead of the network.
    :param delete_original: with ``convert_models``, delete each converted checkpoint (only inside ``models/``).
    :param support_models: also install the support models InvokeAI 2.3.5 needs to load checkpoint
        (``format: ckpt``) models: CLIP, the safety checker, the SD-2 text encoder (``install.support``).
    :param download_unsupported: download (and keep, unregistered) a model InvokeAI 2.3.5 cannot run, e.g.
        SDXL, instead of refusing it (``--download-unsupported``).
    :param prediction_type: answer for SD2 checkpoints whose prediction type is
        undecided; ``None`` means ask (the front end's callback), or skip the item
        when nobody can answer.
    :param allow_suspicious: pickle files the user chose to install although the safety scan calls
        them ``suspicious`` (refused by default): each entry is a file name (``model.ckpt``), a path,
        or an import line / model label; it matches that file only.  ``dangerous`` files are never
        installed, whatever this says.
    """

    install_starters: tuple[str, ...] = ()
    remove_starters: tuple[str, ...] = ()
    purge: bool = False
    imports: tuple[str, ...] = ()
    scan_dir: Optional[Path] = None
    autoscan: Optional[bool] = None
    convert: bool = False
    precision: Precision = "fp16"
    device: Device = "auto"
    prediction_type: Optional[PredictionType] = None
    convert_models: tuple[str, ...] = ()
    delete_original: bool = False
    locked: tuple[Any, ...] = ()
    in_place: bool = False
    lock_files: Optional[Path] = None
    allow_suspicious: tuple[str, ...] = ()
    support_models: bool = False
    download_unsupported: bool = False
    extra: tuple[tuple[str, str], ...] = field(default=())  # reserved for front-end notes

    def is_empty(self) -> bool:
        """True when the plan asks for nothing at all."""
        return not (
            self.install_starters
            or self.remove_starters
            or self.imports
            or self.convert_models
            or self.locked
            or self.support_models
            or self.scan_dir is not None
            or self.autoscan is not None
        )
