"""``link comfyui COMFY_DIR`` / ``unlink comfyui COMFY_DIR``: one section of ComfyUI's ``extra_model_paths.yaml``.

ComfyUI reads ``COMFY_DIR/extra_model_paths.yaml`` at start-up (its documented format, see
``extra_model_paths.yaml.example`` in ComfyUI): every top-level section has an optional ``base_path`` and
one key per folder type (``checkpoints``, ``loras``, ``vae`` ...); a value holds one path or several, one
per line (a ``|`` block); relative paths are joined to ``base_path``.  We add exactly one section
(default name ``invokeai``) pointing every folder type ComfyUI loads at the root's folder for that kind::

    invokeai:
        # managed by invokeai-model-install (link comfyui); `unlink comfyui` removes this section
        base_path: /home/fred/invokeai
        checkpoints: models/checkpoints
        ...

Why a textual edit instead of a YAML round trip: the user's file is theirs.  Loading and dumping it (even
with ruamel.yaml's round-trip mode) can re-indent block scalars, re-quote strings and move comments; we
replace only the lines of our own section (found by its name at column 0 and our marker comment) and leave
every other byte as it was.  The result is then parsed with ``yaml.safe_load`` and must give the user's
other sections unchanged and ours exactly as meant, otherwise nothing is written.  The previous file is
kept as ``extra_model_paths.yaml.bak``; a re-run that would write the same text writes nothing.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from invokeai_model_install.errors import ConfigError, UsageError
from invokeai_model_install.root.atomic import atomic_write_text
from invokeai_model_install.root.layout import RootLayout
from invokeai_model_install.share import folders

FILE_NAME = "extra_model_paths.yaml"
DEFAULT_SECTION = "invokeai"
MARKER = "# managed by invokeai-model-install (link comfyui); `unlink comfyui` removes this section"
_INDENT = "    "

#: our kind -> ComfyUI folder types that load it (ComfyUI's folder_paths names; the first is the current
#: name, later ones are older aliases ComfyUI still reads).  Kinds the layout does not have are skipped.
COMFY_FOLDERS: dict[str, tuple[str, ...]] = {
    "main": ("checkpoints", "configs"),  # configs: the companion <stem>.yaml beside a single-file checkpoint
    "main-diffusers": ("diffusers",),
    "vae": ("vae",),
    "lora": ("loras",),
    "embedding": ("embeddings",),
    "controlnet": ("controlnet",),
    "t2i_adapter": ("controlnet",),  # ComfyUI loads T2I-Adapters with the ControlNet loader
    "upscaler": ("upscale_models",),
    "text_encoder": ("text_encoders", "clip"),
    "clip_vision": ("clip_vision",),
    "ip_adapter": ("ipadapter",),
    "diffusion_model": ("diffusion_models", "unet"),
}

_PLAIN = re.compile(r"^[A-Za-z0-9_./~+-][A-Za-z0-9_./~+ -]*$")


@dataclass(frozen=True)
class LinkResult:
    path: Path
    section: str
    changed: bool
    backup: Path | None = None
    folders: dict[str, list[str]] = field(default_factory=dict)  # ComfyUI folder type -> absolute paths


def section_folders(layout: RootLayout) -> dict[str, list[str]]:
    """ComfyUI folder type -> root-relative (or absolute, when outside the root) paths, in ComfyUI's order."""
    out: dict[str, list[str]] = {}
    root = layout.root.absolute()
    for kind, paths in folders.root_folders(layout).items():
        for comfy in COMFY_FOLDERS.get(kind, ()):
            for p in paths:
                p = Path(p).absolute()
                try:
                    text = p.relative_to(root).as_posix()
                except ValueError:
                    text = str(p)
                bucket = out.setdefault(comfy, [])
                if text not in bucket:
                    bucket.append(text)
    return out


def _scalar(text: str) -> str:
    if "\n" in text:
        raise UsageError(f"path {text!r} contains a line break", "ComfyUI's extra_model_paths.yaml cannot hold it")
    return text if _PLAIN.match(text) and not text.endswith(" ") else json.dumps(text)


def render_section(name: str, layout: RootLayout) -> str:
    """Our section's text (ends with a newline)."""
    lines = [f"{name}:", f"{_INDENT}{MARKER}", f"{_INDENT}base_path: {_scalar(str(layout.root.absolute()))}"]
    for key, paths in section_folders(layout).items():
        if len(paths) == 1:
            lines.append(f"{_INDENT}{key}: {_scalar(paths[0])}")
        else:  # several paths: ComfyUI splits the value on newlines
            lines.append(f"{_INDENT}{key}: |")
            for p in paths:
                if "\n" in p:
                    raise UsageError(f"path {p!r} contains a line break", "ComfyUI's extra_model_paths.yaml cannot hold it")
                lines.append(f"{_INDENT}{_INDENT}{p}")
    return "\n".join(lines) + "\n"


