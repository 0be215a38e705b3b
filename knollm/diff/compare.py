"""What changed between two catalogs (or two dump directories).

:func:`diff_paths` loads each side – a dump directory is built into a catalog with
``build_catalog(dir, registries=False)`` so only dump changes show; a file is read as a
catalog JSON – and :func:`diff_catalogs` compares them by model key. A side whose build
warned (an unreadable dump, a bad record…) makes the diff **incomplete**: its models would
show as removed or added when they were only not read, so the diff carries
``"incomplete": true`` and the ``warnings`` (each with its ``side``), and
:func:`save_diff` refuses it (a broken refresh never enters the change history).

* **added** / **removed** – keys only on one side
* **renamed** – same provider, a removed and an added model with the same
  ``canonical_id`` (else the same name), paired only when that value is unique on both
  sides (no other model of the provider, kept or not, has it: OpenRouter's ``:free`` gone
  and ``:nitro`` new while the base model stays is a removal and an addition, not a rename);
  taken out of added/removed; a rename's own price / field changes are listed with it
* **repriced** – a price field (USD / 1M tokens) changed; ``pct`` is the % change
* **changed** – context window, max output, deprecation or a capability flag changed

Renderers are plain functions: :func:`render_text`, :func:`render_markdown`, the JSON
is the diff dict itself; for the site :func:`render_changes_markdown` (a "What changed"
page from several diffs) and :func:`render_atom` (an Atom feed). :func:`save_diff` /
:func:`load_diffs` keep dated diffs in a directory (``work/model_catalog/changes/``): the
first of a day as ``<date>.json``, later ones the same day as ``<date>-2.json``, ``-3``…
(the diff's ``seq``), read back newest first.
"""

from __future__ import annotations

import html
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from glob import escape as glob_escape
from xml.etree import ElementTree as ET

import orjson

from knollm.errors import CatalogError
from knollm.fmt import fmt_int, fmt_price
from knollm.site.render import md_text
from knollm.vocab import CAPABILITIES, PRICE_FIELDS

__all__ = [
    "DIFF_VERSION",
    "diff_catalogs",
    "diff_paths",
    "has_changes",
    "IncompleteDiff",
    "catalog_warnings",
    "load_catalog_or_dumps",
    "load_diffs",
    "render_atom",
    "render_changes_markdown",
    "render_markdown",
    "render_text",
    "save_diff",
    "format_warning",
    "change_rows",
]

DIFF_VERSION = 1
#: non-price fields compared for "changed"
CHANGE_FIELDS: tuple[str, ...] = ("context_window", "max_output", "deprecated") + tuple(
    f"capabilities.{c}" for c in CAPABILITIES
)


# -- loading ---------------------------------------------------------------------------------

