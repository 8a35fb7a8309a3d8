"""Looking at files before they are installed: refuse dangerous pickles (never loaded), then identify the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from invokeai_model_install.errors import ProbeError, UnsafeFileError
from invokeai_model_install.install.item import ItemContext
from invokeai_model_install.install.placement import unlink_quiet


def check_safety(path: Path, ctx: ItemContext, label: str, *, delete_on_danger: bool) -> None:
    """Refuse dangerous pickles (never loaded); note suspicious ones."""
    from invokeai_model_install.identify import safety

    # Judge files by content, not by name: a pickle renamed .json or .safetensors is still a pickle.
    files = list(safety.candidate_files(path)) if path.is_dir() else [path]
    for f in files:
        verdict = safety.scan(f)
        if verdict.verdict == "dangerous":
            if delete_on_danger:
                unlink_quiet(f)
            raise UnsafeFileError(f"{label}: {f.name} is a dangerous pickle ({verdict.message}); it was not installed")
        if verdict.verdict == "suspicious":
            ctx.note(f"{f.name}: {verdict.message}")
        if verdict.verdict == "unreadable":
            raise ProbeError(f"{label}: {f.name} cannot be read as a checkpoint ({verdict.message})", "check the file")


def probe_path(path: Path, label: str) -> Any:
    from invokeai_model_install.identify import probe

    return probe.probe(path)