def _find_section(lines: list[str], name: str) -> tuple[int, int] | None:
    """(start, end) line indexes of top-level section ``name`` (end exclusive, trailing blank lines excluded)."""
    head = re.compile(rf"^{re.escape(name)}\s*:\s*(#.*)?$")
    for i, line in enumerate(lines):
        if head.match(line.rstrip("\r\n")):
            j = i + 1
            while j < len(lines) and (not lines[j].strip() or lines[j][0] in " \t"):
                j += 1
            while j > i + 1 and not lines[j - 1].strip():
                j -= 1
            return i, j
    return None


def _load(text: str, path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML ({str(exc).splitlines()[0]})", "fix or move the file, then run `link comfyui` again") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level is not a mapping of sections", "fix or move the file, then run `link comfyui` again")
    return data


def _check_comfy_dir(comfy_dir: Path) -> None:
    if not comfy_dir.is_dir():
        raise UsageError(f"ComfyUI folder {comfy_dir} does not exist", "give the folder that holds ComfyUI's main.py")
    marks = ("main.py", "comfy", "models", FILE_NAME, FILE_NAME + ".example")
    if not any((comfy_dir / m).exists() for m in marks):
        raise UsageError(f"{comfy_dir} does not look like a ComfyUI folder (no main.py, comfy/ or models/)",
                         "give the folder that holds ComfyUI's main.py")


def link(layout: RootLayout, comfy_dir: str | os.PathLike[str], *, section: str = DEFAULT_SECTION) -> LinkResult:
    """Add or update our section of ``COMFY_DIR/extra_model_paths.yaml``; other sections, keys and comments stay."""
    comfy_dir = Path(os.path.expanduser(str(comfy_dir))).absolute()
    _check_comfy_dir(comfy_dir)
    if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", section):
        raise UsageError(f"section name {section!r} is not a plain YAML key", "use letters, digits, _ . -")
    path = comfy_dir / FILE_NAME
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    before = _load(old, path)
    lines = old.splitlines(keepends=True)
    block = render_section(section, layout)
    found = _find_section(lines, section)
    if found is not None:
        start, end = found
        if MARKER not in "".join(lines[start:end]):
            raise UsageError(f"{path} already has a section {section!r} that invokeai-model-install did not write",
                             "pass --section NAME to use another name")
        new = "".join(lines[:start]) + block + "".join(lines[end:])
    else:
        if old and not old.endswith("\n"):
            old += "\n"
        new = old + ("\n" if old.strip() else "") + block
    after = _load(new, path)
    expected = {k: v for k, v in before.items() if k != section}
    if {k: v for k, v in after.items() if k != section} != expected or not isinstance(after.get(section), dict):
        raise ConfigError(f"{path}: adding section {section!r} would change other sections", "edit the file by hand; nothing was written")
    resolved = {k: [os.path.normpath(os.path.join(str(layout.root.absolute()), p)) for p in v]
                for k, v in section_folders(layout).items()}
    if new == (path.read_text(encoding="utf-8") if path.exists() else None):
        return LinkResult(path, section, False, None, resolved)
    backup = path.with_name(FILE_NAME + ".bak") if path.exists() else None
    atomic_write_text(path, new, backup=backup)
    _remember(layout, comfy_dir, section)
    return LinkResult(path, section, True, backup, resolved)


def unlink(layout: RootLayout, comfy_dir: str | os.PathLike[str], *, section: str = DEFAULT_SECTION) -> LinkResult:
    """Remove only our section (the previous file is kept as ``.bak``); no section: nothing changes."""
    comfy_dir = Path(os.path.expanduser(str(comfy_dir))).absolute()
    path = comfy_dir / FILE_NAME
    if not path.exists():
        _forget(layout, comfy_dir)
        return LinkResult(path, section, False)
    old = path.read_text(encoding="utf-8")
    before = _load(old, path)
    lines = old.splitlines(keepends=True)
    found = _find_section(lines, section)
    if found is None:
        _forget(layout, comfy_dir)
        return LinkResult(path, section, False)
    start, end = found
    if MARKER not in "".join(lines[start:end]):
        raise UsageError(f"section {section!r} of {path} was not written by invokeai-model-install; left alone",
                         "pass --section NAME for the section `link comfyui` wrote")
    # drop the blank line we put before the section when appending it
    if start > 0 and not lines[start - 1].strip():
        start -= 1
    new = "".join(lines[:start] + lines[end:])
    after = _load(new, path)
    if after != {k: v for k, v in before.items() if k != section}:
        raise ConfigError(f"{path}: removing section {section!r} would change other sections", "edit the file by hand; nothing was written")
    backup = path.with_name(FILE_NAME + ".bak")
    atomic_write_text(path, new, backup=backup)
    _forget(layout, comfy_dir)
    return LinkResult(path, section, True, backup)


def _remember(layout: RootLayout, comfy_dir: Path, section: str) -> None:
    data = folders.read_links(layout)
    data.setdefault("comfyui", {})[str(comfy_dir)] = {"section": section}
    folders.write_links(layout, data)


def _forget(layout: RootLayout, comfy_dir: Path) -> None:
    data = folders.read_links(layout)
    if str(comfy_dir) in data.get("comfyui", {}):
        del data["comfyui"][str(comfy_dir)]
        folders.write_links(layout, data)
