"""Keep API key values out of every message, report, exception and log line.

:class:`Redactor` knows the key values of the current run and replaces each (raw, URL-
and percent-encoded forms) with ``***``; it also masks anything that *looks* like a
credential – ``Authorization: Bearer …``, ``x-api-key: …``, ``key=…`` / ``api_key=…``
/ ``token=…`` query parameters – so even a key it was not told about is hidden.
:func:`safe_url` strips the query string (where ``?key=`` lives) and any userinfo.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

__all__ = ["MASK", "Redactor", "RedactingFilter", "safe_url"]

MASK = "***"

_PATTERNS = [
    # Authorization: Bearer xyz / Authorization: Basic xyz / "authorization": "Bearer xyz"
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?\s*(?:bearer|basic|token)?\s*)([^\s\"',;&]+)"),
    re.compile(r"(?i)\b(bearer\s+)([A-Za-z0-9._~+/=-]{6,})"),
    re.compile(r"(?i)((?:x-api-key|api-key|x-goog-api-key|x-auth-token)[\"']?\s*[:=]\s*[\"']?)([^\s\"',;&]+)"),
    re.compile(r"(?i)((?<![A-Za-z0-9_-])(?:key|api_key|apikey|api-key|access_token|token)=)([^&#\s\"']+)"),
]


def safe_url(url: object) -> str:
    """``url`` without query string, fragment or userinfo – safe to print."""
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return "<url>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class Redactor:
    """Replace known secrets and credential-looking values with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        for s in secrets:
            self.add(s)

    def add(self, secret: str | None) -> None:
        if not secret or len(secret) < 4:  # a 1–3 char "key" would mask half the text
            return
        self._secrets.add(secret)
        for enc in (quote(secret, safe=""), quote_plus(secret)):
            self._secrets.add(enc)

    @property
    def secrets(self) -> frozenset[str]:
        return frozenset(self._secrets)

    def __call__(self, text: object) -> str:
        return self.redact(text)

    def redact(self, text: object) -> str:
        s = text if isinstance(text, str) else str(text)
        # longest first so an encoded form that contains the raw one is masked whole
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in s:
                s = s.replace(secret, MASK)
        for pat in _PATTERNS:
            s = pat.sub(lambda m: m.group(1) + MASK if m.group(2) != MASK else m.group(0), s)
        return s

    def redact_obj(self, obj):
        """Redact every string inside a JSON-like structure (dict keys included)."""
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, dict):
            return {self.redact_obj(k): self.redact_obj(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.redact_obj(v) for v in obj]
        return obj

    def contains_secret(self, data: bytes | str) -> bool:
        if isinstance(data, bytes):
            return any(s.encode("utf-8", "replace") in data for s in self._secrets)
        return any(s in data for s in self._secrets)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's final message (and drops its args)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string must not leak args
            msg = str(record.msg)
        record.msg = self.redactor.redact(msg)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redactor.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
