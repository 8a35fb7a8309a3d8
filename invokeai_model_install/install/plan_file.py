"""``--plan FILE.yaml``: an :class:`InstallPlan` written down.

Example::

    # what to install (catalogue keys)
    install: [stable-diffusion-1.5, sd-inpainting-1.5]
    # import lines: URLs, repo ids (owner/name[:subfolder][@revision]), files, folders
    add:
      - https://example.com/models/dreamshaper.safetensors
      - stabilityai/sd-vae-ft-mse
    remove: [old-model]
    purge: false
    scan_dir: ~/checkpoints      # relative paths are relative to this file
    autoscan: true               # write --autoconvert "DIR" to invokeai.init (false: remove it)
    convert: true
    precision: fp16              # or fp32
    device: auto                 # cpu, cuda, mps
    prediction_type: v           # answer for SD-2 checkpoints (epsilon or v)
    allow_suspicious: [old-model.ckpt]   # install these although the safety scan calls them suspicious

A lock file written by ``freeze`` is a plan file too: ``lock_version: 1`` and a ``locked`` list of models
with their files, sizes and sha256 (see :mod:`invokeai_model_install.share.lockfile`); ``lock_files: DIR``
takes the locked files from a folder instead of the network.

Every problem in the file is collected and reported at once in one
:class:`ConfigError` naming the file and the keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from invokeai_model_install.errors import ConfigError
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.root.yamlfile import read_yaml_file

#: accepted keys -> the InstallPlan field they fill (aliases keep hand-written files forgiving)
_KEYS = {
    "install": "install_starters",
    "install_starters": "install_starters",
    "starters": "install_starters",
    "add": "imports",
    "imports": "imports",
    "remove": "remove_starters",
    "remove_starters": "remove_starters",
    "delete": "remove_starters",
    "purge": "purge",
    "scan_dir": "scan_dir",
    "autoscan": "autoscan",
    "convert": "convert",
    "in_place": "in_place",
    "precision": "precision",
    "device": "device",
    "prediction_type": "prediction_type",
    # lock files (`freeze`): see share/lockfile.py
    "locked": "locked",
    "lock_files": "lock_files",
    "lock_version": "lock_version",
    "frozen_from": "frozen_from",
    "frozen_at": "frozen_at",
    "allow_suspicious": "allow_suspicious",
}
_INFO_ONLY = ("lock_version", "frozen_from", "frozen_at")
_CHOICES = {"precision": ("fp16", "fp32"), "device": ("auto", "cpu", "cuda", "mps"), "prediction_type": ("epsilon", "v")}


def load_plan_file(path: str | os.PathLike[str]) -> InstallPlan:
    """Read and validate a plan file; raises :class:`ConfigError` listing every problem."""
    path = Path(os.path.expanduser(str(path))).absolute()
    data = read_yaml_file(path, "plan file", "--plan")
    return parse_plan(data, source=str(path), base_dir=path.parent)


def _str_list(value: Any, key: str, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) and str(v).strip() for v in value):
        problems.append(f"{key!r} must be a list of non-empty strings")
        return ()
    return tuple(str(v).strip() for v in value)


def _local_line(line: str, base_dir: Path | None) -> str:
    """A relative path in a plan file means relative to the file, when it exists there."""
    if base_dir is None or "://" in line:
        return line
    expanded = os.path.expanduser(line)
    if os.path.isabs(expanded):
        return expanded
    candidate = base_dir / expanded
    return str(candidate) if candidate.exists() else line


def parse_plan(data: Any, source: str = "<plan>", base_dir: Path | None = None) -> InstallPlan:
    """Validate parsed YAML (a mapping) into an :class:`InstallPlan`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"plan file {source}: the top level must be a mapping of keys (install, add, ...)", "see docs/headless.md")
    problems: list[str] = []
    values: dict[str, Any] = {}
    for key, value in data.items():
        field = _KEYS.get(str(key))
        if field is None:
            problems.append(f"unknown key {key!r} (known: {', '.join(sorted(set(_KEYS) - {'install_starters', 'remove_starters', 'imports'}))})")
            continue
        if field in values:
            problems.append(f"{key!r} repeats {field!r}")
            continue
        if field == "lock_version":
            from invokeai_model_install.share.lockfile import LOCK_VERSION

            if value != LOCK_VERSION:
                problems.append(f"'lock_version' {value!r} is not one this installer reads ({LOCK_VERSION}); update invokeai-model-install")
            continue
        if field in _INFO_ONLY:
            continue
        if field == "locked":
            from invokeai_model_install.share.lockfile import parse_locked

            values[field] = parse_locked(value, problems)
            continue
        if field in ("install_starters", "remove_starters", "allow_suspicious"):
            values[field] = _str_list(value, str(key), problems)
        elif field == "imports":
            values[field] = tuple(_local_line(line, base_dir) for line in _str_list(value, str(key), problems))
        elif field in ("purge", "convert", "in_place"):
            if not isinstance(value, bool):
                problems.append(f"{key!r} must be true or false, got {value!r}")
            else:
                values[field] = value
        elif field == "autoscan":
            if value is not None and not isinstance(value, bool):
                problems.append(f"{key!r} must be true, false or empty, got {value!r}")
            else:
                values[field] = value
        elif field in ("scan_dir", "lock_files"):
            if value is None:
                continue
            if not isinstance(value, str) or not value.strip():
                problems.append(f"{key!r} must be a folder path")
                continue
            p = Path(os.path.expanduser(value.strip()))
            if not p.is_absolute() and base_dir is not None:
                p = base_dir / p
            values[field] = p.absolute()
        else:  # precision, device, prediction_type
            if value is None and field == "prediction_type":
                continue
            if value not in _CHOICES[field]:
                problems.append(f"{key!r} must be one of {', '.join(_CHOICES[field])}, got {value!r}")
            else:
                values[field] = value
    if values.get("lock_files") is not None and not values["lock_files"].is_dir():
        problems.append(f"'lock_files' {str(values['lock_files'])!r} is not a folder")
    if values.get("autoscan") is True and values.get("scan_dir") is None:
        problems.append("'autoscan: true' needs 'scan_dir'")
    if problems:
        raise ConfigError(f"plan file {source} is invalid: " + "; ".join(problems), "fix those keys (see docs/headless.md)")
    return InstallPlan(**values)


def plan_to_dict(plan: InstallPlan) -> dict[str, Any]:
    """The plan as plan-file data (round-trips through :func:`parse_plan`)."""
    out: dict[str, Any] = {}
    if plan.install_starters:
        out["install"] = list(plan.install_starters)
    if plan.imports:
        out["add"] = list(plan.imports)
    if plan.remove_starters:
        out["remove"] = list(plan.remove_starters)
        out["purge"] = plan.purge
    if plan.scan_dir is not None:
        out["scan_dir"] = str(plan.scan_dir)
    if plan.autoscan is not None:
        out["autoscan"] = plan.autoscan
    out["convert"] = plan.convert
    out["precision"] = plan.precision
    out["device"] = plan.device
    if plan.prediction_type is not None:
        out["prediction_type"] = plan.prediction_type
    if plan.allow_suspicious:
        out["allow_suspicious"] = list(plan.allow_suspicious)
    return out
