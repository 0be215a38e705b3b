"""Source disagreements: every offer where the sources say different things.

The catalog keeps, for every model, the values of the sources it did *not* show
(``Model.alternatives``: field path -> {source: value}). :func:`disagreements` turns them
into audit rows – one per (offer, field) where another source of the *same offer*
disagrees beyond a tolerance – with each source's value, the value Knollm shows, its
source and why it won. ``knollm audit`` and the site's "Data audit" page print them.

What counts as a disagreement:

* prices, context window, max output: relative difference above ``tolerance``
  (default 5 %), or one source knows a value Knollm does not show (a registry zero shown
  as unknown, a borrowed max output not published);
* capabilities, deprecation: any difference.

Values from *another* provider's entry (``models.dev~canonical`` / ``~family``) are
references, not sources of this offer; they are left out unless ``references=True``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["FIELD_GROUPS", "PRECEDENCE", "disagreements", "summary", "render_markdown", "row_text"]

#: audit field groups (the ``--field`` choices)
FIELD_GROUPS = ("price", "context", "max_output", "capability", "deprecation")

#: the documented precedence per group (knollm.catalog.schema)
PRECEDENCE = {
    "price": "dump > genai-prices > models.dev > litellm (an exact models.dev entry before a genai-prices rule "
             "or alias match)",
    "context": "dump > models.dev > genai-prices > litellm > models.dev (canonical)",
    "max_output": "dump > models.dev > genai-prices > litellm > models.dev (canonical)",
    "capability": "dump > models.dev > litellm > models.dev (canonical) > models.dev (family) > inferred",
    "deprecation": "dump > models.dev > genai-prices > litellm, then a retirement date; Knollm's registry for "
                   "retired models",
}


def _group(path: str) -> str | None:
    if path.startswith("prices."):
        return "price"
    if path.startswith("capabilities."):
        return "capability"
    return {"context_window": "context", "max_output": "max_output", "deprecated": "deprecation"}.get(path)


def _shown(m: dict[str, Any], path: str) -> Any:
    head, _, tail = path.partition(".")
    v = m.get(head)
    return v.get(tail) if tail and isinstance(v, dict) else v


def _beyond(a: Any, b: Any, tolerance: float) -> bool:
    if a is None or b is None:
        return a is not b
    if isinstance(a, bool) or isinstance(b, bool):
        return a is not b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        hi = max(abs(a), abs(b))
        return hi > 0 and abs(a - b) / hi > tolerance
    return a != b


def _why(m: dict[str, Any], path: str, group: str, shown: Any, values: dict[str, Any]) -> str:
    flags = m.get("flags") or []
    if group == "price" and shown is None and path in ("prices.input", "prices.output"):
        if "zero_price_disputed" in flags:
            return "a registry's zero price (or LiteLLM's 0/0) is contradicted by another source: shown as unknown"
        if "zero_price_unconfirmed" in flags:
            return "a registry's zero price (or LiteLLM's 0/0) no other source confirms: shown as unknown (not 'free')"
    ctx = m.get("context_window")
    if group == "max_output" and ctx and any(isinstance(v, int) and v > ctx for v in values.values()):
        return f"a max output above the context window ({ctx}) borrowed from another source is not published"
    sus = (m.get("suspect") or {}).get(path)
    src = (m.get("sources") or {}).get(path)
    if shown is None:
        return "no source of this offer is used for it (see the rules in the catalog schema)"
    why = f"{src} comes first in the precedence ({PRECEDENCE[group]})"
    if sus:
        why += f"; marked suspect ({sus})"
    return why


def disagreements(cat: dict[str, Any], *, tolerance: float = 0.05, fields: tuple[str, ...] | None = None,
                  providers: set[str] | None = None, references: bool = False) -> list[dict[str, Any]]:
    """Audit rows, sorted by provider, model and field."""
    want = set(fields or FIELD_GROUPS)
    out: list[dict[str, Any]] = []
    for m in cat.get("models") or ():
        alts = m.get("alternatives")
        if not alts or (providers and m["provider"] not in providers):
            continue
        for path, others in alts.items():
            group = _group(path)
            if group is None or group not in want:
                continue
            vals = {s: v for s, v in others.items() if references or "~" not in s}
            shown = _shown(m, path)
            diff = {s: v for s, v in vals.items() if _beyond(v, shown, tolerance)}
            if not diff:
                continue
            src = (m.get("sources") or {}).get(path)
            values = dict(diff)
            if src is not None:
                values = {src: shown, **values}
            out.append({
                "key": m["key"], "provider": m["provider"], "field": path, "group": group,
                "shown": shown, "shown_source": src, "values": values,
                "why": _why(m, path, group, shown, diff),
                "suspect": (m.get("suspect") or {}).get(path),
            })
    out.sort(key=lambda r: (r["provider"], r["key"].lower(), r["field"]))
    return out


def summary(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Rows per field group, and the registry-zero cases."""
    c = Counter(r["group"] for r in rows)
    out = {g: c.get(g, 0) for g in FIELD_GROUPS}
    out["registry_zero"] = sum(1 for r in rows if "registry's zero" in r["why"])
    out["offers"] = len({r["key"] for r in rows})
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "unknown"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def row_text(r: dict[str, Any]) -> str:
    """One row's source values as text: ``dump=1.0; litellm=1.2``."""
    return "; ".join(f"{s}={_fmt(v)}" for s, v in r["values"].items())


def render_markdown(rows: list[dict[str, Any]], esc=None, max_rows: int | None = None) -> str:
    """A Markdown table of the rows. ``esc`` escapes provider text for one table cell: the site passes
    :func:`knollm.site.render.md_text` (HTML and Markdown punctuation, so a model id like
    ``[x](javascript:…)`` is no link); the default only escapes ``|`` (terminal / file output)."""
    esc = esc or (lambda s: str(s).replace("|", "\\|"))
    s = summary(rows)
    head = [f"{len(rows)} disagreements on {s['offers']} offers: "
            + ", ".join(f"{g} {s[g]}" for g in FIELD_GROUPS) + f"; registry zeros shown as unknown: "
            f"{s['registry_zero']}.", "",
            "| Model | Field | Shown | Each source | Why |", "|---|---|---|---|---|"]
    body = [f"| {esc(r['key'])} | {esc(r['field'])} | {esc(_fmt(r['shown']))}"
            f"{' ⚠ suspect' if r['suspect'] else ''} | {esc(row_text(r))} | {esc(r['why'])} |"
            for r in (rows if max_rows is None else rows[:max_rows])]
    if max_rows is not None and len(rows) > max_rows:
        body.append(f"| … {len(rows) - max_rows} more (`knollm audit --json`) | | | | |")
    return "\n".join(head + body) + "\n"
