"""Read raw provider dumps (``models_<provider>.json``) into records.

The shape is detected from the content, never the file name:

* OpenAI list – ``{"object": "list", "data": [...]}`` (or any object whose ``data`` is a list)
* bare array – ``[{...}, ...]``
* keyed object – ``{"<model id>": {...}, ...}`` (LiteLLM's cost map): an object most of whose
  values are objects; an entry that is not an object is skipped with a warning naming it, and
  a key given twice (JSON keeps the last entry) is warned about. Entries that document
  the format rather than describe a model are found by *shape*, not by name: an entry
  whose fields hold prose where the other entries hold numbers or flags (LiteLLM's
  ``sample_spec``: ``"max_tokens": "LEGACY parameter. set to …"``) is skipped with an info.

Decoding is tolerant: a UTF-8 BOM and UTF-16 (with or without BOM) are decoded; JSON with
``NaN`` / ``Infinity`` literals is parsed by a tolerant parser and each record holding one
gets a warning (the value becomes unknown); an integer ``id`` is turned into a string
with a warning. A file is never lost for an encoding that can be recovered.

An API error answer saved as a dump (``{"error": {...}}``, ``{"detail": ...}``,
``{"message": ...}`` and similar envelopes: :func:`error_envelope`) is a shape error naming
the file, never a model called ``error``.

Every problem (unreadable, truncated, HTML error page, error answer, empty, unknown shape,
too big, a record that is not an object or has no id) is reported as one diagnostic naming
the file and record; what can be read is still returned.
"""

from __future__ import annotations

import codecs
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from knollm.catalog.diagnostics import Diagnostics
from knollm.errors import DumpError, ShapeError

__all__ = [
    "DumpFile",
    "MAX_DUMP_BYTES",
    "decode_dump",
    "detect_shape",
    "documentation_entries",
    "error_envelope",
    "ErrorAnswer",
    "json_type",
    "parse_dump",
    "provider_from_filename",
    "read_dump",
    "read_dumps",
    "records_from_payload",
]

#: Dumps larger than this are skipped with a warning (real dumps are < 2 MB).
MAX_DUMP_BYTES = 64 * 1024 * 1024

_NAME_RE = re.compile(r"^models_(?P<provider>[A-Za-z0-9][A-Za-z0-9_.-]*)\.json$")
#: a documentation entry's prose: a string with spaces at least this long
_PROSE_LEN = 16


@dataclass(slots=True)
class DumpFile:
    """One dump: where it came from, its detected shape and its records."""

    path: Path
    source: str  # the ``<provider>`` part of ``models_<provider>.json``
    shape: str  # "openai-list" | "array" | "keyed"
    records: list[tuple[str, dict[str, Any]]]  # (record id, raw record)
    size: int


def provider_from_filename(path: str | Path) -> str | None:
    m = _NAME_RE.match(Path(path).name)
    return m.group("provider").lower() if m else None


