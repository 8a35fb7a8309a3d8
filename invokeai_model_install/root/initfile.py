"""``invokeai.init``: InvokeAI's startup options, one per line.

Example (from InvokeAI's docs)::

    --outdir="/home/fred/invokeai/outputs"
    --no-nsfw_checker
    --autoconvert /home/fred/stable-diffusion-checkpoints

We only ever touch the lines of the option we set; every other line, comment
and blank line is kept byte for byte.  Writes are atomic.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from invokeai_model_install.root.atomic import atomic_write_text
from invokeai_model_install.errors import ConfigError

DEFAULT_INIT = (
    "# InvokeAI initialization file: one command-line option per line.\n"
    "# These options are read by InvokeAI at startup; command-line options override them.\n"
)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines(keepends=True)
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", "check the file (it was not changed)") from None


def read_options(path: str | Path) -> list[str]:
    """The option lines of the file (stripped), without comments and blank lines.

    A missing file has no options.
    """
    out = []
    for line in _read_lines(Path(path)):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            out.append(stripped)
    return out


def _matches(line: str, option: str) -> bool:
    """True when ``line`` sets ``option`` (``--opt X``, ``--opt=X``, ``--opt "X"`` or bare ``--opt``)."""
    return re.match(rf"\s*{re.escape(option)}(?:\s|=|$)", line) is not None


def get_option(path: str | Path, option: str) -> str | bool | None:
    """The value of ``option`` (quotes removed); ``True`` for a bare flag; None when absent.

    With several lines for the option the last one wins, as in an argv.
    """
    value: str | bool | None = None
    for line in read_options(path):
        if not _matches(line, option):
            continue
        rest = line.strip()[len(option):]
        if rest.startswith("="):
            rest = rest[1:]
        rest = rest.strip()
        if not rest:
            value = True
            continue
        try:
            parts = shlex.split(rest)
        except ValueError:  # unbalanced quote: take the text as written
            parts = [rest.strip("\"'")]
        value = " ".join(parts) if parts else ""
    return value


def format_option(option: str, value: str | bool) -> str:
    """One line: ``--opt "value"`` (quoted so paths with spaces survive), or ``--opt`` for ``True``."""
    if value is True:
        return option
    text = str(value)
    if '"' in text or text.endswith("\\"):  # would end the double quotes early: use shell quoting
        return f"{option} {shlex.quote(text)}"
    return f'{option} "{text}"'


def set_option(path: str | Path, option: str, value: str | bool | None) -> bool:
    """Set ``option`` to ``value`` (``None`` removes it); returns True when the file changed.

    The first line of that option is replaced in place and any further lines of
    it dropped; a new option is appended.  Every other line is kept.  A missing
    file is created (with a short header) only when there is something to write.
    """
    if not option.startswith("-"):
        raise ConfigError(f"{option!r} is not a command-line option", "options start with --")
    path = Path(path)
    lines = _read_lines(path)
    new_line = None if value is None else format_option(option, value) + "\n"
    out: list[str] = []
    placed = False
    for line in lines:
        if _matches(line, option):
            if new_line is not None and not placed:
                out.append(new_line)
                placed = True
            continue
        out.append(line)
    if new_line is not None and not placed:
        if not lines:
            out.append(DEFAULT_INIT)
        elif not out[-1].endswith("\n"):
            out[-1] += "\n"
        out.append(new_line)
    if out == lines:
        return False
    if not lines and new_line is None:
        return False
    atomic_write_text(path, "".join(out))
    return True


def ensure_init_file(path: str | Path) -> bool:
    """Create an init file with only the header comment when none exists; True when created."""
    path = Path(path)
    if path.exists():
        return False
    atomic_write_text(path, DEFAULT_INIT)
    return True
