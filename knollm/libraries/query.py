"""Queries over the libraries: list, get (with "did you mean"), recommend."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from knollm.errors import NotFoundError
from knollm.libraries.load import LibraryRecord, load_libraries
from knollm.libraries.rubric import Rating, rate
from knollm.libraries.schema import FEATURE_LABELS, FEATURES, USE_CASES

__all__ = ["Row", "Recommendation", "list_libraries", "get_library", "recommend", "parse_needs",
           "FEATURE_ALIASES"]

# accepted spellings for --needs
FEATURE_ALIASES: dict[str, str] = {
    **{f: f for f in FEATURES},
    **{f.replace("_", "-"): f for f in FEATURES},
    "tools": "tool_calling",
    "tool-calls": "tool_calling",
    "structured": "structured_output",
    "json": "structured_output",
    "stream": "streaming",
    "asyncio": "async",
    "providers": "multi_provider",
    "local": "local_models",
    "observability": "observability_hooks",
    "tracing": "observability_hooks",
    "typed": "typed_responses",
    "retry": "retries",
}


@dataclass(frozen=True)
class Row:
    record: LibraryRecord
    rating: Rating

    @property
    def slug(self) -> str:
        return self.record.slug


@dataclass(frozen=True)
class Recommendation:
    row: Row
    matched: tuple[str, ...]
    missing: tuple[str, ...]
    explanation: str

    def as_dict(self) -> dict:
        lib = self.row.record.library
        return {
            "slug": lib.slug,
            "name": lib.name,
            "category": lib.category,
            "rating": self.row.rating.rating,
            "score": round(self.row.rating.score, 2),
            "matched": list(self.matched),
            "missing": list(self.missing),
            "explanation": self.explanation,
        }


def _rows(records: list[LibraryRecord] | None, directory: str | Path | None) -> list[Row]:
    records = records if records is not None else load_libraries(directory)
    return [Row(r, rate(r.library, r.measurement)) for r in records]


def list_libraries(records: list[LibraryRecord] | None = None, directory: str | Path | None = None,
                   category: str | None = None) -> list[Row]:
    """All libraries, best rated first (ties by slug)."""
    rows = _rows(records, directory)
    if category:
        rows = [r for r in rows if r.record.library.category == category]
    return sorted(rows, key=lambda r: (-r.rating.score, r.slug))


def _suggest(name: str, candidates: list[str]) -> list[str]:
    name_l = name.lower()
    close = difflib.get_close_matches(name_l, candidates, n=3, cutoff=0.6)
    contains = [c for c in candidates if name_l and (name_l in c or c in name_l) and c not in close]
    return (close + contains)[:3]


def get_library(name: str, records: list[LibraryRecord] | None = None,
                directory: str | Path | None = None) -> Row:
    """By slug, PyPI name or module (case-insensitive); NotFoundError with suggestions otherwise."""
    rows = _rows(records, directory)
    key = name.strip().lower().replace("_", "-")
    for row in rows:
        lib = row.record.library
        names = {lib.slug, (lib.pypi or "").lower(), (lib.module or "").lower().replace("_", "-"),
                 lib.name.lower()}
        if key in names:
            return row
    candidates = sorted({r.slug for r in rows} | {(r.record.library.pypi or "").lower() for r in rows} - {""})
    raise NotFoundError("library", name, _suggest(key, candidates))


def parse_needs(needs: str | list[str] | None) -> list[str]:
    """``"async,streaming"`` → canonical feature keys; unknown names raise ValueError."""
    if needs is None:
        return []
    items = needs.split(",") if isinstance(needs, str) else [n for part in needs for n in part.split(",")]
    out: list[str] = []
    bad: list[str] = []
    for raw in items:
        n = raw.strip().lower()
        if not n:
            continue
        canon = FEATURE_ALIASES.get(n)
        if canon is None:
            bad.append(raw.strip())
        elif canon not in out:
            out.append(canon)
    if bad:
        raise ValueError(f"unknown feature(s): {', '.join(bad)}; known: {', '.join(FEATURES)}")
    return out


def recommend(needs: list[str] | str | None = None, use_case: str | None = None,
              records: list[LibraryRecord] | None = None, directory: str | Path | None = None,
              include_partial: bool = False) -> list[Recommendation]:
    """Libraries that have every needed feature (and fit ``use_case`` if given), best first.

    Each row carries an explanation naming how each needed feature was established.
    With ``include_partial`` libraries missing some needs are listed after, most matches first.
    """
    wanted = parse_needs(needs)
    if use_case is not None and use_case not in USE_CASES:
        raise ValueError(f"unknown use case: {use_case!r}; known: {', '.join(USE_CASES)}")
    out: list[Recommendation] = []
    for row in list_libraries(records, directory):
        lib = row.record.library
        if use_case is not None and use_case not in lib.use_cases:
            continue
        matched, missing, bits = [], [], []
        for f in wanted:
            cell = lib.features.cell(f)
            if cell.value is True:
                matched.append(f)
                bits.append(f"{FEATURE_LABELS[f].lower()} ✓ ({cell.how})")
            else:
                missing.append(f)
                bits.append(f"{FEATURE_LABELS[f].lower()} ✗" + (" (unknown)" if cell.value is None else ""))
        if missing and not include_partial:
            continue
        head = f"rated {row.rating.rating}/7"
        if use_case:
            head += f", fits '{use_case}'"
        explanation = head + (": " + ", ".join(bits) if bits else "")
        out.append(Recommendation(row, tuple(matched), tuple(missing), explanation))
    out.sort(key=lambda r: (len(r.missing), -r.row.rating.score, r.row.slug))
    return out
