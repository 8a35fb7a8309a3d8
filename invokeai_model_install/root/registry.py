"""The registry of installed models: the root's ``configs/models.yaml``.

Two stanza kinds are understood (InvokeAI 2.3's formats)::

    arabian-nights-1.0:                      # legacy single file
      description: A great fine-tune
      weights: models/checkpoints/arabian-nights-1.0.ckpt
      config: configs/stable-diffusion/v1-inference.yaml
      format: ckpt
      vae: models/vae/vae-ft-mse.ckpt        # optional
      width: 512
      height: 512
      default: false

    arabian-nights-1.1:                      # diffusers
      description: An even better fine-tune
      repo_id: captahab/arabian-nights-1.1   # or path: models/sd/... (never models/diffusers)
      format: diffusers
      vae: {repo_id: stabilityai/sd-vae-ft-mse}   # or {path: ...}
      default: true

Paths are stored relative to the root when inside it (see
:meth:`RootLayout.relative`).  Fields we do not know, the order of keys, and
the comment block at the top of the file are kept.  Comments *between*
stanzas are not: we use plain PyYAML (already a dependency) rather than a
round-trip YAML library, and the header is the only place we write comments.

Every update goes through :meth:`Registry.transaction`: a file lock
(``models.yaml.lock``) so two processes never lose each other's update, a
re-read under the lock, and an atomic write that keeps the previous file as
``models.yaml.orig``.  A models.yaml that does not parse is never overwritten.
"""

from __future__ import annotations

import copy
import re
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import yaml

from invokeai_model_install.root.atomic import atomic_write_text
from invokeai_model_install.errors import ConfigError, NameClashError, RegistryLockedError, UnknownModelError

if TYPE_CHECKING:
    from invokeai_model_install.root.layout import RootLayout

#: models.yaml files whose lock this thread holds: a nested transaction would wait on itself.
_held = threading.local()

DEFAULT_HEADER = (
    "# InvokeAI models file: one stanza per installed model.\n"
    "# Managed by invokeai-model-install; hand edits are kept (comments only at the top of the file).\n"
    "# Relative paths are relative to the InvokeAI root directory.\n"
)

_NAME_BAD = re.compile(r"[^A-Za-z0-9._+&-]+")


# libyaml's C parser when PyYAML was built with it: about 5x faster on a large models.yaml.
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _UniqueKeyLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """A safe loader that refuses duplicate keys in the top-level mapping.

    PyYAML silently keeps the last of two equal keys; rewriting such a file
    would silently drop a model, so we refuse it and name the line instead.
    """


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    if node is not loader._top_node:  # type: ignore[attr-defined]
        return _BaseLoader.construct_mapping(loader, node, deep=deep)
    # Model names are taken as written: `yes:` stays "yes" and `1.50:` stays "1.50"
    # (YAML 1.1 would make them True and 1.5, and a rewrite would rename the model).
    data: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode):
            key = key_node.value
        else:
            key = loader.construct_object(key_node, deep=deep)
        if key in data:
            raise yaml.constructor.ConstructorError(None, None, f"model name {key!r} appears twice", key_node.start_mark)
        data[key] = loader.construct_object(value_node, deep=deep)
    return data


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def sanitize_name(text: str) -> str:
    """A model name safe as a YAML key and a folder name: letters, digits and ``. _ + & -``."""
    name = _NAME_BAD.sub("-", text.strip()).strip("-.")
    name = re.sub(r"-{2,}", "-", name)
    name = re.sub(r"\.{2,}", ".", name)  # never a ".." path segment when the name becomes a folder
    return name or "model"


def split_header(text: str) -> tuple[str, str]:
    """Split a file into its leading comment block (comments and blank lines) and the rest."""
    lines = text.splitlines(keepends=True)
    cut = 0
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            cut = i + 1
            continue
        break
    header = "".join(lines[:cut])
    return header, "".join(lines[cut:])


def is_model_stanza(name: Any, value: Any) -> bool:
    """Top-level entries that describe models: mappings whose name does not start with ``__``."""
    return isinstance(value, dict) and not str(name).startswith("__")


def stanza_paths(stanza: dict[str, Any]) -> list[tuple[str, str]]:
    """The local paths a stanza points at, as ``(field, stored path)``.

    ``weights`` and ``path`` of the model itself, and the VAE's path (a plain
    string in legacy stanzas, ``vae: {path: ...}`` in diffusers ones).
    """
    out: list[tuple[str, str]] = []
    for field in ("weights", "path"):
        value = stanza.get(field)
        if isinstance(value, str) and value:
            out.append((field, value))
    vae = stanza.get("vae")
    if isinstance(vae, str) and vae and not looks_like_repo_id(vae):
        out.append(("vae", vae))
    elif isinstance(vae, dict) and isinstance(vae.get("path"), str) and vae["path"]:
        out.append(("vae.path", vae["path"]))
    return out


