"""The starter catalogue: ``configs/INITIAL_MODELS.yaml`` read into frozen values.

Loading validates every entry and collects *all* problems before raising one
:class:`ConfigError` (like pypa/installer does for wheels): a user fixing a
hand-made catalogue sees every mistake at once, each naming the entry and the
field.  The message is one line per problem joined with ``; `` so that
``err.one_line()`` stays printable on one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invokeai_model_install.errors import ConfigError
from invokeai_model_install.root.yamlfile import read_yaml_file

FORMATS: tuple[str, ...] = ("diffusers", "ckpt")

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

_FIELDS = {
    "description",
    "repo_id",
    "format",
    "vae",
    "recommended",
    "default",
    "size",
    "license",
    "fallback_repo_ids",
    "sha256",
    "file",
    "requires",
}

#: ``requires:`` values: what an entry needs to run.  Anything without it runs in InvokeAI 2.3.
_REQUIRES = re.compile(r"^invokeai\s*>=\s*(\d+)(?:\.\d+)*$")
_VAE_FIELDS = {"repo_id", "path", "subfolder"}


@dataclass(frozen=True)
class VaeRef:
    """A VAE to use instead of the model's own: a hub repo or a local path (exactly one)."""

    repo_id: str | None = None
    path: str | None = None
    subfolder: str | None = None


@dataclass(frozen=True)
class StarterModel:
    """One starter model of the catalogue.

    ``size`` is the download size in bytes (0: unknown); ``file`` names the file
    inside the repo for single-file (``ckpt``) starters; ``fallback_repo_ids``
    are tried in order when ``repo_id`` is gone from the hub.
    """

    key: str
    description: str
    repo_id: str
    format: str = "diffusers"
    vae: VaeRef | None = None
    recommended: bool = False
    default: bool = False
    size: int = 0
    license: str | None = None
    fallback_repo_ids: tuple[str, ...] = ()
    sha256: str | None = None
    file: str | None = None
    requires: str | None = None

    @property
    def runs_in_invokeai23(self) -> bool:
        """False when ``requires`` names an InvokeAI newer than 2.3 (e.g. ``invokeai>=3`` for SDXL)."""
        if not self.requires:
            return True
        m = _REQUIRES.match(self.requires)
        return m is None or int(m.group(1)) < 3 or self.requires.replace(" ", "") in ("invokeai>=2", "invokeai>=2.3")

    @property
    def runs_in(self) -> tuple[str, ...]:
        """Where it runs, for display: ``("InvokeAI 2.3", ...)`` or ``("InvokeAI 3+", "ComfyUI")``."""
        if self.runs_in_invokeai23:
            return ("InvokeAI 2.3", "InvokeAI 3+", "ComfyUI")
        return ("InvokeAI 3+", "ComfyUI")

    @property
    def repo_ids(self) -> tuple[str, ...]:
        """``repo_id`` then the fallbacks: the order in which to try them."""
        return (self.repo_id, *self.fallback_repo_ids)


def load_catalog(path: str | Path | None = None) -> dict[str, StarterModel]:
    """Read and validate a catalogue; default: the packaged ``INITIAL_MODELS.yaml``.

    Returns the entries keyed by name, in file order.  Raises :class:`ConfigError`
    naming the file, and every entry and field that is wrong.
    """
    if path is None:
        from invokeai_model_install.root.resources import initial_models_path

        path = initial_models_path()
    path = Path(path)
    data = read_yaml_file(path, "starter catalogue", "--catalog")
    return parse_catalog(data, source=str(path))


