"""Read raw provider dumps (``models_<provider>.json``) into records.

The shape is detected from the content, never the file name:

* OpenAI list – ``{"object": "list", "data": [...]}`` (or any object whose ``data`` is a list)
* bare array – ``[{...}, ...]``
* keyed object – ``{"<model id>": {...}, ...}`` (LiteLLM's cost map; ``sample_spec`` skipped)

Every problem (unreadable, truncated, HTML error page, empty, unknown shape, too big,
a record that is not an object or has no id) is reported as one diagnostic naming the
file and record; what can be read is still returned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from knollm.catalog.diagnostics import Diagnostics
from knollm.errors import DumpError, ShapeError

__all__ = [
    "DumpFile",
    "MAX_DUMP_BYTES",
    "detect_shape",
    "parse_dump",
    "provider_from_filename",
    "read_dump",
    "read_dumps",
    "records_from_payload",
]

#: Dumps larger than this are skipped with a warning (real dumps are < 2 MB).
MAX_DUMP_BYTES = 64 * 1024 * 1024

_NAME_RE = re.compile(r"^models_(?P<provider>[A-Za-z0-9][A-Za-z0-9_.-]*)\.json$")
#: keys of a keyed object that document the format rather than describe a model
_NON_MODEL_KEYS = frozenset({"sample_spec"})


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


def detect_shape(payload: Any) -> str:
    """Return ``"openai-list"``, ``"array"`` or ``"keyed"``; raise ValueError otherwise."""
    if isinstance(payload, list):
        return "array"
    if isinstance(payload, dict):
        data = payload.get("data")
        if isinstance(data, list):
            return "openai-list"
        if payload.get("object") == "list":
            raise ValueError("'object' is 'list' but 'data' is not an array")
        if payload and all(isinstance(v, dict) for v in payload.values()):
            return "keyed"
        if not payload:
            raise ValueError("empty JSON object")
        raise ValueError("object is neither an OpenAI list nor keyed by model id "
                         f"(keys: {', '.join(sorted(map(str, payload))[:5])})")
    raise ValueError(f"top-level JSON {type(payload).__name__} is not a model list")


def records_from_payload(payload: Any, file: str, diags: Diagnostics) -> tuple[str, list[tuple[str, dict]]]:
    """Split a parsed payload into (shape, [(record id, record)]), warning per bad record."""
    try:
        shape = detect_shape(payload)
    except ValueError as e:
        raise ShapeError(file, f"unknown dump shape: {e}") from None
    out: list[tuple[str, dict]] = []
    if shape == "keyed":
        for key, rec in payload.items():
            if key in _NON_MODEL_KEYS:
                continue
            out.append((str(key), rec))
        return shape, out
    items = payload if shape == "array" else payload["data"]
    for i, rec in enumerate(items):
        if not isinstance(rec, dict):
            diags.warn("bad-record", file, f"record is a {type(rec).__name__}, not an object; skipped", i)
            continue
        rid = rec.get("id")
        if rid is None or rid == "":
            rid = rec.get("name") or rec.get("model")
        if not isinstance(rid, (str, int)) or rid == "":
            diags.warn("missing-id", file, "record has no 'id'; skipped", i)
            continue
        out.append((str(rid), rec))
    return shape, out


def parse_dump(data: bytes, file: str) -> Any:
    """Parse dump bytes, turning every failure into a :class:`DumpError` naming ``file``."""
    if not data.strip():
        raise DumpError(file, "empty file")
    head = data.lstrip()[:64].lower()
    if head.startswith((b"<!doctype", b"<html", b"<?xml", b"<")):
        raise DumpError(file, "looks like an HTML/XML page saved as JSON (an error page?)")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        msg = str(e)
        if "unexpected end" in msg.lower() or "eof" in msg.lower():
            raise DumpError(file, f"truncated JSON ({msg})") from None
        raise DumpError(file, f"malformed JSON ({msg})") from None


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
    payload = parse_dump(data, name)
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
