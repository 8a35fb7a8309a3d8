"""Which token goes to which request, and keeping tokens out of everything we show or store.

Rules (issue #3; the old installer put tokens in query strings and logs):

- the HuggingFace token goes only to the hub host (the host:port of ``HF_ENDPOINT``, and huggingface.co /
  hf.co when the endpoint is the default);
- a URL token (``CIVITAI_API_TOKEN`` -> civitai.com, civitai.green and civitai.red, or ``INVOKEAI_URL_TOKENS``) goes only to hosts that
  match its pattern;
- a token is sent as ``Authorization: Bearer``, never in a URL, only over https (except the HF token to
  the user's own ``HF_ENDPOINT``, whatever its scheme), and never to a host reached through a redirect to
  another host (:func:`headers_after_redirect`);
- :func:`redact` removes every known token (and secret-looking URL parameters) from text before it goes
  into an error, an event, a log or a file.

Host patterns are :mod:`fnmatch` globs matched (case-insensitively) against the URL's ``host`` and
``host:port``: ``civitai.com`` also matches its subdomains (``*.civitai.com``).
"""

from __future__ import annotations

import fnmatch
import urllib.parse
from typing import Iterable

from invokeai_model_install.net.settings import DownloadSettings
from invokeai_model_install.net.sources import redact_url

_DEFAULT_HUB_HOSTS = ("huggingface.co", "hf.co", "www.huggingface.co")


def origin(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a URL, with the default port filled in."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").lower(), port


def same_host(a: str, b: str) -> bool:
    """True when two URLs share scheme, host and port (the token boundary)."""
    return origin(a) == origin(b)


def host_matches(url: str, pattern: str) -> bool:
    """Does ``url``'s host (or host:port) match a host pattern?  A bare domain matches its subdomains."""
    _scheme, host, port = origin(url)
    pattern = pattern.strip().lower()
    if not pattern or not host:
        return False
    candidates = (host, f"{host}:{port}")
    if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
        return True
    if not any(ch in pattern for ch in "*?[") and ":" not in pattern:
        return host.endswith("." + pattern)
    return False


def is_hub_url(url: str, settings: DownloadSettings) -> bool:
    """True when ``url`` is on the configured hub (HF_ENDPOINT), or on huggingface.co when that is the hub."""
    if same_host(url, settings.hf_endpoint):
        return True
    _s, endpoint_host, _p = origin(settings.hf_endpoint)
    _s, host, _p = origin(url)
    return endpoint_host in _DEFAULT_HUB_HOSTS and host in _DEFAULT_HUB_HOSTS


def token_for(url: str, settings: DownloadSettings) -> str | None:
    """The token that may be sent to ``url``, or None.

    Only over https: a host match alone would send ``Authorization: Bearer`` to ``http://civitai.com``
    in clear text.  The one exception is the user's own ``HF_ENDPOINT`` (same scheme, host and port):
    the HF token goes to the endpoint the user chose, whatever its scheme, as huggingface_hub does.
    """
    if same_host(url, settings.hf_endpoint):
        return settings.hf_token or None
    if origin(url)[0] != "https":
        return None
    if is_hub_url(url, settings):
        return settings.hf_token or None
    for pattern, token in settings.url_tokens:
        if token and host_matches(url, pattern):
            return token
    return None


def auth_headers(url: str, settings: DownloadSettings) -> dict[str, str]:
    """``{"Authorization": "Bearer ..."}`` for ``url`` when a token belongs to its host, else ``{}``."""
    token = token_for(url, settings)
    return {"Authorization": f"Bearer {token}"} if token else {}


def headers_after_redirect(old_url: str, new_url: str, headers: dict[str, str], settings: DownloadSettings) -> dict[str, str]:
    """Headers for following a redirect: same host keeps them; another host gets no Authorization at all.

    Not even a token that would belong to the new host: a redirect target (a CDN, a signed URL) is
    authorised by its URL, and a server must not be able to steer our credentials anywhere.
    """
    if same_host(old_url, new_url):
        return dict(headers)
    return {k: v for k, v in headers.items() if k.lower() != "authorization"}


def known_tokens(settings: DownloadSettings | None) -> list[str]:
    """Every token in ``settings`` (for redaction)."""
    if settings is None:
        return []
    out = [settings.hf_token] if settings.hf_token else []
    out += [t for _p, t in settings.url_tokens if t]
    return out


def redact(text: str, settings: DownloadSettings | None = None, extra: Iterable[str] = ()) -> str:
    """``text`` with every known token replaced by ``***`` and URL secrets masked."""
    for token in sorted([*known_tokens(settings), *extra], key=len, reverse=True):
        if token and len(token) >= 4:
            text = text.replace(token, "***")
    if "://" in text and "?" in text:
        words = text.split(" ")
        text = " ".join(redact_url(w) if "://" in w and "?" in w else w for w in words)
    return text
