"""Retry timing shared by every HTTP caller (``knollm fetch`` and :mod:`knollm.client`):
which statuses are worth another attempt, exponential backoff with jitter, and
``Retry-After`` parsing. Standard library only."""

from __future__ import annotations

import random
import time
from datetime import timezone
from typing import Any

__all__ = ["RETRY_STATUSES", "backoff_delay", "parse_retry_after", "retry_after_of"]

#: statuses worth another attempt (with backoff)
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524, 529})


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with "equal jitter": half of ``min(cap, base·2^(n-1))`` fixed,
    half random – retries spread out but never collapse to zero."""
    rng = rng or random
    d = min(cap, base * (2 ** max(0, attempt - 1)))
    return d / 2 + rng.uniform(0, d / 2)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import email.utils

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def retry_after_of(headers: Any) -> float | None:
    """Seconds a provider asked to wait, from an answer's headers (case-insensitive ``get``):
    ``retry-after-ms`` (OpenAI, Azure: milliseconds) first, then ``Retry-After`` (seconds or
    an HTTP date); None when neither says."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            v = float(ms.strip())
        except (ValueError, AttributeError):
            v = None
        if v is not None and v == v and v >= 0 and v != float("inf"):
            return v / 1000
    return parse_retry_after(headers.get("retry-after"))
