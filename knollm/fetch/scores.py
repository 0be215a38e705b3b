"""Quality scores from Artificial Analysis' free data API (needs a key; attribution required).

``GET https://artificialanalysis.ai/api/v2/data/llms/models`` with the key in the
``x-api-key`` header (``$ARTIFICIAL_ANALYSIS_API_KEY``; a free account, 1,000 requests
a day) returns one record per model: ``id`` (stable), ``name``, ``slug``,
``model_creator`` {id, name, slug}, ``evaluations`` (index and benchmark scores),
``pricing`` (USD per 1M tokens) and median output speed / time to first token. Their
terms require attribution to https://artificialanalysis.ai/ wherever the data is shown.

:func:`fetch_scores` writes ``scores_artificialanalysis.json`` next to the dumps (the
catalog reads ``models_*.json`` only, so scores never mix with provider data); the site's
Measured page shows them with the attribution, and hides the table when the file is absent.
A good file is never replaced by a bad answer: nothing usable in it (no record with an id and
a name), or fewer than half the models of the existing file (unless ``force``,
``knollm fetch --force``), is a :class:`FetchError` and the file stays as it was.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from knollm.errors import FetchError

__all__ = ["AA_URL", "KEY_ENV", "SCORES_FILE", "fetch_scores", "parse_scores", "load_scores"]

AA_URL = "https://artificialanalysis.ai/api/v2/data/llms/models"
KEY_ENV = "ARTIFICIAL_ANALYSIS_API_KEY"
SCORES_FILE = "scores_artificialanalysis.json"
ATTRIBUTION = "https://artificialanalysis.ai/"


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def parse_scores(payload: Any, where: str = AA_URL) -> list[dict[str, Any]]:
    """The records of an answer; a record without an id or name is skipped, a payload
    without a ``data`` list is a :class:`FetchError` naming ``where``."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise FetchError(f"{where}: no 'data' list in the answer")
    out = []
    for r in data:
        if not isinstance(r, dict) or not r.get("id") or not r.get("name"):
            continue
        creator = r.get("model_creator") if isinstance(r.get("model_creator"), dict) else {}
        out.append({
            "id": str(r["id"]), "name": str(r["name"]), "slug": r.get("slug"),
            "creator": creator.get("name"),
            "evaluations": {k: _num(v) for k, v in (r.get("evaluations") or {}).items() if _num(v) is not None},
            "pricing": {k: _num(v) for k, v in (r.get("pricing") or {}).items() if _num(v) is not None},
            "median_output_tokens_per_second": _num(r.get("median_output_tokens_per_second")),
            "median_time_to_first_token_seconds": _num(r.get("median_time_to_first_token_seconds")),
        })
    return out


#: an answer with fewer than this fraction of the existing file's models is refused (unless forced)
SHRINK_LIMIT = 0.5


def fetch_scores(out_dir: str | Path, *, env: Any = None, url: str | None = None, timeout: float = 30.0,
                 force: bool = False) -> Path | None:
    """Fetch and write the scores; None (nothing fetched) when the key is not set. An answer
    with no usable record, or (unless ``force``) with fewer than half the models of the
    existing scores file, raises :class:`FetchError` and leaves the file untouched."""
    import httpx2
    import orjson

    from knollm.fsutil import atomic_write

    url = url or AA_URL
    key = (os.environ if env is None else env).get(KEY_ENV, "").strip()
    if not key:
        return None
    try:
        r = httpx2.get(url, headers={"x-api-key": key, "accept": "application/json"}, timeout=timeout)
    except httpx2.HTTPError as e:
        raise FetchError(f"{url}: {type(e).__name__}") from None
    if r.status_code != 200:
        raise FetchError(f"{url}: HTTP {r.status_code}" + (" (check $" + KEY_ENV + ")" if r.status_code == 401 else ""))
    try:
        payload = orjson.loads(r.content)
    except orjson.JSONDecodeError:
        raise FetchError(f"{url}: the answer is not JSON") from None
    models = parse_scores(payload, url)
    path = Path(out_dir) / SCORES_FILE
    if not models:
        n = len(payload["data"])
        raise FetchError(f"{url}: no usable record in the answer ({n} record(s), none with an id and a name); "
                         f"{SCORES_FILE} kept")
    before = load_scores(out_dir)
    n_before = len({m.get("id") for m in before["models"] if isinstance(m, dict)}) if before else 0
    n_now = len({m["id"] for m in models})
    if n_before and n_now < SHRINK_LIMIT * n_before and not force:
        raise FetchError(f"{url}: the answer lists {n_now} model(s), fewer than half of the {n_before} in "
                         f"{SCORES_FILE} (a partial answer?); kept, use --force to accept it")
    doc = {"source": "Artificial Analysis", "attribution": ATTRIBUTION, "url": url,
           "fetched_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "models": models}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    return path


def load_scores(dumps: str | Path | None) -> dict[str, Any] | None:
    """The scores file next to the dumps, or None (then the site hides the table)."""
    import orjson

    if dumps is None:
        return None
    p = Path(dumps) / SCORES_FILE
    try:
        doc = orjson.loads(p.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("models"), list) else None