def json_type(v: Any) -> str:
    """The JSON name of a value's type (``null``, ``boolean``, ``number``, ``string``, ``array``, ``object``)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


class ErrorAnswer(ValueError):
    """The payload is an API error answer (``{"error": ...}``), not a model list."""


#: keys that carry an API error's message; an object holding one of them and nothing but
#: :data:`_ENVELOPE_KEYS` is an error answer (OpenAI ``error``, FastAPI ``detail``, AWS
#: ``message``, GraphQL ``errors``, RFC 7807 ``title``/``detail``…)
_ERROR_KEYS = ("error", "errors", "detail", "message", "msg", "error_message", "errorMessage", "fault")
_ENVELOPE_KEYS = frozenset(_ERROR_KEYS) | {
    "status", "status_code", "statusCode", "code", "error_code", "errorCode", "type", "title", "reason",
    "success", "ok", "request_id", "requestId", "trace_id", "traceId", "timestamp", "path", "instance",
    "error_description", "documentation_url", "hint", "details", "param", "object"}


def _error_text(v: Any, depth: int = 0) -> str | None:
    if isinstance(v, str):
        return v.strip() or None
    if depth > 3:
        return None
    if isinstance(v, dict):
        for k in ("message", "msg", "detail", "error", "title", "type", "code"):
            t = _error_text(v.get(k), depth + 1)
            if t:
                return t
        return None
    if isinstance(v, list) and v:
        return _error_text(v[0], depth + 1)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    return None


def error_envelope(payload: Any) -> str | None:
    """The message of an API error answer (``{"error": {"message": …}}``, ``{"detail": …}``,
    ``{"message": …, "statusCode": 401}``…): an object whose keys are all error-envelope keys
    and one of them carries the error. None for anything else (a model list)."""
    if not isinstance(payload, dict) or not payload:
        return None
    keys = {str(k) for k in payload}
    if not keys <= _ENVELOPE_KEYS or not keys & set(_ERROR_KEYS):
        return None
    if payload.get("object") not in (None, "error"):
        return None
    for k in _ERROR_KEYS:
        if k in payload:
            t = _error_text(payload[k])
            if t:
                return " ".join(t.split())[:160]
    return f"an object with only {', '.join(sorted(keys))}"


def detect_shape(payload: Any) -> str:
    """Return ``"openai-list"``, ``"array"`` or ``"keyed"``; raise ValueError otherwise
    (:class:`ErrorAnswer` for an API error answer)."""
    if isinstance(payload, list):
        return "array"
    if isinstance(payload, dict):
        data = payload.get("data")
        if isinstance(data, list):
            return "openai-list"
        err = error_envelope(payload)
        if err is not None:
            raise ErrorAnswer(f"an API error answer, not a model list ({err})")
        if payload.get("object") == "list":
            raise ValueError("'object' is 'list' but 'data' is not an array")
        # keyed: most values are objects (a stray non-object entry is warned about and skipped)
        if payload and 2 * sum(isinstance(v, dict) for v in payload.values()) > len(payload):
            return "keyed"
        if not payload:
            raise ValueError("empty JSON object")
        raise ValueError("object is neither an OpenAI list nor keyed by model id "
                         f"(keys: {', '.join(sorted(map(str, payload))[:5])})")
    raise ValueError(f"top-level JSON {json_type(payload)} is not a model list")


def _is_prose(v: Any) -> bool:
    return isinstance(v, str) and len(v) >= _PROSE_LEN and " " in v.strip()


def documentation_entries(payload: dict[str, Any]) -> dict[str, list[str]]:
    """Keys of a keyed dump whose entry documents the format: ``{key: [fields holding prose]}``.

    A field's usual type is what most entries hold in it; an entry is documentation when two
    or more of its fields hold prose where most entries hold a number or a flag (or when
    every field it has is prose).
    """
    usual: dict[str, Counter] = {}
    for rec in payload.values():
        if not isinstance(rec, dict):
            continue
        for k, v in rec.items():
            usual.setdefault(k, Counter())["num" if isinstance(v, (int, float)) else type(v).__name__] += 1
    out: dict[str, list[str]] = {}
    for key, rec in payload.items():
        if not isinstance(rec, dict):
            continue
        prose = [k for k, v in rec.items() if _is_prose(v)]
        if not prose:
            continue
        odd = [k for k in prose if usual[k].most_common(1)[0][0] in ("num", "bool")]
        if len(odd) >= 2 or (len(prose) >= 3 and 2 * len(prose) >= len(rec)):
            out[str(key)] = odd or prose
    return out


def records_from_payload(payload: Any, file: str, diags: Diagnostics) -> tuple[str, list[tuple[str, dict]]]:
    """Split a parsed payload into (shape, [(record id, record)]), warning per bad record."""
    try:
        shape = detect_shape(payload)
    except ErrorAnswer as e:
        raise ShapeError(file, str(e)) from None
    except ValueError as e:
        raise ShapeError(file, f"unknown dump shape: {e}") from None
    out: list[tuple[str, dict]] = []
    if shape == "keyed":
        docs = documentation_entries(payload)
        for key, rec in payload.items():
            if not isinstance(rec, dict):
                diags.warn("bad-record", file, f"entry is {_a(json_type(rec))}, not an object; skipped", key)
                continue
            if not str(key).strip():
                diags.warn("missing-id", file, f"entry's key {str(key)!r} is blank; skipped", repr(key))
                continue
            if key in docs:
                diags.info("documentation-entry", file, "entry documents the format (prose in "
                           f"{', '.join(docs[key][:4])}); not a model, skipped", key)
                continue
            out.append((str(key), rec))
        return shape, out
    items = payload if shape == "array" else payload["data"]
    for i, rec in enumerate(items):
        if not isinstance(rec, dict):
            diags.warn("bad-record", file, f"record is {_a(json_type(rec))}, not an object; skipped", i)
            continue
        rid = rec.get("id")
        blank = isinstance(rid, str) and not rid.strip()
        if rid is None or blank:
            alt = rec.get("name") or rec.get("model")
            if isinstance(alt, str) and alt.strip():
                rid = alt
        if isinstance(rid, str) and not rid.strip():
            diags.warn("missing-id", file, f"record's 'id' is blank ({rid!r}); skipped", i)
            continue
        if rid is None:
            diags.warn("missing-id", file, "record has no 'id'; skipped", i)
            continue
        if isinstance(rid, bool) or not isinstance(rid, (str, int)):
            shown = orjson.dumps(rid, default=str).decode()
            shown = shown if len(shown) <= 40 else shown[:39] + "…"
            diags.warn("missing-id", file, f"record's 'id' is {_a(json_type(rid))} ({shown}), not a string; "
                       "skipped", i)
            continue
        if isinstance(rid, int):
            diags.warn("integer-id", file, f"'id' is the integer {rid}, not a string; read as {str(rid)!r}", rid)
        out.append((str(rid), rec))
    return shape, out


def _a(word: str) -> str:
    if word == "null":
        return word
    return ("an " if word[:1] in "aeiou" else "a ") + word


def decode_dump(data: bytes, file: str, diags: Diagnostics | None = None) -> bytes:
    """UTF-8 bytes of a dump saved with a UTF-8 BOM or as UTF-16 (with or without BOM)."""
    how = None
    if data.startswith(codecs.BOM_UTF8):
        data, how = data[len(codecs.BOM_UTF8):], "UTF-8 with a byte-order mark"
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        enc = "utf-16"
        how = "UTF-16 (byte-order mark)"
    elif len(data) >= 4 and data[1] == 0 and data[3] == 0 and data[0] != 0:
        enc, how = "utf-16-le", "UTF-16LE (no byte-order mark)"
    elif len(data) >= 4 and data[0] == 0 and data[2] == 0 and data[1] != 0:
        enc, how = "utf-16-be", "UTF-16BE (no byte-order mark)"
    if how and how.startswith("UTF-16"):
        try:
            data = data.decode(enc).encode("utf-8")
        except UnicodeDecodeError as e:
            raise DumpError(file, f"looks like {how} but does not decode: {e.reason}") from None
    if how and diags is not None:
        diags.data("encoding", file, f"decoded {how}")
    return data


def _non_finite(x: Any, path: str = "") -> list[tuple[str, str]]:
    """``(dotted path, literal)`` of every NaN / ±Infinity in ``x`` (replaced by None in place)."""
    found: list[tuple[str, str]] = []
    items = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, list) else ()
    for k, v in items:
        if isinstance(v, float) and not math.isfinite(v):
            found.append((f"{path}{k}", "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")))
            x[k] = None
        elif isinstance(v, (dict, list)):
            found.extend(_non_finite(v, f"{path}{k}."))
    return found


def parse_dump(data: bytes, file: str, diags: Diagnostics | None = None) -> Any:
    """Parse dump bytes, turning every failure into a :class:`DumpError` naming ``file``.

    JSON with ``NaN`` / ``Infinity`` literals (not standard JSON) is parsed by the tolerant
    standard-library parser; each record holding one gets a warning and the value is unknown.
    """
    data = decode_dump(data, file, diags)
    if not data.strip():
        raise DumpError(file, "empty file")
    head = data.lstrip()[:64].lower()
    if head.startswith((b"<!doctype", b"<html", b"<?xml", b"<")):
        raise DumpError(file, "looks like an HTML/XML page saved as JSON (an error page?)")
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        msg = str(e)
    else:
        if isinstance(payload, dict) and not isinstance(payload.get("data"), list) and diags is not None:
            _warn_duplicate_keys(data, payload, file, diags)
        return payload
    if re.search(rb"\bNaN\b|\bInfinity\b", data):
        import json

        try:
            payload = json.loads(data)
        except ValueError:
            payload = None
        if payload is not None:
            _warn_non_finite(payload, file, diags)
            return payload
    if "unexpected end" in msg.lower() or "eof" in msg.lower():
        raise DumpError(file, f"truncated JSON ({msg})") from None
    raise DumpError(file, f"malformed JSON ({msg})") from None


def _warn_duplicate_keys(data: bytes, payload: dict, file: str, diags: Diagnostics) -> None:
    """A keyed dump naming a model twice: JSON keeps the last entry, so warn per repeated key.

    Runs only for objects that are not an OpenAI list (keyed dumps): a second parse that keeps
    the top-level pairs (nested objects are not built), ~10 ms for LiteLLM's map."""
    import json

    top: list[list[tuple[str, Any]]] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict:
        top[:] = [pairs]  # the last object closed is the top-level one
        return {}

    try:
        json.loads(data, object_pairs_hook=hook)
    except ValueError:
        return
    if not top or len(top[0]) == len(payload):
        return
    counts = Counter(k for k, _ in top[0])
    for key, n in counts.items():
        if n > 1:
            diags.warn("duplicate-key", file, f"key appears {n} times; JSON keeps only the last entry, "
                       f"{n - 1} earlier one(s) lost", key)


