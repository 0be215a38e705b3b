"""The published rubric: criteria, weights, and the pure function that rates a library 1–7.

No rating is set by hand. Each criterion maps data (feature cells, measured facts)
to a score from 1 to 7; the rating is the weighted mean of the criteria that
apply, rounded half up. A criterion with no data (e.g. install size of curl, which
is not a Python package) is left out and the remaining weights are renormalised;
the page says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from knollm.libraries.schema import FEATURES, Library, Measurement, effective_import_ms

__all__ = ["Criterion", "CRITERIA", "CriterionScore", "Rating", "rate", "rubric_table"]


def _log_scale(value: float, best: float, worst: float) -> float:
    """7 at or below ``best``, 1 at or above ``worst``, logarithmic in between."""
    if value <= best:
        return 7.0
    if value >= worst:
        return 1.0
    frac = (math.log(value) - math.log(best)) / (math.log(worst) - math.log(best))
    return 7.0 - 6.0 * frac


@dataclass(frozen=True)
class Criterion:
    key: str
    label: str
    weight: int
    description: str
    # returns (score 1..7, explanation) or None when the data is missing
    score: Callable[[Library, Measurement | None], tuple[float, str] | None]


def _features(lib: Library, _m: Measurement | None) -> tuple[float, str]:
    have = [f for f in FEATURES if lib.features.cell(f).value is True]
    score = 1.0 + 6.0 * len(have) / len(FEATURES)
    return score, f"{len(have)} of {len(FEATURES)} features"


def _deps(_lib: Library, m: Measurement | None) -> tuple[float, str] | None:
    if m is None or m.installed_distributions is None:
        return None
    n = m.installed_distributions
    # +1 so that 0 dependencies is defined on the log scale
    return _log_scale(n + 1, 1, 151), f"{n} installed dependencies"


def _size(_lib: Library, m: Measurement | None) -> tuple[float, str] | None:
    if m is None or m.installed_size_bytes is None:
        return None
    mb = m.installed_size_bytes / 1_000_000
    return _log_scale(max(mb, 0.001), 1.0, 500.0), f"{mb:.1f} MB installed"


def _import(_lib: Library, m: Measurement | None) -> tuple[float, str] | None:
    ms = effective_import_ms(m)
    if ms is None:
        return None
    return _log_scale(max(ms, 0.1), 50.0, 5000.0), f"{ms:.0f} ms cold import"


def _portability(lib: Library, _m: Measurement | None) -> tuple[float, str]:
    cell = lib.openai_compatible_base_url
    if cell.value is True and cell.how == "tested":
        return 7.0, "targets any OpenAI-compatible base URL (tested here)"
    if cell.value is True:
        return 5.0, f"targets any OpenAI-compatible base URL ({cell.how})"
    if cell.value is None:
        return 3.0, "unknown whether it targets an OpenAI-compatible base URL"
    return 1.0, "cannot target an OpenAI-compatible base URL"


_PERMISSIVE = ("MIT", "APACHE", "BSD", "ISC", "PSF", "MPL", "CURL", "UNLICENSE", "0BSD")
_COPYLEFT = ("GPL", "AGPL", "LGPL", "EUPL", "SSPL")


def _licence(lib: Library, m: Measurement | None) -> tuple[float, str] | None:
    if lib.pypi is None:
        return None
    if m is None or not m.license:
        return (1.0, "no licence in the package metadata") if m is not None and m.version else None
    upper = m.license.upper()
    if any(c in upper for c in _COPYLEFT):
        return 3.0, f"copyleft licence ({m.license})"
    if any(p in upper for p in _PERMISSIVE):
        return 7.0, f"permissive licence ({m.license})"
    return 4.0, f"other licence ({m.license})"


CRITERIA: tuple[Criterion, ...] = (
    Criterion("features", "Feature coverage", 40,
              "1 + 6 × (features present ÷ 9) over async, streaming, tool calling, structured output, "
              "multi-provider, retries, typed responses, local models, observability hooks. "
              "Unknown counts as absent.", _features),
    Criterion("dependencies", "Dependency footprint", 15,
              "All installed distributions in a fresh venv (measured). 0 → 7, 150+ → 1, logarithmic.", _deps),
    Criterion("size", "Install size", 10,
              "Site-packages bytes in a fresh venv (measured). ≤1 MB → 7, ≥500 MB → 1, logarithmic.", _size),
    Criterion("import_time", "Cold import time", 15,
              "Median cold import (measured): the larger of `import MODULE` and the entry statement (e.g. `from openai import OpenAI`), since some packages import lazily. ≤50 ms → 7, ≥5 s → 1, logarithmic.", _import),
    Criterion("portability", "Portability", 10,
              "Can it target any OpenAI-compatible server by base URL? Tested here → 7, documented → 5, "
              "unknown → 3, no → 1.", _portability),
    Criterion("licence", "Licence", 10,
              "From the package metadata (measured): permissive → 7, other → 4, copyleft → 3, none → 1.", _licence),
)


@dataclass(frozen=True)
class CriterionScore:
    key: str
    label: str
    weight: int
    score: float | None  # None: no data, left out
    explanation: str


@dataclass(frozen=True)
class Rating:
    rating: int  # 1..7
    score: float  # weighted mean, 1..7
    criteria: tuple[CriterionScore, ...]

    def as_dict(self) -> dict:
        return {
            "rating": self.rating,
            "score": round(self.score, 2),
            "criteria": [
                {"key": c.key, "label": c.label, "weight": c.weight,
                 "score": None if c.score is None else round(c.score, 2), "explanation": c.explanation}
                for c in self.criteria
            ],
        }


def rate(lib: Library, measurement: Measurement | None) -> Rating:
    """Pure: the same data always gives the same rating."""
    parts: list[CriterionScore] = []
    total = weights = 0.0
    for c in CRITERIA:
        got = c.score(lib, measurement)
        if got is None:
            parts.append(CriterionScore(c.key, c.label, c.weight, None, "no data: left out, weights renormalised"))
            continue
        score, why = got
        score = min(7.0, max(1.0, score))
        parts.append(CriterionScore(c.key, c.label, c.weight, score, why))
        total += score * c.weight
        weights += c.weight
    mean = total / weights if weights else 1.0
    rating = int(math.floor(mean + 0.5))
    return Rating(rating=min(7, max(1, rating)), score=mean, criteria=tuple(parts))


def rubric_table() -> list[dict]:
    return [{"key": c.key, "label": c.label, "weight": c.weight, "description": c.description} for c in CRITERIA]
