"""The one place that decides what in a URL is a credential, and hides it (imports nothing of ours).

Used wherever a URL is shown or stored: item labels, printed errors, ``--json`` output, events, the
partial-download sidecars, manifests and their keys, logs.

- :func:`is_secret_param` - a query parameter that carries a credential: ``token``, ``access_token``,
  ``api_key``/``apikey``, ``key``, ``sig``, ``signature``, ``X-Amz-Signature``, ``X-Amz-Credential``,
  ``X-Amz-Security-Token``, ``X-Goog-Signature``, ``auth``/``authorization``, ``password``, ``secret``,
  ``policy``, ``Key-Pair-Id``, ``session``... (case-insensitive; any name containing token, secret,
  signature, credential, password or auth);
- :func:`redact_url` - the URL with those values replaced by ``***`` (and a ``user:password@`` hidden);
- :func:`strip_secrets` - the URL without those parameters at all (an identity: a rotated signature
  names the same file);
- :func:`redact_text` - every URL inside a text redacted (errors, labels, raw import lines).
"""

from __future__ import annotations

import re
import urllib.parse

__all__ = ["is_secret_param", "redact_url", "strip_secrets", "redact_text"]

_EXACT = frozenset({
    "key", "sig", "policy", "key-pair-id", "hmac", "apikey", "api_key", "api-key", "pass", "pwd", "jwt",
    "x-amz-date", "se", "sp", "sv",  # S3/Azure SAS companions: harmless alone, useless to show
})
_CONTAINS = ("token", "secret", "signature", "credential", "password", "passwd", "auth", "session", "apikey", "api_key")

_URL_RE = re.compile(r"(?i)\b(?:https?|ftp)://[^\s'\"<>()\[\]{}]+")


def is_secret_param(name: str) -> bool:
    """True when a query parameter named ``name`` carries (or accompanies) a credential."""
    low = name.strip().lower()
    return low in _EXACT or any(part in low for part in _CONTAINS)


def _hide_userinfo(parts: urllib.parse.SplitResult) -> str:
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}" if ":" in userinfo else f"***@{hostport}"
    return netloc


def redact_url(url: str) -> str:
    """``url`` with credential-like query values replaced by ``***`` (safe to show or store)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    netloc = _hide_userinfo(parts)
    if not parts.query:
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc)) if netloc != parts.netloc else url
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if not pairs:
        # not a key=value query ("?abcdef..."): a bare credential is as likely as anything
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query="***"))
    query = "&".join(f"{k}={'***' if is_secret_param(k) else urllib.parse.quote(v, safe='')}" for k, v in pairs)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def strip_secrets(url: str) -> str:
    """``url`` without credential-like query parameters, user info or fragment (for identities)."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    pairs = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if not is_secret_param(k)]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, urllib.parse.urlencode(pairs), ""))


def redact_text(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_url`."""
    if "://" not in text:
        return text
    return _URL_RE.sub(lambda m: redact_url(m.group(0)), text)
