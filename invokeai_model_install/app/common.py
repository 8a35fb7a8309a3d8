"""What every front end shares: the root from ``--root``/``INVOKEAI_ROOT``, "is this a terminal", and the
values ``edit`` writes into a stanza (``--vae``, ``--config``), used by the command line and the web page alike."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

from invokeai_model_install.errors import InstallerError, UnknownModelError, UsageError, from_os_error
from invokeai_model_install.root.layout import RootLayout, resolve_root


def make_layout(args: argparse.Namespace, environ: dict[str, str] | None = None) -> RootLayout:
    """The root layout from ``--root`` / ``INVOKEAI_ROOT`` / ``~/invokeai`` and ``--config_file``."""
    root = resolve_root(getattr(args, "root", None), os.environ if environ is None else environ)
    if getattr(args, "layout", "invokeai") == "comfyui":
        from invokeai_model_install.root.layout import ComfyLayout

        if not getattr(args, "root", None):
            raise UsageError("--layout comfyui needs --root COMFY_DIR (the ComfyUI folder that holds models/)",
                             "add --root DIR")
        return ComfyLayout(root)
    config_file = getattr(args, "config_file", None)
    override = Path(os.path.expanduser(config_file)).absolute() if config_file else None
    return RootLayout(root, override)


#: errors that are the user's words being wrong: exit status 2
USAGE_ERRORS = (UsageError, UnknownModelError)


def exit_status(run: Callable[[], int]) -> int:
    """``run()``'s status, or our errors as one line on stderr and their exit status (2 usage, 1 failure, 130 Ctrl-C)."""
    try:
        return int(run() or 0)
    except USAGE_ERRORS as err:
        print(err.one_line(), file=sys.stderr)
        return 2
    except InstallerError as err:
        print(err.one_line(), file=sys.stderr)
        return 1
    except BrokenPipeError:  # `... | head`: the reader left; say nothing more
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1
    except OSError as exc:  # read-only root, permissions, full disk, a file where a folder should be
        print(from_os_error(exc).one_line(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


def is_interactive() -> bool:
    """True when stdin and stdout are both a terminal (the form and the questions need one)."""
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def vae_value(text: str, stanza: dict[str, Any], layout: RootLayout) -> Any:
    """The ``vae`` field for ``--vae``: a repo id, a path or an installed VAE's name, in the form InvokeAI 2.3.5
    loads (docs/compatibility.md): a checkpoint stanza takes a plain path to a single-file VAE; a diffusers
    stanza ``{repo_id: ...}`` (a hub VAE, or a local diffusers VAE folder by its absolute path) or ``{path: FILE}``."""
    from invokeai_model_install.root import manifest
    from invokeai_model_install.root.registry import looks_like_repo_id, stanza_format

    legacy = stanza_format(stanza) == "ckpt"
    candidate = Path(os.path.expanduser(text))
    record = manifest.read_manifest(layout, text) if not candidate.exists() and "/" not in text else None
    if record is not None and record.kind == "vae":  # an installed VAE, by name
        candidate = layout.absolute(record.path)
        if candidate.is_dir() and layout.hub_dir in candidate.parents:
            repo = next((p.name for p in candidate.parents if p.name.startswith("models--")), "")
            if legacy:
                raise UsageError(f"{text} is a diffusers VAE; a checkpoint model (format: ckpt) takes a single-file VAE "
                                 "in InvokeAI 2.3.5", "give a .safetensors/.ckpt VAE file")
            return {"repo_id": repo.removeprefix("models--").replace("--", "/", 1)}
    local = candidate.exists() or not looks_like_repo_id(text)
    if local:
        if not candidate.exists():
            raise UsageError(
                f"VAE {text!r} is neither an existing file or folder nor a repo id like owner/name",
                "check the path, or give a HuggingFace repo id",
            )
        stored = layout.relative(candidate.absolute())
        if candidate.is_dir():
            if legacy:
                raise UsageError(f"{text} is a folder; a checkpoint model (format: ckpt) takes a single-file VAE in "
                                 "InvokeAI 2.3.5 (it reads a folder as a checkpoint file and fails)",
                                 "give a .safetensors/.ckpt VAE file")
            # 2.3.5 reads vae: {path: FOLDER} as a checkpoint file; a local diffusers VAE loads as {repo_id: ABSOLUTE PATH}
            return {"repo_id": str(candidate.absolute())}
        return stored if legacy else {"path": stored}
    if legacy:
        raise UsageError(f"VAE {text!r}: a checkpoint model (format: ckpt) takes a single-file VAE in InvokeAI 2.3.5, "
                         "not a hub repo", "download the VAE file and give its path")
    return {"repo_id": text}



def config_value(text: str, layout: RootLayout) -> str:
    """The ``config`` field for ``--config``: an existing yaml, or a packaged legacy config by name."""
    from invokeai_model_install.root.resources import LEGACY_CONFIG_NAMES, legacy_config_path

    candidate = Path(os.path.expanduser(text))
    if candidate.is_file():
        return layout.relative(candidate.absolute())
    name = text if text.endswith((".yaml", ".yml")) else f"{text}.yaml"
    if name in LEGACY_CONFIG_NAMES:
        in_root = layout.legacy_configs_dir / name
        if not in_root.exists():  # an older root: bring the packaged copy in
            in_root.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(legacy_config_path(name), in_root)
        return layout.relative(in_root)
    raise UsageError(
        f"config {text!r} is not a file",
        "give a .yaml path or one of: " + ", ".join(n.removesuffix(".yaml") for n in LEGACY_CONFIG_NAMES),
    )


def check_writable(layout: RootLayout) -> None:
    """Fail early, with one line, when the root cannot be written (read-only, permissions, disk
    full, a file where a folder should be), instead of one failure per item."""
    import tempfile

    for folder in (layout.models_dir, layout.models_yaml.parent):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=folder, prefix=".write-test-")
            os.close(fd)
            os.unlink(name)
        except OSError as exc:
            raise from_os_error(exc, exc.filename if exc.filename == str(folder) or not folder.is_dir() else folder) from None