def looks_like_repo_id(text: str) -> bool:
    """``owner/name`` with no file suffix and not an existing-looking path."""
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", text)) and not text.startswith(".") and not re.search(
        r"\.(ckpt|safetensors|pt|pth|bin)$", text
    )


def stanza_format(stanza: dict[str, Any]) -> str:
    """``diffusers`` or ``ckpt`` (a stanza without ``format`` is judged by its fields)."""
    fmt = stanza.get("format")
    if isinstance(fmt, str) and fmt:
        return fmt
    return "ckpt" if "weights" in stanza else "diffusers"


def _protected(path: Path, layout: "RootLayout") -> bool:
    """``models/``, the per-kind folders (``loras/``, ``embeddings/``, ``models/sd`` ...) and the top-level
    folders of ``models/`` are never deleted, even when a stanza points at them."""
    resolved = path.resolve()
    if any(resolved == folder.resolve() for folder in layout.folders()):
        return True
    models = layout.models_dir.resolve()
    # our own folders (.partial, .manifests), and shared folders of older InvokeAI layouts
    shared = {"hub", "ldm", "core", "diffusers", "lora", "embeddings", "converted_ckpts"}
    return resolved.parent == models and (resolved.name in shared or resolved.name.startswith("."))


def purge_model_files(
    layout: "RootLayout", removed: dict[str, Any], remaining: dict[str, dict[str, Any]]
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Delete the files of a removed stanza that lie inside the root's ``models/``.

    Call it after the stanza left models.yaml.  Returns ``(deleted, kept)``
    where ``kept`` pairs a path with why it was kept: outside ``models/``
    (after resolving ``..`` and symlinks), ``models/`` itself or one of its
    per-kind folders, still used by another model (``remaining``, e.g. a
    shared VAE), or already gone.
    """
    still_used: dict[Path, str] = {}
    for other_name, other in remaining.items():
        for _field, stored in stanza_paths(other):
            still_used.setdefault(layout.absolute(stored).resolve(), other_name)
    deleted: list[Path] = []
    kept: list[tuple[Path, str]] = []
    for _field, stored in stanza_paths(removed):
        path = layout.absolute(stored)
        if not layout.is_inside_models(path):
            kept.append((path, f"outside {layout.models_dir}"))
            continue
        if _protected(path, layout):
            kept.append((path, "a top-level models folder"))
            continue
        user = still_used.get(path.resolve())
        if user is not None:
            kept.append((path, f"still used by {user}"))
            continue
        if not path.exists() and not path.is_symlink():
            kept.append((path, "already gone"))
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        deleted.append(path)
    return deleted, kept


class ModelsDocument:
    """A mutable view of models.yaml, valid inside :meth:`Registry.transaction`.

    ``stanzas`` maps model names to their stanza dicts (in file order); edit
    them in place or through the methods.  Non-model top-level entries (e.g.
    ``__metadata__``) are kept aside and written back first.
    """

    def __init__(self, header: str, stanzas: dict[str, dict[str, Any]], extras: dict[str, Any] | None = None) -> None:
        self.header = header
        self.stanzas = stanzas
        self.extras = extras or {}

    def get(self, name: str) -> dict[str, Any] | None:
        """The stanza (mutable) or None."""
        return self.stanzas.get(name)

    def require(self, name: str, source: str = "models.yaml") -> dict[str, Any]:
        """The stanza, or :class:`UnknownModelError` naming it."""
        if name not in self.stanzas:
            raise UnknownModelError(f"no model named {name!r} in {source}")
        return self.stanzas[name]

    def add(self, name: str, stanza: dict[str, Any]) -> None:
        """Add a stanza; :class:`NameClashError` when the name is taken.

        A stanza with ``default: true`` becomes the only default.
        """
        if not isinstance(name, str) or not name.strip():
            raise NameClashError(f"model name {name!r} is empty", "give the model a name")
        if name in self.stanzas or name in self.extras:
            raise NameClashError(f"a model named {name!r} is already installed")
        self.stanzas[name] = dict(stanza)
        if stanza.get("default") is True:
            self.set_default(name)

    def remove(self, name: str) -> dict[str, Any]:
        """Drop a stanza and return it; :class:`UnknownModelError` when absent."""
        self.require(name)
        return self.stanzas.pop(name)

    def rename(self, old: str, new: str) -> None:
        """Give a stanza a new name, keeping its place in the file."""
        self.require(old)
        if new == old:
            return
        if new in self.stanzas or new in self.extras:
            raise NameClashError(f"a model named {new!r} is already installed")
        self.stanzas = {(new if key == old else key): value for key, value in self.stanzas.items()}

    def set_default(self, name: str) -> None:
        """Make ``name`` the one model with ``default: true``."""
        self.require(name)
        for key, stanza in self.stanzas.items():
            if key == name:
                stanza["default"] = True
            elif stanza.get("default"):
                stanza["default"] = False

    def unique_name(self, base: str) -> str:
        """``base`` sanitized, or ``base-2``, ``base-3`` ... whichever is free."""
        base = sanitize_name(base)
        taken = set(self.stanzas) | set(self.extras)
        if base not in taken:
            return base
        n = 2
        while f"{base}-{n}" in taken:
            n += 1
        return f"{base}-{n}"

    def render(self) -> str:
        """The file text: header, then one block per entry separated by blank lines."""
        header = self.header
        if header and not header.endswith("\n"):
            header += "\n"
        blocks = []
        for key, value in list(self.extras.items()) + list(self.stanzas.items()):
            blocks.append(
                yaml.dump(
                    {key: value}, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=4096
                )
            )
        return header + "\n".join(blocks)


class Registry:
    """models.yaml at ``path``; ``lock_timeout`` seconds to wait for another writer."""

    def __init__(self, path: str | Path, lock_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    @property
    def orig_path(self) -> Path:
        """Where the previous version is kept after each write."""
        return self.path.with_name(self.path.name + ".orig")

    # --- reading ---------------------------------------------------------------------

    def _read(self) -> tuple[str, str, ModelsDocument]:
        """(raw text, header, document); a missing file is an empty document."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return "", "", ModelsDocument(DEFAULT_HEADER, {})
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{self.path} is not UTF-8 text ({exc.reason} at byte {exc.start})",
                "fix or restore the file; it was not changed, and the previous version may be in models.yaml.orig",
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}: {exc.strerror}", "check the file's permissions") from None
        header, _ = split_header(text)
        data = self._parse(text)
        stanzas: dict[str, dict[str, Any]] = {}
        extras: dict[str, Any] = {}
        for key, value in data.items():
            if is_model_stanza(key, value):
                stanzas[str(key)] = value
            else:
                extras[str(key)] = value
        return text, header, ModelsDocument(header, stanzas, extras)

    def _parse(self, text: str) -> dict[Any, Any]:
        loader = _UniqueKeyLoader(text)
        try:
            node = loader.get_single_node()
            loader._top_node = node  # type: ignore[attr-defined]
            data = loader.construct_document(node) if node is not None else None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(
                f"{self.path}{where}: {problem}",
                "fix the YAML at that line; the file was not changed, and the previous version may be in models.yaml.orig",
            ) from None
        finally:
            loader.dispose()
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ConfigError(
                f"{self.path} line 1: the top level must be a mapping of model names to stanzas",
                "fix the file; it was not changed",
            )
        return data

    def load(self) -> dict[str, dict[str, Any]]:
        """A read-only snapshot (deep copy) of the model stanzas, in file order."""
        _, _, doc = self._read()
        return copy.deepcopy(doc.stanzas)

    def names(self) -> list[str]:
        """Installed model names, in file order."""
        return list(self.load())

    def get(self, name: str) -> dict[str, Any]:
        """One stanza (a copy); :class:`UnknownModelError` naming it when absent."""
        stanzas = self.load()
        if name not in stanzas:
            raise UnknownModelError(f"no model named {name!r} in {self.path}")
        return stanzas[name]

    def default_name(self) -> str | None:
        """The model with ``default: true``, if any."""
        for name, stanza in self.load().items():
            if stanza.get("default") is True:
                return name
        return None

    # --- writing ---------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[ModelsDocument]:
        """Lock, re-read, yield a mutable document, write it atomically on a clean exit.

        An exception inside the block writes nothing.  Raises
        :class:`RegistryLockedError` when the lock is not free within
        ``lock_timeout`` seconds, :class:`ConfigError` when the file does not parse.
        """
        from filelock import FileLock, Timeout  # small; imported here to keep import time low

        held: set[str] = getattr(_held, "paths", None) or set()
        _held.paths = held
        key = str(self.path.absolute())
        if key in held:
            # flock() from a second descriptor blocks even in the same process: fail now, not after the timeout
            raise RuntimeError(f"nested models.yaml transaction on {self.path} (programming error)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.lock_path), timeout=self.lock_timeout)
        try:
            lock.acquire()
        except Timeout:
            raise RegistryLockedError(
                f"{self.path} is locked by another process (lock file {self.lock_path}, waited {self.lock_timeout:g} s)"
            ) from None
        held.add(key)
        try:
            text, _header, doc = self._read()
            # Compare renderings, not text: a hand-written file (flow style, other spacing)
            # is only rewritten when its content actually changed.
            before = doc.render() if text else None
            yield doc
            new_text = doc.render()
            if new_text != before:
                atomic_write_text(self.path, new_text, backup=self.orig_path if text else None)
        finally:
            held.discard(key)
            lock.release()

    def ensure_exists(self) -> None:
        """Create an empty models.yaml with the header comment when there is none."""
        if self.path.exists():
            return
        with self.transaction():
            pass  # a missing file reads as an empty document with the default header, then is written
