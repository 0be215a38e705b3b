"""Machine-readable outputs of the site, as bytes (the plugin writes them into ``site_dir``).

* ``data/index.json`` – :func:`explorer_index`: the compact column-oriented index the
  explorer, calculator and chart run on (provider ids as small ints, numbers as numbers,
  ``null`` = unknown).
* ``data/index-head.json`` – :func:`explorer_head`: the same format with only the first rows
  of the explorer's default view, so the first results show before the full index arrives.
* ``data/models/<bucket>.json`` – :func:`detail_chunks`: full model dicts, split into
  :data:`BUCKETS` files by :func:`bucket_of` (FNV-1a of the model key's UTF-8 bytes; the
  JavaScript computes the same hash) so a model detail view downloads ~1% of the catalog.
* ``models.csv`` – :func:`catalog_csv`.
* ``catalog.json`` / ``schema.json`` – the catalog and :func:`knollm.catalog.schema.json_schema`.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from typing import Any

import orjson

from knollm import vocab
from knollm.vocab import CAPABILITIES, CAPABILITY_BIT, KINDS, PRICE_FIELDS

__all__ = [
    "SITE_INDEX_VERSION", "BUCKETS", "FLAG_BITS", "KINDS", "bucket_of", "canonical_multi", "slugify",
    "canonical_slugs", "explorer_index", "explorer_index_bytes", "explorer_head", "detail_chunks", "catalog_csv",
    "CSV_COLUMNS", "HEAD_ROWS",
]

SITE_INDEX_VERSION = 1
BUCKETS = 128
#: bits of the index's ``f`` column
FLAG_BITS = {"free": 1, "open_weights": 2, "deprecated": 4, "variable_pricing": 8, "registry_only": 16,
             "suspect_input": 32, "suspect_output": 64, "suspect_cache_read": 128, "suspect_request": 256,
             "suspect": 512, "first_party": 1024, "suspect_context": 2048}
#: rows in ``data/index-head.json`` (the explorer shows 60 at first)
HEAD_ROWS = 60


def bucket_of(key: str, buckets: int = BUCKETS) -> int:
    """FNV-1a (32 bit) of ``key``'s UTF-8 bytes, modulo ``buckets`` (same as ``bucketOf`` in knollm.js)."""
    h = 0x811C9DC5
    for b in key.encode("utf-8"):
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h % buckets


def slugify(text: str) -> str:
    """A file-name-safe slug: ``[a-z0-9._-]``; ``/`` becomes ``--``."""
    out = []
    for ch in text.lower().replace("/", "--"):
        out.append(ch if (ch.isascii() and (ch.isalnum() or ch in "._-")) else "-")
    s = "".join(out).strip(".-") or "x"
    return s[:120]


