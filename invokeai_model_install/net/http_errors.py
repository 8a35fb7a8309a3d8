"""THE one place that maps HTTP answers to our errors.

- :func:`error_for_status` - a status code (plus the hub's ``X-Error-Code``) -> an :class:`InstallerError`;
- :func:`is_retryable` / :func:`retry_after` - which answers are worth another try, and when;
- :func:`sniff_not_a_model` - an HTML/JSON/text body where model weights were expected (a login page);
- :func:`from_hf_exception` - huggingface_hub's exceptions (metadata calls) -> our errors;
- :func:`from_network_error` - socket/connection failures -> :class:`DownloadError`.

Every message names the URL or repo (with tokens redacted); every hint says what to do.
"""

from __future__ import annotations

import email.utils
import time
import urllib.parse
from typing import Mapping

from invokeai_model_install.errors import (
    AuthError,
    DownloadError,
    InstallerError,
    NotAModelError,
    NotFoundError,
    OfflineError,
)
from invokeai_model_install.formats.files import MODEL_SUFFIXES
from invokeai_model_install.net.sources import is_civitai_host, redact_url
from invokeai_model_install.net.tokens import same_host

RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
_TEXT_TYPES = ("text/html", "application/json", "text/plain", "application/xml", "text/xml", "application/problem+json")


def _host(url: str) -> str:
    return (urllib.parse.urlsplit(url).hostname or "").lower()


def token_hint(url: str, hub_endpoint: str | None = None) -> str:
    """What to do about missing/wrong credentials for ``url``'s host."""
    host = _host(url)
    if (hub_endpoint and same_host(url, hub_endpoint)) or host.endswith(("huggingface.co", "hf.co")):
        return "log in with `huggingface-cli login` (or set HF_TOKEN) and accept the model's license on its page"
    if is_civitai_host(host):
        return f"set CIVITAI_API_TOKEN to an API key from {host} (Account settings > API keys)"
    return "if the site needs a login, set INVOKEAI_URL_TOKENS='host=token' for it"


def is_retryable(status: int) -> bool:
    """429 and transient server errors are retried with backoff."""
    return status in RETRYABLE