def _warn_non_finite(payload: Any, file: str, diags: Diagnostics | None) -> None:
    if isinstance(payload, dict) and isinstance(payload.get("data"), list):
        recs: Any = {str(i): r for i, r in enumerate(payload["data"])}
    elif isinstance(payload, list):
        recs = {str(i): r for i, r in enumerate(payload)}
    else:
        recs = payload if isinstance(payload, dict) else {}
    for key, rec in recs.items():
        if not isinstance(rec, (dict, list)):
            continue
        found = _non_finite(rec)
        if found and diags is not None:
            rid = rec.get("id", key) if isinstance(rec, dict) else key
            what = ", ".join(f"{p} = {lit}" for p, lit in found[:5])
            diags.warn("non-standard-json", file, f"non-standard JSON number(s) {what}; read as unknown", rid)


def read_dump(path: str | Path, diags: Diagnostics, max_bytes: int | None = None) -> DumpFile:
    """Read one dump file. Raises :class:`DumpError` if nothing in it is usable."""
    if max_bytes is None:
        max_bytes = MAX_DUMP_BYTES
    path = Path(path)
    name = path.name
    source = provider_from_filename(path) or path.stem
    try:
        size = path.stat().st_size
    except OSError as e:
        raise DumpError(name, f"cannot read: {e.strerror}") from None
    if size > max_bytes:
        raise DumpError(name, f"file is {size:,} bytes, over the {max_bytes:,}-byte limit; skipped")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DumpError(name, f"cannot read: {e.strerror}") from None
    payload = parse_dump(data, name, diags)
    shape, records = records_from_payload(payload, name, diags)
    if not records:
        diags.warn("no-records", name, f"{shape} dump holds no model records")
    return DumpFile(path=path, source=source, shape=shape, records=records, size=size)


def read_dumps(directory: str | Path, diags: Diagnostics, max_bytes: int | None = None) -> list[DumpFile]:
    """Read every ``models_*.json`` in ``directory`` (sorted); bad files become diagnostics."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    out: list[DumpFile] = []
    for path in sorted(directory.glob("models_*.json")):
        try:
            out.append(read_dump(path, diags, max_bytes))
        except DumpError as e:
            code = "unknown-shape" if isinstance(e, ShapeError) else "bad-dump"
            diags.warn(code, path.name, str(e).split(": ", 1)[-1])
    return out