def load_catalog_or_dumps(path: str | Path, *, registries: bool = False) -> dict:
    """A catalog dict from a dump directory (built) or a catalog JSON file."""
    p = Path(path)
    if p.is_dir():
        from knollm.catalog.build import build_catalog

        return build_catalog(p, registries=registries)
    if not p.exists():
        raise CatalogError(f"{p}: no such file or directory")
    try:
        doc = orjson.loads(p.read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise CatalogError(f"{p}: not a readable catalog JSON file: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), list):
        raise CatalogError(f"{p}: not a Knollm catalog (no 'models' list); give a catalog file or a dump directory")
    return doc


class IncompleteDiff(CatalogError):
    """A diff built from a side whose input could not all be read: not saved."""


def catalog_warnings(cat: dict) -> list[dict]:
    """The catalog's warnings (level ``warning``: input not read as given; data findings and
    infos are not counted)."""
    return [w for w in cat.get("warnings") or [] if isinstance(w, dict) and w.get("level", "warning") == "warning"]


def diff_paths(old: str | Path, new: str | Path, *, date: str | None = None, registries: bool = False) -> dict:
    """Diff two dump directories and/or catalog files; ``incomplete`` (with the ``warnings``)
    when either side's build warned."""
    a = load_catalog_or_dumps(old, registries=registries)
    b = load_catalog_or_dumps(new, registries=registries)
    d = diff_catalogs(a, b, old_label=str(old), new_label=str(new), date=date)
    warnings = [{"side": side, **w} for side, cat in (("old", a), ("new", b)) for w in catalog_warnings(cat)]
    if warnings:
        d["incomplete"] = True
        d["warnings"] = warnings
    return d


def format_warning(w: dict) -> str:
    where = w.get("file") or "?"
    if w.get("record") is not None:
        where += f" [{w['record']}]"
    return f"{w.get('side', '?')}: {where}: {w.get('message')}"


# -- diffing ---------------------------------------------------------------------------------

def _get(m: dict, path: str) -> Any:
    cur: Any = m
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _pct(old: Any, new: Any) -> float | None:
    if isinstance(old, (int, float)) and isinstance(new, (int, float)) and old:
        return round((new - old) / old * 100, 2)
    return None


def _summary(m: dict) -> dict:
    p = m.get("prices") or {}
    return {
        "key": m.get("key"),
        "provider": m.get("provider"),
        "id": m.get("id"),
        "name": m.get("name"),
        "canonical_id": m.get("canonical_id"),
        "context_window": m.get("context_window"),
        "prices": {"input": p.get("input"), "output": p.get("output")},
    }


def _price_changes(a: dict, b: dict) -> dict:
    out = {}
    pa, pb = a.get("prices") or {}, b.get("prices") or {}
    for f in PRICE_FIELDS:
        x, y = pa.get(f), pb.get(f)
        if (x is None and y is None) or _same(x, y):
            continue
        out[f] = {"old": x, "new": y, "pct": _pct(x, y)}
    return out


def _field_changes(a: dict, b: dict) -> dict:
    out = {}
    for f in CHANGE_FIELDS:
        x, y = _get(a, f), _get(b, f)
        if not _same(x, y):
            out[f] = {"old": x, "new": y}
    return out


def _norm_name(s: Any) -> str | None:
    if not isinstance(s, str) or not s.strip():
        return None
    return re.sub(r"\s+", " ", s.strip().lower())


def diff_catalogs(old: dict, new: dict, *, old_label: str | None = None, new_label: str | None = None,
                  date: str | None = None) -> dict:
    """Compare two catalog dicts; returns the JSON-able diff (see module doc)."""
    om = {m["key"]: m for m in old.get("models", []) if isinstance(m, dict) and m.get("key")}
    nm = {m["key"]: m for m in new.get("models", []) if isinstance(m, dict) and m.get("key")}
    removed_keys = sorted(set(om) - set(nm))
    added_keys = sorted(set(nm) - set(om))

    # renames: same provider, same canonical id (else same name); paired only when the value
    # is unique among the provider's models on both sides (else a variant gone and another
    # variant of the same base model new would pass for a rename)
    renamed: list[dict] = []
    taken: set[str] = set()
    gone: set[str] = set()
    for match in ("canonical_id", "name"):
        def val(m: dict, match: str = match) -> Any:
            return m.get(match) if match == "canonical_id" else _norm_name(m.get("name"))

        def index(models: dict) -> dict[tuple, list[str]]:
            ix: dict[tuple, list[str]] = defaultdict(list)
            for k, m in models.items():
                v = val(m)
                if v:
                    ix[(m.get("provider") or "", v)].append(k)
            return ix

        old_ix, new_ix = index(om), index(nm)
        for rk in removed_keys:
            if rk in gone:
                continue
            r = om[rk]
            rv = val(r)
            if not rv:
                continue
            key = (r.get("provider") or "", rv)
            olds, news = old_ix.get(key, []), new_ix.get(key, [])
            if len(olds) != 1 or len(news) != 1:
                continue
            ak = news[0]
            if ak in taken or ak not in nm or ak in om:
                continue
            a = nm[ak]
            taken.add(ak)
            gone.add(rk)
            changes = {**{f"prices.{k}": v for k, v in _price_changes(r, a).items()},
                       **_field_changes(r, a)}
            renamed.append({"provider": r.get("provider"), "old_key": rk, "new_key": ak,
                            "old_id": r.get("id"), "new_id": a.get("id"), "name": a.get("name"),
                            "match": match, "changes": changes})
    renamed.sort(key=lambda x: x["old_key"])
    added = [_summary(nm[k]) for k in added_keys if k not in taken]
    removed = [_summary(om[k]) for k in removed_keys if k not in gone]

    repriced, changed = [], []
    for k in sorted(set(om) & set(nm)):
        a, b = om[k], nm[k]
        pc = _price_changes(a, b)
        if pc:
            repriced.append({"key": k, "provider": b.get("provider"), "id": b.get("id"), "name": b.get("name"),
                             "changes": pc})
        fc = _field_changes(a, b)
        if fc:
            changed.append({"key": k, "provider": b.get("provider"), "id": b.get("id"), "name": b.get("name"),
                            "changes": fc})

    oprov = {m.get("provider") for m in om.values()}
    nprov = {m.get("provider") for m in nm.values()}
    return {
        "diff_version": DIFF_VERSION,
        "date": date or datetime.now(timezone.utc).date().isoformat(),
        "old": old_label or old.get("generated_at") or "old",
        "new": new_label or new.get("generated_at") or "new",
        "summary": {
            "models_old": len(om),
            "models_new": len(nm),
            "added": len(added),
            "removed": len(removed),
            "renamed": len(renamed),
            "repriced": len(repriced),
            "changed": len(changed),
            "providers_added": sorted(p for p in nprov - oprov if p),
            "providers_removed": sorted(p for p in oprov - nprov if p),
        },
        "added": added,
        "removed": removed,
        "renamed": renamed,
        "repriced": repriced,
        "changed": changed,
    }


def has_changes(diff: dict) -> bool:
    s = diff.get("summary", {})
    return any(s.get(k) for k in ("added", "removed", "renamed", "repriced", "changed"))


# -- rendering -------------------------------------------------------------------------------

def _fmt(v: Any, field: str = "") -> str:
    if v is None:
        return "?"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float) or field.startswith("prices") or field in PRICE_FIELDS:
        if isinstance(v, (int, float)):
            return fmt_price(v, dollar=True, precise=True)
    if isinstance(v, int) and field in ("context_window", "max_output"):
        return fmt_int(v)
    return str(v)


def _fmt_change(field: str, ch: dict) -> str:
    s = f"{field} {_fmt(ch.get('old'), field)} → {_fmt(ch.get('new'), field)}"
    if ch.get("pct") is not None:
        s += f" ({ch['pct']:+.1f}%)"
    return s


def _headline(diff: dict) -> str:
    s = diff.get("summary", {})
    parts = [f"{s.get(k, 0)} {k}" for k in ("added", "removed", "renamed", "repriced", "changed")]
    return ", ".join(parts)


def _model_line(m: dict) -> str:
    bits = [str(m.get("key"))]
    if m.get("name") and m.get("name") != m.get("id"):
        bits.append(str(m["name"]))
    if m.get("context_window"):
        bits.append(f"ctx {_fmt(m['context_window'], 'context_window')}")
    p = m.get("prices") or {}
    if p.get("input") is not None or p.get("output") is not None:
        bits.append(f"{_fmt(p.get('input'), 'prices')} in / {_fmt(p.get('output'), 'prices')} out per 1M")
    return "  ".join(bits)


def _incomplete_note(diff: dict) -> str | None:
    if not diff.get("incomplete"):
        return None
    n = len(diff.get("warnings") or [])
    return (f"INCOMPLETE: {n} warning(s) building the inputs (unreadable dumps or records); models "
            "shown as removed or added may only be unread")


def render_text(diff: dict) -> str:
    """Plain text (also the refresh commit message body)."""
    s = diff["summary"]
    lines = [f"Changes {diff.get('date')}: {_headline(diff)} "
             f"({s['models_old']} → {s['models_new']} models)"]
    note = _incomplete_note(diff)
    if note:
        lines.append(note + " (the warnings are on stderr)")
    if s.get("providers_added"):
        lines.append("New providers: " + ", ".join(s["providers_added"]))
    if s.get("providers_removed"):
        lines.append("Providers gone: " + ", ".join(s["providers_removed"]))
    sections = [
        ("Added", "+", diff["added"], _model_line),
        ("Removed", "-", diff["removed"], _model_line),
        ("Renamed", "~", diff["renamed"], lambda r: f"{r['old_key']} → {r['new_key']} (same {r['match']})"
         + ("; " + "; ".join(_fmt_change(f, c) for f, c in r["changes"].items()) if r["changes"] else "")),
        ("Repriced", "$", diff["repriced"],
         lambda r: f"{r['key']}  " + "; ".join(_fmt_change(f, c) for f, c in r["changes"].items())),
        ("Changed", "*", diff["changed"],
         lambda r: f"{r['key']}  " + "; ".join(_fmt_change(f, c) for f, c in r["changes"].items())),
    ]
    for title, mark, items, fn in sections:
        if items:
            lines.append("")
            lines.append(f"{title} ({len(items)}):")
            lines += [f"  {mark} {fn(x)}" for x in items]
    return "\n".join(lines) + "\n"


def _md(s: Any) -> str:
    """Escape untrusted text for a markdown table cell: the site's :func:`~knollm.site.render.md_text`
    (no HTML, one line, Markdown punctuation – links' ``[]()``, backticks, ``|`` – escaped)."""
    return md_text(s)


def _code(s: Any) -> str:
    t = str(s if s is not None else "").replace("`", "'").replace("\n", " ").replace("|", "\\|")
    return f"`{t}`"


def render_markdown(diff: dict, *, heading_level: int = 2, max_rows: int = 200) -> str:
    """Markdown for one diff: a summary line and a table per kind of change."""
    h = "#" * heading_level
    s = diff["summary"]
    out = [f"{h} {diff.get('date')}", "",
           f"**{_headline(diff)}** — {s['models_old']} → {s['models_new']} models.", ""]
    note = _incomplete_note(diff)
    if note:
        ws = diff.get("warnings") or []
        out += [f"**{note}:**", ""] + [f"- {_md(format_warning(w))}" for w in ws[:20]]
        out += ([f"- … and {len(ws) - 20} more"] if len(ws) > 20 else []) + [""]
    if s.get("providers_added"):
        out += ["New providers: " + ", ".join(_code(p) for p in s["providers_added"]), ""]
    if s.get("providers_removed"):
        out += ["Providers gone: " + ", ".join(_code(p) for p in s["providers_removed"]), ""]

    def table(title: str, cols: list[str], rows: list[list[str]], count: int | None = None) -> None:
        if not rows:
            return
        out.append(f"{h}# {title} ({len(rows) if count is None else count})")
        out.append("")
        out.append("| " + " | ".join(cols) + " |")
        out.append("|" + "---|" * len(cols))
        for r in rows[:max_rows]:
            out.append("| " + " | ".join(r) + " |")
        if len(rows) > max_rows:
            out.append(f"\n… and {len(rows) - max_rows} more.")
        out.append("")

    def price(m: dict) -> str:
        p = m.get("prices") or {}
        if p.get("input") is None and p.get("output") is None:
            return ""
        return f"{_fmt(p.get('input'), 'prices')} / {_fmt(p.get('output'), 'prices')}"

    table("Added", ["model", "name", "context", "$ in / out per 1M"],
          [[_code(m["key"]), _md(m.get("name")), _fmt(m.get("context_window"), "context_window")
            if m.get("context_window") else "", price(m)] for m in diff["added"]])
    table("Removed", ["model", "name"], [[_code(m["key"]), _md(m.get("name"))] for m in diff["removed"]])
    table("Renamed", ["old", "new", "matched by", "changes"],
          [[_code(r["old_key"]), _code(r["new_key"]), r["match"],
            _md("; ".join(_fmt_change(f, c) for f, c in (r.get("changes") or {}).items()))]
           for r in diff["renamed"]])
    table("Repriced", ["model", "field", "old", "new", "change"],
          [[_code(r["key"]), f, _fmt(c["old"], "prices"), _fmt(c["new"], "prices"),
            "" if c.get("pct") is None else f"{c['pct']:+.1f}%"]
           for r in diff["repriced"] for f, c in r["changes"].items()], len(diff["repriced"]))
    table("Changed", ["model", "field", "old", "new"],
          [[_code(r["key"]), f, _md(_fmt(c["old"], f)), _md(_fmt(c["new"], f))]
           for r in diff["changed"] for f, c in r["changes"].items()], len(diff["changed"]))
    if not has_changes(diff):
        out += ["No model changes.", ""]
    return "\n".join(out)


def change_rows(diff: dict) -> list[dict]:
    """One flat row per change (for CSV / tables)."""
    rows: list[dict] = []
    for m in diff["added"]:
        rows.append({"change": "added", "key": m["key"], "field": "", "old": None, "new": m.get("name"), "pct": None})
    for m in diff["removed"]:
        rows.append({"change": "removed", "key": m["key"], "field": "", "old": m.get("name"), "new": None, "pct": None})
    for r in diff["renamed"]:
        rows.append({"change": "renamed", "key": r["new_key"], "field": "key", "old": r["old_key"],
                     "new": r["new_key"], "pct": None})
        for f, c in (r.get("changes") or {}).items():  # the renamed model's own price / field changes
            rows.append({"change": "renamed", "key": r["new_key"], "field": f, "old": c.get("old"),
                         "new": c.get("new"), "pct": c.get("pct")})
    for kind in ("repriced", "changed"):
        for r in diff[kind]:
            for f, c in r["changes"].items():
                rows.append({"change": kind, "key": r["key"], "field": f, "old": c.get("old"), "new": c.get("new"),
                             "pct": c.get("pct")})
    return rows


def render_changes_markdown(diffs: Iterable[dict], *, title: str = "What changed", feed_href: str | None = "feed.xml",
                            max_rows: int = 100) -> str:
    """The site's "What changed" page: newest diff first."""
    diffs = sorted(diffs, key=_order, reverse=True)
    out = [f"# {title}", ""]
    intro = "Models added, removed, renamed, repriced or changed at each refresh of the provider dumps"
    out.append(intro + (f" ([Atom feed]({feed_href}))." if feed_href else "."))
    out.append("")
    if not diffs:
        out += [
            "No refresh has been recorded yet: this site was built from one set of provider dumps, so "
            "there is nothing to compare it with.",
            "",
            "What will appear here: each time the dumps are refreshed (`knollm fetch`, or the scheduled "
            "refresh workflow) and the site is rebuilt, `knollm diff` compares the new dumps with the "
            "previous ones and records one entry per refresh, newest first, listing the models that were "
            "**added**, **removed**, **renamed**, **repriced** (old → new price per field) or otherwise "
            "**changed** (context window, capabilities, deprecation), with the same entries in the Atom feed.",
            "",
        ]
    for d in diffs:
        out.append(render_markdown(d, heading_level=2, max_rows=max_rows))
    return "\n".join(out)


_ATOM = "http://www.w3.org/2005/Atom"


def _seq(d: dict) -> int:
    s = d.get("seq")
    return s if isinstance(s, int) and not isinstance(s, bool) and s > 0 else 1


def _order(d: dict) -> tuple[str, int]:
    """Sort key of saved diffs: date, then the day's sequence number (``<date>-2.json`` …)."""
    return str(d.get("date", "")), _seq(d)


def _atom_time(date: str) -> str:
    d = str(date)
    if len(d) == 10:
        return d + "T00:00:00Z"
    return d


def _html_summary(diff: dict, limit: int = 50) -> str:
    parts = [f"<p>{html.escape(_headline(diff))}</p>"]
    for title, items, fn in (
        ("Added", diff["added"],
         lambda m: m["key"] + (f" — {m['name']}" if m.get("name") and m.get("name") != m.get("id") else "")),
        ("Removed", diff["removed"], lambda m: m["key"]),
        ("Renamed", diff["renamed"], lambda r: f"{r['old_key']} → {r['new_key']}"
         + ("; " + "; ".join(_fmt_change(f, c) for f, c in r["changes"].items()) if r.get("changes") else "")),
        ("Repriced", diff["repriced"],
         lambda r: f"{r['key']}: " + "; ".join(_fmt_change(f, c) for f, c in r["changes"].items())),
        ("Changed", diff["changed"],
         lambda r: f"{r['key']}: " + "; ".join(_fmt_change(f, c) for f, c in r["changes"].items())),
    ):
        if not items:
            continue
        lis = "".join(f"<li>{html.escape(str(fn(x)))}</li>" for x in items[:limit])
        more = f"<li>… and {len(items) - limit} more</li>" if len(items) > limit else ""
        parts.append(f"<h3>{title} ({len(items)})</h3><ul>{lis}{more}</ul>")
    return "".join(parts)


def render_atom(diffs: Iterable[dict], site_url: str, *, title: str = "Knollm: what changed",
                page_path: str = "changes/", feed_path: str = "changes/feed.xml", max_entries: int = 30) -> str:
    """An Atom 1.0 feed, one entry per diff (newest first). All text is XML-escaped."""
    base = site_url.rstrip("/") + "/"
    diffs = sorted(diffs, key=_order, reverse=True)[:max_entries]
    ET.register_namespace("", _ATOM)

    def el(parent, tag, text=None, **attrs):
        e = ET.SubElement(parent, f"{{{_ATOM}}}{tag}", {k: str(v) for k, v in attrs.items()})
        if text is not None:
            e.text = str(text)
        return e

    feed = ET.Element(f"{{{_ATOM}}}feed")
    el(feed, "id", base + page_path)
    el(feed, "title", title)
    updated = _atom_time(diffs[0]["date"]) if diffs else "1970-01-01T00:00:00Z"
    el(feed, "updated", updated)
    el(feed, "link", href=base + feed_path, rel="self", type="application/atom+xml")
    el(feed, "link", href=base + page_path, rel="alternate", type="text/html")
    author = el(feed, "author")
    el(author, "name", "Knollm")
    el(feed, "generator", "knollm")
    used: set[str] = set()
    for d in diffs:
        date = str(d.get("date"))
        # a saved diff's own number (``seq``): its entry id stays the same as more are saved
        n = _seq(d)
        anchor = date if n == 1 else f"{date}-{n}"
        while anchor in used:
            n += 1
            anchor = f"{date}-{n}"
        used.add(anchor)
        entry = el(feed, "entry")
        el(entry, "id", f"{base}{page_path}#{anchor}")
        el(entry, "title", f"{date}: {_headline(d)}")
        el(entry, "updated", _atom_time(date))
        el(entry, "link", href=f"{base}{page_path}#{anchor}", rel="alternate", type="text/html")
        el(entry, "summary", _headline(d))
        el(entry, "content", _html_summary(d), type="html")
    xml = ET.tostring(feed, encoding="unicode")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + xml + "\n"


# -- storing ---------------------------------------------------------------------------------

def save_diff(diff: dict, directory: str | Path) -> Path:
    """Write ``<directory>/<date>.json`` (atomically), or ``<date>-2.json``, ``-3``… when the
    day has a saved diff already (a second refresh the same day never overwrites the first;
    the number is stored as the diff's ``seq``); returns the path. An incomplete diff raises
    :class:`IncompleteDiff` (nothing written)."""
    from knollm.fsutil import atomic_write

    if diff.get("incomplete"):
        raise IncompleteDiff(f"diff not saved to {directory}: {len(diff.get('warnings') or [])} warning(s) "
                             "building the inputs; fix or remove the unreadable dumps first")
    d = Path(directory)
    date = str(diff["date"])
    taken = [1] if (d / f"{date}.json").exists() else []
    for p in d.glob(f"{glob_escape(date)}-*.json") if d.is_dir() else ():
        m = re.fullmatch(re.escape(date) + r"-(\d+)\.json", p.name)
        if m:
            taken.append(int(m.group(1)))
    seq = max(taken) + 1 if taken else 1
    path = d / (f"{date}.json" if seq == 1 else f"{date}-{seq}.json")
    doc = diff if seq == 1 else {**diff, "seq": seq}
    atomic_write(path, orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    return path


def load_diffs(directory: str | Path, limit: int | None = 20) -> list[dict]:
    """Saved diffs, newest first (unreadable files are skipped)."""
    d = Path(directory)
    if not d.is_dir():
        return []
    def order(p: Path) -> tuple[str, int]:  # <date>.json, <date>-2.json … -10.json: by date, then number
        m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})(?:-(\d+))?", p.stem)
        return (m.group(1), int(m.group(2) or 1)) if m else (p.stem, 1)

    out = []
    for p in sorted(d.glob("*.json"), key=order, reverse=True):
        try:
            doc = orjson.loads(p.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        if isinstance(doc, dict) and "summary" in doc and "added" in doc:
            out.append(doc)
        if limit is not None and len(out) >= limit:
            break
    return out
