"""Value coercion shared by every source translator: prices, integers, dates, kinds.

All functions are pure. Problems raise :class:`BadValue`; translators turn that into one
diagnostic naming the file, record and field, and treat the value as unknown.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "BadValue",
    "PER_TOKEN",
    "PER_MILLION",
    "NOVITA_UNIT",
    "clean_float",
    "to_price",
    "to_int",
    "MAX_COUNT",
    "to_bool",
    "ts_to_date",
    "iso_date",
    "infer_kind",
    "kind_modalities",
    "round_sig",
]


class BadValue(ValueError):
    """A field has a value of the wrong type or range."""


#: multiplier from a source's price unit to USD per million tokens
PER_TOKEN = 1_000_000.0
PER_MILLION = 1.0
NOVITA_UNIT = 0.0001  # Novita *_price_per_m: units of $0.0001 per million tokens


def round_sig(x: float, digits: int = 12) -> float:
    """Round away binary float artefacts: 0.051830799999999996 -> 0.0518308."""
    if x == 0 or not math.isfinite(x):
        return x
    return float(f"{x:.{digits}g}")


def clean_float(v: Any) -> float | None:
    """Parse a number from a JSON value; None/'' -> None; anything else wrong -> BadValue."""
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise BadValue(f"expected a number, got boolean {v!r}")
    if isinstance(v, (int, float)):
        try:
            f = float(v)
        except OverflowError:  # an integer beyond any float
            raise BadValue(f"number out of range: {str(v)[:24]}…") from None
    elif isinstance(v, str):
        s = v.strip().replace(",", "").lstrip("$")
        if s == "":
            return None
        try:
            f = float(s)
        except ValueError:
            raise BadValue(f"expected a number, got {v!r}") from None
    else:
        raise BadValue(f"expected a number, got {type(v).__name__}")
    if not math.isfinite(f):
        raise BadValue(f"expected a finite number, got {v!r}")
    return f


def to_price(v: Any, unit: float) -> tuple[float | None, bool]:
    """Convert a raw price to USD per million tokens.

    Returns ``(price, variable)``: ``"-1"`` (and other negative sentinels of -1) means the
    provider prices it variably -> ``(None, True)``. Other negatives raise BadValue.
    """
    f = clean_float(v)
    if f is None:
        return None, False
    if f < 0:
        if f == -1:
            return None, True
        raise BadValue(f"negative price {v!r}")
    p = f * unit
    if not math.isfinite(p):
        raise BadValue(f"price {v!r} is out of range")
    return round_sig(p), False


#: the largest integer a count may have: beyond 2^53 a JSON number is no longer exact (and the
#: catalog's JSON writer takes no integer beyond 64 bits); implausible but smaller values are
#: kept and flagged by :mod:`knollm.catalog.plausible` (``token_range``)
MAX_COUNT = 2**53


def to_int(v: Any, *, zero_is_unknown: bool = True) -> int | None:
    """Parse a positive integer (token counts). 0 -> None (unknown) by default; a count
    above :data:`MAX_COUNT` is a :class:`BadValue`."""
    f = clean_float(v)
    if f is None:
        return None
    if f < 0:
        raise BadValue(f"negative count {v!r}")
    if f > MAX_COUNT:
        raise BadValue(f"count {v!r} is out of range (over 2^53)")
    if f != int(f):
        raise BadValue(f"expected an integer, got {v!r}")
    i = int(f)
    if i == 0 and zero_is_unknown:
        return None
    return i


def to_bool(v: Any) -> bool | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.lower() in ("true", "false", "yes", "no"):
        return v.lower() in ("true", "yes")
    raise BadValue(f"expected a boolean, got {v!r}")


_MS_THRESHOLD = 10_000_000_000  # seconds since epoch stay below this until 2286


def ts_to_date(v: Any) -> str | None:
    """Unix timestamp in seconds or milliseconds (or an ISO string) -> 'YYYY-MM-DD'; 0 -> None."""
    if v is None or v == "" or v == 0:
        return None
    if isinstance(v, str) and not v.strip().lstrip("-").isdigit():
        return iso_date(v)
    f = clean_float(v)
    if f is None or f <= 0:
        return None
    if f > _MS_THRESHOLD:
        f /= 1000.0
    try:
        return datetime.fromtimestamp(f, UTC).strftime("%Y-%m-%d")
    except (OverflowError, OSError, ValueError):
        raise BadValue(f"timestamp out of range: {v!r}") from None


_DATE_RE = re.compile(r"^(\d{4})-(\d{2})(?:-(\d{2}))?")


def iso_date(v: Any) -> str | None:
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise BadValue(f"expected a date string, got {type(v).__name__}")
    m = _DATE_RE.match(v.strip())
    if not m:
        raise BadValue(f"not a date: {v!r}")
    y, mo, d = m.group(1), m.group(2), m.group(3) or "01"
    return f"{y}-{mo}-{d}"


_KIND_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    # before "embedding": a ``bge-reranker`` is a reranker, not a bge embedding model
    ("rerank", re.compile(r"rerank")),
    ("embedding", re.compile(r"embed|(^|[/_-])(bge|gte|e5|m3e|nomic-embed|jina-embeddings)([-_.]|$)|text-similarity"
                             r"|(^|/)sentence-transformers/|(^|[/_-])text2vec([-_.]|$)"
                             r"|(^|/)(all|multi-qa|paraphrase(-multilingual)?)-(minilm|mpnet|distilroberta)")),
    ("moderation", re.compile(r"moderation|llama-guard|(^|[/_-])guard([-_]|$)|shieldgemma|prompt-guard")),
    ("audio", re.compile(r"whisper|(^|[/_-])tts|transcribe|speech|audio|voxtral|(^|[/_-])(nova-[23]|aura)|playai|orpheus|kokoro|sonic")),
    ("image", re.compile(r"flux|stable-diffusion|sdxl|sd3|dall-e|imagen|(^|[/_-])image|midjourney|ideogram|recraft|playground-v|hidream|seedream|qwen-image|kolors")),
    ("video", re.compile(r"(^|[/_-])(veo|sora|kling|wan2|hunyuan-?video|ltx-video|seedance)")),
]

# one combined search first: most ids are chat models and match none of the patterns
_ANY_KIND = re.compile("|".join(f"(?:{p.pattern})" for _, p in _KIND_PATTERNS))

_EXPLICIT_KINDS = {
    "chat": "chat", "language": "completion", "completion": "completion", "code": "chat",
    "embedding": "embedding", "embeddings": "embedding", "image": "image", "image_generation": "image",
    "moderation": "moderation", "rerank": "rerank", "audio": "audio", "transcribe": "audio",
    "audio_transcription": "audio", "audio_speech": "audio", "tts": "audio", "stt": "audio",
    "video": "video", "video_generation": "video", "responses": "chat",
}


def infer_kind(model_id: str, explicit: str | None = None) -> str:
    """Kind of model from an explicit type field if known, else from its id."""
    if explicit:
        k = _EXPLICIT_KINDS.get(str(explicit).lower())
        if k:
            return k
    low = model_id.lower()
    if not _ANY_KIND.search(low):
        return "chat"
    for kind, pat in _KIND_PATTERNS:
        if pat.search(low):
            return kind
    return "chat"


def kind_modalities(kind: str) -> tuple[list[str], list[str]]:
    """Default input/output modalities for a kind (used only when no source says)."""
    return {
        "chat": (["text"], ["text"]),
        "completion": (["text"], ["text"]),
        "embedding": (["text"], ["embedding"]),
        "rerank": (["text"], ["score"]),
        "moderation": (["text"], ["text"]),
        "image": (["text"], ["image"]),
        "audio": (["audio"], ["text"]),
        "video": (["text"], ["video"]),
    }.get(kind, ([], []))