def canonical_multi(models: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Canonical id -> its offers, for canonical models served by 2+ providers."""
    g: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in models:
        g[m["canonical_id"]].append(m)
    return {c: offers for c, offers in g.items() if len({o["provider"] for o in offers}) >= 2}


def canonical_slugs(canon_ids) -> dict[str, str]:
    """Unique slug per canonical id (a numbered suffix on collision), deterministic."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for c in sorted(canon_ids):
        base = slugify(c)
        s, n = base, 1
        while s in taken:
            n += 1
            s = f"{base}-{n}"
        taken.add(s)
        out[c] = s
    return out


def _bits(values, names: tuple[str, ...] | list[str]) -> int:
    b = 0
    for i, n in enumerate(names):
        if n in values:
            b |= 1 << i
    return b


def explorer_index(cat: dict[str, Any], *, use_directory_urls: bool = True,
                   canon_slugs: dict[str, str] | None = None) -> dict[str, Any]:
    """The compact, column-oriented explorer index (see the API page for the format)."""
    models = cat["models"]
    providers = cat["providers"]
    pidx = {p["id"]: i for i, p in enumerate(providers)}
    mods = sorted({x for m in models for x in (m.get("input_modalities") or []) + (m.get("output_modalities") or [])})
    if canon_slugs is None:
        canon_slugs = canonical_slugs(canonical_multi(models))
    canon_list = sorted(canon_slugs)
    cidx = {c: i for i, c in enumerate(canon_list)}
    cols: dict[str, list] = {k: [] for k in ("i", "p", "n", "cx", "mo", "pi", "po", "pc", "pr", "ct", "im", "om",
                                             "f", "k", "cn", "d", "tr", "cs")}
    for m in models:
        pr = m.get("prices") or {}
        caps = m.get("capabilities") or {}
        flags = 0
        if m.get("free"):
            flags |= 1
        if m.get("open_weights") is True:
            flags |= 2
        if m.get("deprecated"):
            flags |= 4
        if m.get("variable_pricing"):
            flags |= 8
        if "registry_only" in (m.get("flags") or []):
            flags |= 16
        sus = m.get("suspect") or {}
        for f in ("input", "output", "cache_read", "request"):
            if f"prices.{f}" in sus:
                flags |= FLAG_BITS[f"suspect_{f}"]
        if "context_window" in sus:  # (a placeholder window passes no context bound: Filters' rule)
            flags |= FLAG_BITS["suspect_context"]
        if sus:
            flags |= FLAG_BITS["suspect"]
        if (vocab.first_party(m.get("family")) or vocab.first_party(m["canonical_id"])) == m["provider"]:
            flags |= FLAG_BITS["first_party"]  # the maker's own offer (same rule as knollm.query.index.is_first_party)
        name = m.get("name")
        cols["i"].append(m["id"])
        cols["p"].append(pidx.get(m["provider"], -1))
        cols["n"].append(name if name and name != m["id"] else None)
        cols["cx"].append(m.get("context_window"))
        cols["mo"].append(m.get("max_output"))
        cols["pi"].append(pr.get("input"))
        cols["po"].append(pr.get("output"))
        cols["pc"].append(pr.get("cache_read"))
        cols["pr"].append(pr.get("request"))
        cols["ct"].append(sum(CAPABILITY_BIT[c] for c in CAPABILITIES if caps.get(c) is True))
        cols["im"].append(_bits(set(m.get("input_modalities") or []), mods))
        cols["om"].append(_bits(set(m.get("output_modalities") or []), mods))
        cols["f"].append(flags)
        cols["k"].append(KINDS.index(m["kind"]) if m.get("kind") in KINDS else len(KINDS) - 1)
        cols["cn"].append(cidx.get(m["canonical_id"], -1))
        cols["d"].append(m.get("release_date") or (m.get("created") or "")[:10] or None)
        cols["tr"].append(m.get("price_tiers") or None)
        # the canonical id for the search text (Filters matches it) when neither ``cn`` nor the key / name has it
        cid = m["canonical_id"]
        hay = f"{m['key']} {name or ''}".lower()
        cols["cs"].append(cid if cid not in cidx and cid.lower() not in hay else None)
    return {
        "v": SITE_INDEX_VERSION,
        "generated_at": cat.get("generated_at"),
        "data_date": cat.get("data_date"),
        "count": len(models),
        "dirurls": bool(use_directory_urls),
        "buckets": BUCKETS,
        "providers": [[p["id"], p.get("name") or p["id"]] for p in providers],
        "caps": list(CAPABILITIES),
        "mods": mods,
        "kinds": list(KINDS),
        "flags": FLAG_BITS,
        "vocab": vocab.as_json(),
        "canon": [[c, canon_slugs[c]] for c in canon_list],
        "m": cols,
    }


def explorer_index_bytes(index: dict[str, Any]) -> bytes:
    return orjson.dumps(index)


def explorer_head(index: dict[str, Any], rows: int = HEAD_ROWS) -> dict[str, Any]:
    """The first ``rows`` rows of the explorer's default view (current models, by display name
    then key: the order of ``byName`` in knollm.js), in the index format; ``head: true`` and
    ``count`` = the full index's model count. No canonical list (the head is not searched)."""
    m = index["m"]
    deprecated = index["flags"]["deprecated"]
    keys = [index["providers"][p][0] + "/" + i if p >= 0 else "?/" + i for p, i in zip(m["p"], m["i"])]
    order = sorted((r for r in range(len(m["i"])) if not m["f"][r] & deprecated),
                   key=lambda r: ((m["n"][r] or m["i"][r]).lower(), keys[r]))[:rows]
    head = {k: v for k, v in index.items() if k not in ("m", "canon")}
    head["canon"] = []
    head["head"] = True
    head["m"] = {c: [(-1 if c == "cn" else vals[r]) for r in order] for c, vals in m.items()}
    return head


def detail_chunks(cat: dict[str, Any], buckets: int = BUCKETS) -> dict[int, bytes]:
    """``{bucket: JSON bytes}``: full model dicts grouped by :func:`bucket_of` of their key."""
    groups: dict[int, list] = defaultdict(list)
    for m in cat["models"]:
        groups[bucket_of(m["key"], buckets)].append(m)
    return {b: orjson.dumps(groups.get(b, [])) for b in range(buckets)}


CSV_COLUMNS = (
    ["key", "provider", "id", "name", "canonical_id", "kind", "context_window", "max_output"]
    + [f"price_{p}" for p in PRICE_FIELDS]
    + ["free", "variable_pricing", "open_weights", "deprecated", "release_date", "input_modalities",
       "output_modalities"]
    + [f"cap_{c}" for c in CAPABILITIES]
)

_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _csv_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if isinstance(v, float) else str(v)
    s = str(v)
    # a spreadsheet would evaluate a cell starting with = + - @ as a formula
    return "'" + s if s.startswith(_FORMULA) else s


def catalog_csv(cat: dict[str, Any]) -> bytes:
    """Every model as one CSV row (:data:`CSV_COLUMNS`); unknown = empty cell."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for m in cat["models"]:
        pr = m.get("prices") or {}
        caps = m.get("capabilities") or {}
        row = [m["key"], m["provider"], m["id"], m.get("name"), m.get("canonical_id"), m.get("kind"),
               m.get("context_window"), m.get("max_output")]
        row += [pr.get(p) for p in PRICE_FIELDS]
        row += [m.get("free"), m.get("variable_pricing"), m.get("open_weights"), m.get("deprecated"),
                m.get("release_date"), " ".join(m.get("input_modalities") or []),
                " ".join(m.get("output_modalities") or [])]
        row += [caps.get(c) for c in CAPABILITIES]
        w.writerow([_csv_text(v) for v in row])
    return buf.getvalue().encode("utf-8")
