"""Looking at files before anything reads them: refuse dangerous pickles (never loaded) and, unless allowed one by one, suspicious ones."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from invokeai_model_install.errors import ProbeError, UnsafeFileError
from invokeai_model_install.install.item import ItemContext
from invokeai_model_install.install.placement import unlink_quiet


def suspicious_allowed(allow: tuple[str, ...] | list[str], file: Path, label: str, root: Path | None = None) -> bool:
    """Did the user allow this one suspicious file (``--allow-suspicious``)?

    An entry matches the file's name, its path (as given or resolved), its path inside the model
    folder, or the item's label/import line (which names exactly one model).
    """
    names = {file.name, str(file), label}
    with contextlib.suppress(OSError):
        names.add(str(file.resolve()))
    if root is not None and root != file:
        with contextlib.suppress(ValueError):
            names.add(str(file.relative_to(root)))
    for entry in allow:
        text = str(entry).strip()
        if not text:
            continue
        if text in names or os.path.expanduser(text) in names:
            return True
        with contextlib.suppress(OSError):
            if str(Path(os.path.expanduser(text)).resolve()) in names:
                return True
    return False


def check_safety(path: Path, ctx: ItemContext, label: str, *, delete_on_danger: bool) -> None:
    """Refuse dangerous pickles (never loaded, a download deleted) and, unless allowed one by one, suspicious ones."""
    from invokeai_model_install.identify import safety
    from invokeai_model_install.install.questions import ask_suspicious

    # Judge files by content, not by name: a pickle renamed .json or .safetensors is still a pickle.
    files = list(safety.candidate_files(path)) if path.is_dir() else [path]
    allow = tuple(getattr(ctx.plan, "allow_suspicious", ()) or ())
    for f in files:
        verdict = safety.scan(f)
        if verdict.verdict == "dangerous":
            if delete_on_danger:
                unlink_quiet(f)
            raise UnsafeFileError(f"{label}: {f.name} is a dangerous pickle ({verdict.message}); it was not installed")
        if verdict.verdict == "suspicious":
            reason = verdict.message.split(": ", 1)[-1]
            if not suspicious_allowed(allow, f, label, path if path.is_dir() else None) and \
                    not ask_suspicious(ctx, label, f.name, reason):
                # kept where it is (a download stays in staging): allowing it later fetches nothing again
                raise UnsafeFileError(
                    f"{label}: {f.name} is a suspicious pickle, refused ({reason}); "
                    "InvokeAI 2.3 would run its imports when loading it",
                    f"install it anyway only if you trust its source: --allow-suspicious {f.name} "
                    "(or answer the form's question); better, use a .safetensors version",
                )
            ctx.note(f"{f.name}: {verdict.message} (installed because you allowed it)")
        if verdict.verdict == "unreadable":
            # the verdict names the file ("x.ckpt: the file is empty"); say it once, after the item's label
            reason = verdict.message
            if reason.startswith(f.name + ":"):
                reason = reason[len(f.name) + 1:].strip()
            where = "" if Path(label).name == f.name else f"{f.name}: "
            raise ProbeError(f"{label}: {where}{reason}", "check the file, or download it again")