def parse_catalog(data: Any, source: str = "<catalogue>") -> dict[str, StarterModel]:
    """Validate already-parsed YAML data (a mapping of name -> entry)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"starter catalogue {source}: the top level must be a mapping of model names to entries",
            "see configs/INITIAL_MODELS.yaml for the format",
        )
    problems: list[str] = []
    models: dict[str, StarterModel] = {}
    for key, entry in data.items():
        model = _parse_entry(key, entry, problems)
        if model is not None:
            models[str(key)] = model
    defaults = [m.key for m in models.values() if m.default]
    if len(defaults) > 1:
        problems.append(f"field 'default' is true in {len(defaults)} entries ({', '.join(defaults)}); at most one")
    if problems:
        raise ConfigError(
            f"starter catalogue {source} is invalid: " + "; ".join(problems),
            "fix those entries and try again",
        )
    return models


def _parse_entry(key: Any, entry: Any, problems: list[str]) -> StarterModel | None:
    """Validate one entry, appending every problem found; None when it has any."""
    before = len(problems)

    def bad(field: str, why: str) -> None:
        problems.append(f"entry {key!r} field {field!r}: {why}")

    if not isinstance(key, str) or not key.strip():
        problems.append(f"entry {key!r}: the name must be a non-empty string")
        return None
    if not isinstance(entry, dict):
        problems.append(f"entry {key!r}: must be a mapping of fields, got {type(entry).__name__}")
        return None

    for unknown in sorted(set(map(str, entry)) - _FIELDS):
        bad(unknown, "unknown field (typo?)")

    description = entry.get("description")
    if not isinstance(description, str) or not description.strip():
        bad("description", "required, a non-empty string")

    repo_id = entry.get("repo_id")
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id):
        bad("repo_id", f"required, a HuggingFace repo id like owner/name, got {repo_id!r}")

    fallbacks_raw = entry.get("fallback_repo_ids", [])
    if isinstance(fallbacks_raw, str):
        fallbacks_raw = [fallbacks_raw]
    fallbacks: list[str] = []
    if not isinstance(fallbacks_raw, list):
        bad("fallback_repo_ids", "must be a list of repo ids")
    else:
        for item in fallbacks_raw:
            if isinstance(item, str) and _REPO_ID.match(item):
                fallbacks.append(item)
            else:
                bad("fallback_repo_ids", f"{item!r} is not a repo id like owner/name")

    fmt = entry.get("format", "diffusers")
    if fmt not in FORMATS:
        bad("format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")

    file = entry.get("file")
    if file is not None and (not isinstance(file, str) or not file.strip() or file.startswith("/") or ".." in file.split("/")):
        bad("file", f"must be a relative path inside the repo, got {file!r}")
    if fmt == "ckpt" and not file:
        bad("file", "required for format: ckpt (the checkpoint file inside the repo)")

    sha256 = entry.get("sha256")
    if sha256 is not None:
        if not isinstance(sha256, str) or not _SHA256.match(sha256.lower()):
            bad("sha256", "must be 64 hex digits")
        else:
            sha256 = sha256.lower()

    vae = _parse_vae(entry.get("vae"), bad)

    flags: dict[str, bool] = {}
    for name in ("recommended", "default"):
        value = entry.get(name, False)
        if not isinstance(value, bool):
            bad(name, f"must be true or false, got {value!r}")
            value = False
        flags[name] = value

    size = entry.get("size", 0)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        bad("size", f"must be a whole number of bytes >= 0, got {size!r}")

    requires = entry.get("requires")
    if requires is not None and (not isinstance(requires, str) or not _REQUIRES.match(requires.strip())):
        bad("requires", f"must look like 'invokeai>=3', got {requires!r}")

    license_url = entry.get("license")
    if license_url is not None and (not isinstance(license_url, str) or not license_url.strip()):
        bad("license", "must be a URL string")

    if len(problems) > before:
        return None
    return StarterModel(
        key=key,
        description=description.strip(),
        repo_id=repo_id,
        format=fmt,
        vae=vae,
        recommended=flags["recommended"],
        default=flags["default"],
        size=size,
        license=license_url,
        fallback_repo_ids=tuple(fallbacks),
        sha256=sha256,
        file=file,
        requires=requires.strip() if isinstance(requires, str) else None,
    )


def _parse_vae(raw: Any, bad) -> VaeRef | None:
    """``vae:`` is absent, ``{repo_id: ...}`` or ``{path: ...}``, with an optional ``subfolder``."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        bad("vae", "must be a mapping with repo_id or path")
        return None
    for unknown in sorted(set(map(str, raw)) - _VAE_FIELDS):
        bad(f"vae.{unknown}", "unknown field")
    repo_id, path, subfolder = raw.get("repo_id"), raw.get("path"), raw.get("subfolder")
    if (repo_id is None) == (path is None):
        bad("vae", "give exactly one of repo_id or path")
        return None
    if repo_id is not None and (not isinstance(repo_id, str) or not _REPO_ID.match(repo_id)):
        bad("vae.repo_id", f"must be a repo id like owner/name, got {repo_id!r}")
        return None
    if path is not None and (not isinstance(path, str) or not path.strip()):
        bad("vae.path", "must be a non-empty path")
        return None
    if subfolder is not None and not isinstance(subfolder, str):
        bad("vae.subfolder", "must be a string")
        return None
    return VaeRef(repo_id=repo_id, path=path, subfolder=subfolder)


def recommended_keys(catalog: dict[str, StarterModel]) -> list[str]:
    """Keys of the recommended starters that run in an InvokeAI 2.3 root, in catalogue order."""
    return [key for key, model in catalog.items() if model.recommended and model.runs_in_invokeai23]


def support_models(catalog: dict[str, StarterModel]) -> list[VaeRef]:
    """The shared VAEs the catalogue references from a hub repo ("support models"), deduplicated."""
    seen: dict[tuple[str | None, str | None], VaeRef] = {}
    for model in catalog.values():
        if model.vae is not None and model.vae.repo_id:
            seen.setdefault((model.vae.repo_id, model.vae.subfolder), model.vae)
    return list(seen.values())
