"""What the user asked to install: one line of the import box -> a :class:`Source`.

A source is frozen data; nothing here touches the network.  Kinds:

- :class:`HubSource` - a HuggingFace repo (``owner/name``, ``owner/name:subfolder``, ``owner/name@rev``,
  or a hub URL ``https://<hub>/{repo}[/blob|resolve/{rev}/{path}]``; ``<hub>`` is huggingface.co, hf.co or the
  host of ``HF_ENDPOINT``);
- :class:`UrlSource` - a plain http(s) URL of a model file (``#sha256=HEX`` names its hash);
- :class:`LocalFileSource`, :class:`LocalDiffusersSource`, :class:`LocalFolderSource` - things on disk.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Union

from invokeai_model_install.errors import SourceError
from invokeai_model_install.formats.files import MODEL_SUFFIXES, model_paths

_REPO_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_REPO_RE = re.compile(rf"^(?P<repo>{_REPO_PART}/{_REPO_PART})(?P<rest>([:@][^\s:@]+){{0,2}})$")
_HUB_HOSTS = ("huggingface.co", "www.huggingface.co", "hf.co")
_SHA_RE = re.compile(r"^[0-9a-fA-F]{64}$")
#: civitai's hosts: the site serves the same API under each name.  The one definition: tokens
#: (``CIVITAI_API_TOKEN``), login hints and model names (from Content-Disposition) all use it.
CIVITAI_HOSTS = ("civitai.com", "civitai.green", "civitai.red")


# one definition of what a credential in a URL is (labels, errors, manifests all use it)
from invokeai_model_install.redact import redact_text, redact_url  # noqa: E402,F401


@dataclass(frozen=True)
class HubSource:
    """A HuggingFace repo, optionally a subfolder, a revision, or one file in it."""

    repo_id: str
    subfolder: str | None = None
    revision: str | None = None
    path_in_repo: str | None = None

    @property
    def label(self) -> str:
        text = self.repo_id
        if self.path_in_repo:
            text += f"/{self.path_in_repo}"
        elif self.subfolder:
            text += f":{self.subfolder}"
        if self.revision:
            text += f"@{self.revision}"
        return text


@dataclass(frozen=True)
class UrlSource:
    """A plain http(s) URL of one model file; ``sha256`` when the line named one (``#sha256=HEX``)."""

    url: str
    sha256: str | None = None

    @property
    def label(self) -> str:
        return redact_url(self.url)


@dataclass(frozen=True)
class LocalFileSource:
    """A model file on disk."""

    path: Path

    @property
    def label(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class LocalDiffusersSource:
    """A diffusers folder on disk (``model_index.json``, or ``config.json`` for one component)."""

    path: Path

    @property
    def label(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class LocalFolderSource:
    """Any other folder: scanned with :func:`expand_folder`."""

    path: Path

    @property
    def label(self) -> str:
        return str(self.path)


Source = Union[HubSource, UrlSource, LocalFileSource, LocalDiffusersSource, LocalFolderSource]


def _hub_hosts(environ: Mapping[str, str] | None) -> set[str]:
    env = os.environ if environ is None else environ
    hosts = set(_HUB_HOSTS)
    endpoint = env.get("HF_ENDPOINT")
    if endpoint:
        parsed = urllib.parse.urlsplit(endpoint)
        if parsed.netloc:
            hosts.add(parsed.netloc.lower())
    return hosts


def _hub_from_url(line: str, parsed: urllib.parse.SplitResult) -> HubSource:
    parts = [urllib.parse.unquote(p) for p in parsed.path.split("/") if p]
    if parts and parts[0] == "models":  # https://huggingface.co/models/owner/name is not a thing, but api-ish paths are
        parts = parts[1:]
    if len(parts) == 2:
        return HubSource(repo_id="/".join(parts))
    if len(parts) >= 5 and parts[2] in ("blob", "resolve"):
        return HubSource(repo_id="/".join(parts[:2]), revision=parts[3], path_in_repo="/".join(parts[4:]))
    if len(parts) >= 4 and parts[2] == "tree":
        sub = "/".join(parts[4:]) or None
        return HubSource(repo_id="/".join(parts[:2]), revision=parts[3], subfolder=sub)
    raise SourceError(f"{line!r} is a hub URL but not of a repo or a file in it", "use https://huggingface.co/owner/name or .../owner/name/blob/main/file.safetensors")


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", "./", "../", "~", ".\\")) or (len(text) > 2 and text[1] == ":" and text[2] in "\\/")


def parse_source(line: str, *, environ: Mapping[str, str] | None = None) -> Source:
    """One item of the import box -> a :class:`Source`, or :class:`SourceError` naming the line.

    :param environ: where ``HF_ENDPOINT`` is read (default ``os.environ``, read at call time), so a mirror's
        URLs count as hub URLs.
    """
    text = line.strip()
    if not text:
        raise SourceError("empty line: nothing to install")
    if re.match(r"(?i)^https?://", text):
        parsed = urllib.parse.urlsplit(text)
        if not parsed.hostname:
            raise SourceError(f"{redact_url(text)!r} is not a valid URL")
        if parsed.netloc.lower() in _hub_hosts(environ) or (parsed.hostname or "").lower() in _HUB_HOSTS:
            return _hub_from_url(text, parsed)
        sha256 = None
        if parsed.fragment:
            m = re.match(r"(?i)^sha256=([0-9a-f]+)$", parsed.fragment)
            if not m or not _SHA_RE.match(m.group(1)):
                raise SourceError(f"{redact_url(text)!r}: the #fragment must be sha256=<64 hex digits>")
            sha256 = m.group(1).lower()
        url = urllib.parse.urlunsplit(parsed._replace(fragment=""))
        name = urllib.parse.unquote(parsed.path.rsplit("/", 1)[-1])
        suffix = os.path.splitext(name)[1].lower()
        if suffix and suffix not in MODEL_SUFFIXES:
            raise SourceError(
                f"{redact_url(text)!r} does not point to a model file ({suffix})",
                "give a URL of a .ckpt, .safetensors, .pt, .pth or .bin file",
            )
        return UrlSource(url=url, sha256=sha256)
    if re.match(r"(?i)^[a-z][a-z0-9+.-]*://", text):
        raise SourceError(f"{redact_text(text)!r}: only http:// and https:// URLs can be downloaded")
    path = Path(os.path.expanduser(text))
    if path.exists():
        return _local(path, text)
    if _looks_like_path(text) or text.lower().endswith(MODEL_SUFFIXES):
        raise SourceError(f"{text!r}: no such file or folder", "check the path")
    m = _REPO_RE.match(text)
    if m:
        subfolder = revision = None
        for piece in re.findall(r"[:@][^:@]+", m.group("rest")):
            if piece[0] == ":" and subfolder is None:
                subfolder = piece[1:].strip("/")
            elif piece[0] == "@" and revision is None:
                revision = piece[1:]
            else:
                raise SourceError(f"{text!r}: give at most one :subfolder and one @revision")
        return HubSource(repo_id=m.group("repo"), subfolder=subfolder or None, revision=revision)
    raise SourceError(f"{redact_text(text)!r} is not a URL, a HuggingFace repo id (owner/name), or an existing file or folder")


def _local(path: Path, text: str) -> Source:
    path = path.resolve()
    if path.is_file():
        if path.suffix.lower() not in MODEL_SUFFIXES:
            raise SourceError(f"{text!r} is not a model file ({path.suffix or 'no suffix'})", "give a .ckpt, .safetensors, .pt, .pth or .bin file")
        return LocalFileSource(path=path)
    if (path / "model_index.json").is_file() or (path / "config.json").is_file():
        return LocalDiffusersSource(path=path)
    return LocalFolderSource(path=path)


def parse_import_text(text: str, *, environ: Mapping[str, str] | None = None) -> tuple[list[Source], list[SourceError]]:
    """Every item of the import box: whitespace-separated items per line; blank lines and ``#`` comments ignored.

    A line that is, as a whole, an existing path is taken as one item (paths with spaces).  A ``#`` starts a
    comment only at the start of an item, so ``URL#sha256=...`` keeps its hash.
    """
    found: list[Source] = []
    errors: list[SourceError] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        items: list[str]
        if " " in line and Path(os.path.expanduser(line)).exists():
            items = [line]
        else:
            items = []
            for item in line.split():
                if item.startswith("#"):
                    break
                items.append(item)
        for item in items:
            try:
                found.append(parse_source(item, environ=environ))
            except SourceError as err:
                errors.append(err)
    return found, errors


def expand_folder(path: str | os.PathLike) -> list[LocalFileSource | LocalDiffusersSource]:
    """Model files and diffusers folders under ``path``, recursively, sorted.

    Diffusers folders are not descended into; hidden folders (like ``.partial``) are skipped; companion
    files (``X.vae.pt`` next to ``X.ckpt``; ``X.yaml`` is never a model) are not models of their own.
    """
    root = Path(os.path.expanduser(str(path))).resolve()
    out = [LocalDiffusersSource(path=p) if p.is_dir() else LocalFileSource(path=p) for p in model_paths(root)]
    return sorted(out, key=lambda s: str(s.path))


def is_civitai_host(host: str | None) -> bool:
    """True for civitai's hosts (:data:`CIVITAI_HOSTS`) and their subdomains; not for look-alikes."""
    host = (host or "").lower().rstrip(".")
    return any(host == h or host.endswith("." + h) for h in CIVITAI_HOSTS)


def is_civitai_url(url: str) -> bool:
    return is_civitai_host(urllib.parse.urlsplit(url).hostname)


def url_names_its_file(url: str) -> bool:
    """False when the URL's path does not end in a model file name (civitai's ``/api/download/models/ID``):
    the file's name then comes from the server (Content-Disposition), and the model is named after it."""
    if is_civitai_url(url):
        return False
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    return path.lower().endswith(MODEL_SUFFIXES)