def retry_after(headers: Mapping[str, str] | None, default: float) -> float:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), else ``default``."""
    if not headers:
        return default
    value = None
    for key, v in headers.items():
        if key.lower() == "retry-after":
            value = v
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return default


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


def _repo_of(url: str) -> str | None:
    """``owner/name`` from a hub file URL (``/{owner}/{name}/resolve/...``)."""
    parts = urllib.parse.urlsplit(url).path.split("/")
    if len(parts) > 4 and parts[3] == "resolve":
        return f"{parts[1]}/{parts[2]}"
    return None


def error_for_status(
    status: int,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    what: str | None = None,
    hub_endpoint: str | None = None,
    repo_id: str | None = None,
) -> InstallerError:
    """The error for a non-success answer to a request for ``url`` (``what``: a label for the message)."""
    shown = redact_url(url)
    subject = what or shown
    code = _header(headers, "X-Error-Code")
    if code == "GatedRepo" or (repo_id and status in (401, 403) and code is None):
        repo_id = repo_id or _repo_of(url)
        page = f"{(hub_endpoint or 'https://huggingface.co').rstrip('/')}/{repo_id}" if repo_id else shown
        return AuthError(
            f"{subject} is gated: accept its license at {page} before downloading (HTTP {status})",
            f"accept the license at {page} while logged in, then log in here with `huggingface-cli login` or set HF_TOKEN",
        )
    if code == "RepoNotFound":
        return NotFoundError(
            f"{subject}: repository not found (HTTP {status})",
            "check the repo id; if it is private, log in with `huggingface-cli login` or set HF_TOKEN",
        )
    if code == "RevisionNotFound":
        return NotFoundError(f"{subject}: revision not found (HTTP {status})", "check the @revision (branch, tag or commit)")
    if code == "EntryNotFound" or status in (404, 410):
        return NotFoundError(f"{subject}: not found (HTTP {status}) at {shown}")
    if status in (401, 403):
        return AuthError(f"{subject}: access denied (HTTP {status}) at {shown}", token_hint(url, hub_endpoint))
    if status == 416:
        return DownloadError(f"{subject}: the server refused the byte range (HTTP 416) at {shown}", "delete the partial download and try again")
    if status == 429:
        return DownloadError(f"{subject}: too many requests (HTTP 429) at {shown}", "wait a few minutes and run the installer again")
    if 500 <= status < 600:
        return DownloadError(f"{subject}: server error (HTTP {status}) at {shown}")
    return DownloadError(f"{subject}: unexpected answer HTTP {status} from {shown}")


def expects_model(relpath: str) -> bool:
    """Is ``relpath`` a file that must hold weights (so a text body is wrong)?  Unknown suffix: yes."""
    name = relpath.rsplit("/", 1)[-1].lower()
    suffix = name.rsplit(".", 1)[-1] if "." in name else ""
    return not suffix or f".{suffix}" in MODEL_SUFFIXES


def looks_like_text(first: bytes) -> str | None:
    """"HTML"/"JSON"/"XML"/"text" when ``first`` bytes are a text document, else None.

    Weights never look like this: safetensors starts with an 8-byte little-endian header length (zero
    bytes), zip checkpoints with ``PK``, pickles with ``0x80``.
    """
    head = first[:512].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head or b"\x00" in first[:64]:
        return None
    lower = head[:256].lower()
    if lower.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in lower:
        return "HTML"
    if lower.startswith(b"<?xml") or lower.startswith(b"<error"):
        return "XML"
    if head[:1] in (b"{", b"["):
        return "JSON"
    try:
        sample = first[:256].decode("utf-8")
    except UnicodeDecodeError:
        return None
    if all(ch.isprintable() or ch in "\r\n\t" for ch in sample) and len(first) < 64 * 1024:
        return "text"
    return None


def _login_hint(token_hint_text: str) -> str:
    if token_hint_text.lower().startswith(("if the site needs a login", "the site")):
        return token_hint_text
    return f"the site probably wants a login: {token_hint_text}"


def sniff_not_a_model(
    first: bytes, content_type: str | None, url: str, *, relpath: str = "", hub_endpoint: str | None = None
) -> NotAModelError | None:
    """A :class:`NotAModelError` when a body that should be weights is a page (HTML/JSON/text)."""
    if relpath and not expects_model(relpath):
        return None
    ctype = (content_type or "").split(";")[0].strip().lower()
    kind = looks_like_text(first)
    if kind is None and ctype in ("text/html", "application/json", "application/problem+json"):
        kind = "HTML" if "html" in ctype else "JSON"
    if kind is None:
        return None
    return NotAModelError(
        f"{redact_url(url)} sent {'an' if kind in ('HTML', 'XML') else 'a'} {kind} page "
        f"({ctype or 'no content type'}) instead of a model file",
        _login_hint(token_hint(url, hub_endpoint)),
    )


def describe_network_error(exc: BaseException, url: str) -> tuple[str, str | None]:
    """(what happened, what to do) for a connection-level failure, in words: "cannot reach HOST:
    the host name cannot be resolved" rather than ``gaierror: [Errno -2] ...``.  The hint is None
    when the generic one (check the network; partial downloads resume) fits."""
    import errno
    import socket
    import ssl

    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "the server"
    where = host + (f":{parts.port}" if parts.port else "")
    if isinstance(exc, socket.gaierror):
        return (f"cannot reach {host}: the host name cannot be resolved ({exc.strerror or exc})",
                "check the host name in the URL and your internet connection")
    if isinstance(exc, ConnectionRefusedError):
        return (f"cannot reach {where}: connection refused",
                "check the URL's host and port; the server may be down, try again later")
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return (f"cannot reach {where}: no answer (timed out)",
                "check your internet connection, proxy or firewall, then run the installer again")
    if isinstance(exc, ssl.SSLError):
        return (f"secure connection to {where} failed ({exc.reason or exc})",
                "check the system clock and the certificates (SSL_CERT_FILE), or the URL's scheme")
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN):
        return f"cannot reach {where}: {exc.strerror or 'network unreachable'}", "check your network connection"
    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return f"the connection to {where} was dropped", None
    text = str(exc)
    return (type(exc).__name__ + (f": {text}" if text else "")) + f" ({where})", None


def from_network_error(exc: BaseException, url: str, what: str | None = None) -> DownloadError:
    """A connection-level failure (refused, reset, timeout, DNS) as a :class:`DownloadError`."""
    shown = redact_url(url)
    reason, hint = describe_network_error(exc, url)
    return DownloadError(f"{what or shown}: {reason}", hint)


def from_hf_exception(
    exc: BaseException,
    *,
    repo_id: str,
    endpoint: str,
    revision: str | None = None,
    path: str | None = None,
) -> InstallerError:
    """huggingface_hub's exceptions (from metadata calls like ``model_info``) -> our errors."""
    from huggingface_hub import errors as hf

    endpoint = endpoint.rstrip("/")
    what = repo_id + (f"/{path}" if path else "") + (f"@{revision}" if revision else "")
    if isinstance(exc, InstallerError):
        return exc
    if isinstance(exc, hf.GatedRepoError):
        return AuthError(
            f"{repo_id} is a gated model: accept its license at {endpoint}/{repo_id} before downloading",
            f"accept the license at {endpoint}/{repo_id} while logged in, then log in here with "
            "`huggingface-cli login` or set HF_TOKEN",
        )
    if isinstance(exc, hf.RepositoryNotFoundError):
        return NotFoundError(
            f"{repo_id}: repository not found on {endpoint}",
            "check the repo id (it may have moved); if it is private, log in with `huggingface-cli login` or set HF_TOKEN",
        )
    if isinstance(exc, hf.RevisionNotFoundError):
        return NotFoundError(f"{what}: revision {revision!r} not found", "check the @revision (branch, tag or commit)")
    if isinstance(exc, getattr(hf, "RemoteEntryNotFoundError", ())) or isinstance(exc, getattr(hf, "EntryNotFoundError", ())):
        return NotFoundError(f"{what}: file not found in the repository")
    if isinstance(exc, getattr(hf, "OfflineModeIsEnabled", ())):
        return OfflineError(f"{what}: offline mode is on (HF_HUB_OFFLINE) and the metadata is not available")
    if isinstance(exc, hf.HfHubHTTPError):
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        if status is not None:
            headers = dict(getattr(response, "headers", {}) or {})
            return error_for_status(
                status, str(getattr(response, "url", endpoint)), headers=headers, what=what, hub_endpoint=endpoint,
                repo_id=repo_id if status in (401, 403) and headers.get("X-Error-Code") == "GatedRepo" else None,
            )
    return DownloadError(
        f"{what}: cannot reach {endpoint} ({type(exc).__name__})",
        "check the network (or HF_ENDPOINT for a mirror) and run the installer again",
    )
