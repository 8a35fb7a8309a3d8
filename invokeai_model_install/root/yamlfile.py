"""Reading a user's YAML file (starter catalogue, plan file) with one-line errors.

One place turns a missing file, an unreadable file and a YAML syntax error into a
:class:`ConfigError` that names the file (and the line) and says what to do.
models.yaml has its own reader in :mod:`registry` (it also refuses duplicate keys).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from invokeai_model_install.errors import ConfigError


def read_yaml_file(path: Path, what: str, flag: str) -> Any:
    """The parsed content of ``path``; ``what`` names it in errors ("plan file"), ``flag`` is the option that chose it."""
    import yaml  # small, but only needed when a file is actually read

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist", f"check the {flag} path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}", "check the file") from None
    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml when built in: ~10x faster
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{what} {path}{where}: {problem}", "fix the YAML at that line") from None
