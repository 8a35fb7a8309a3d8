"""What the network layer is told (:class:`DownloadSettings`) and the values it passes around.

:class:`RemoteFile` (one file to fetch), :class:`Resolved` (what a source turned into) and
:class:`DownloadResult` (what a download produced) live here, below the engine, the hub lister and
the token rules, so none of those has to import another to name them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class DownloadSettings:
    """Everything the engine needs to know about the network; build it with :meth:`from_env`.

    ``url_tokens`` maps host patterns to tokens (see :mod:`tokens`): ``CIVITAI_API_TOKEN`` gives
    ``(host, token)`` for each of civitai's hosts (``sources.CIVITAI_HOSTS``); ``INVOKEAI_URL_TOKENS="host.example=TOKEN,*.cdn.example:8443=TOKEN2"`` adds
    more (comma or whitespace separated ``pattern=token`` pairs).  Tokens never appear in ``repr``.
    """

    hf_endpoint: str = "https://huggingface.co"
    hf_token: str | None = field(default=None, repr=False)
    offline: bool = False
    max_connections: int = 8
    url_tokens: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    retries: int = 5
    backoff: float = 0.5
    backoff_max: float = 30.0
    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    #: files at least this large are split into ranges fetched on several connections
    split_size: int = 4 << 20
    #: free-space probe ``(path) -> bytes`` (tests pass a fake); None: ``shutil.disk_usage``
    disk_free: Callable[[Path], int] | None = field(default=None, repr=False, compare=False)
    #: how often the sidecar is saved while a file is in flight (seconds)
    sidecar_interval: float = 0.5
    #: proxies by URL scheme (``("http", "http://proxy:3128")``, ``("https", ...)``), from HTTP(S)_PROXY/ALL_PROXY
    proxies: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    #: hosts reached directly (NO_PROXY: comma-separated names, ``.domain`` suffixes, ``*`` for all)
    no_proxy: str = ""
    #: a CA bundle replacing the system's (REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE / SSL_CERT_FILE)
    ca_bundle: str | None = None
    #: plain-http bodies go socket -> file with splice(2) where the platform has it (INVOKEAI_ZERO_COPY=0: never)
    zero_copy: bool = True
    #: connections a split file starts with; more are added while they raise the rate (net/ramp.py), up to
    #: ``max_connections``.  None: all of them over https (CDNs cap each connection and let the first
    #: second of each through uncapped: parallel from the first byte pays), one over plain http (a LAN
    #: mirror or this machine, where one connection fills the link).  INVOKEAI_START_CONNECTIONS sets it.
    start_connections: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "DownloadSettings":
        """Settings from the environment, read now (not at import time).

        ``HF_ENDPOINT``, ``HF_TOKEN`` (else the huggingface_hub token store), ``HF_HUB_OFFLINE``,
        ``INVOKEAI_MAX_CONNECTIONS``, ``CIVITAI_API_TOKEN``, ``INVOKEAI_URL_TOKENS``,
        ``INVOKEAI_DOWNLOAD_RETRIES``, ``INVOKEAI_DOWNLOAD_TIMEOUT`` (read timeout, seconds), ``INVOKEAI_ZERO_COPY``, ``INVOKEAI_START_CONNECTIONS``,
        ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY`` (either case), and a CA bundle from
        ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``/``SSL_CERT_FILE``.
        """
        env = os.environ if environ is None else environ
        endpoint = (env.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
        token = env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN") or _stored_hf_token(env)
        url_tokens: list[tuple[str, str]] = []
        if env.get("CIVITAI_API_TOKEN"):
            from invokeai_model_install.net.sources import CIVITAI_HOSTS

            url_tokens += [(host, env["CIVITAI_API_TOKEN"].strip()) for host in CIVITAI_HOSTS]
        for pair in re.split(r"[,\s]+", env.get("INVOKEAI_URL_TOKENS", "").strip()):
            if "=" in pair:
                pattern, _, tok = pair.partition("=")
                if pattern and tok:
                    url_tokens.append((pattern.strip(), tok.strip()))
        values: dict = dict(
            proxies=proxies_from_env(env),
            no_proxy=_env_either(env, "no_proxy"),
            ca_bundle=_env_either(env, "requests_ca_bundle") or _env_either(env, "curl_ca_bundle")
            or _env_either(env, "ssl_cert_file") or None,
            hf_endpoint=endpoint,
            hf_token=token or None,
            offline=env.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE,
            max_connections=_int(env.get("INVOKEAI_MAX_CONNECTIONS"), 8, 1, 64),
            url_tokens=tuple(url_tokens),
            retries=_int(env.get("INVOKEAI_DOWNLOAD_RETRIES"), 5, 0, 100),
            read_timeout=float(_int(env.get("INVOKEAI_DOWNLOAD_TIMEOUT"), 60, 1, 3600)),
            zero_copy=env.get("INVOKEAI_ZERO_COPY", "1").strip().lower() not in ("0", "false", "no", "off"),
            start_connections=_int(env.get("INVOKEAI_START_CONNECTIONS"), 0, 0, 64) or None,
        )
        values.update(overrides)
        return cls(**values)


def _env_either(env: Mapping[str, str], name: str) -> str:
    """``name`` in lower case, else upper case (curl and requests prefer the lower-case spelling)."""
    return (env.get(name.lower()) or env.get(name.upper()) or "").strip()


def proxies_from_env(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """``(scheme, proxy URL)`` pairs from ``http_proxy``/``https_proxy``/``all_proxy`` (either case)."""
    out = []
    fallback = _env_either(env, "all_proxy")
    for scheme in ("http", "https"):
        value = _env_either(env, f"{scheme}_proxy") or fallback
        if value:
            out.append((scheme, value if "://" in value else f"http://{value}"))
    return tuple(out)


def _int(text: str | None, default: int, lo: int, hi: int) -> int:
    try:
        return max(lo, min(hi, int(str(text).strip())))
    except (TypeError, ValueError):
        return default


def _stored_hf_token(env: Mapping[str, str]) -> str | None:
    """The token saved by ``huggingface-cli login``: the file huggingface_hub's ``get_token`` reads.

    Read directly (``HF_TOKEN_PATH``, else ``$HF_HOME/token``, else ``~/.cache/huggingface/token``):
    importing huggingface_hub for it cost ~0.1 s of every start, even for plans that never reach the hub.
    """
    path = env.get("HF_TOKEN_PATH") or os.path.join(
        env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"), "token"
    )
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: where from, where to (``relpath`` inside the destination), what to expect.

    ``size`` is -1 when unknown; ``sha256`` None when no hash is known (then only the size is checked);
    ``git_oid``: the hub's git blob id of a small (non-LFS) file, verified too when given.
    """

    url: str
    relpath: str
    size: int
    sha256: str | None = None
    git_oid: str | None = field(default=None, kw_only=True)
    etag: str | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class Resolved:
    """What a source turned into: files to fetch, the pinned hub commit, a label, and a kind hint."""

    files: tuple[RemoteFile, ...]
    commit: str | None = None
    label: str = ""
    kind_hint: str | None = None
    total_size: int = 0
    repo_id: str | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class DownloadResult:
    """Paths of the verified files by relpath, bytes transferred in this run, and their sha256.

    ``spliced_bytes``: of ``fetched_bytes``, those that went socket -> file with ``splice(2)``.
    """

    paths: dict[str, Path]
    fetched_bytes: int
    sha256: dict[str, str]
    spliced_bytes: int = 0
