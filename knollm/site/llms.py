"""``llms.txt`` and ``llms-full.txt``: the site described for language models (plain render functions).

``llms.txt`` (the llmstxt.org layout: a title, a one-line summary, then sections of links)
says what Knollm is, how to query it (CLI, Python, MCP) and links the data files.
``llms-full.txt`` is every provider and model in plain text: one line per model with its
context, prices (USD / 1M tokens, ``?`` = unknown) and known capabilities, and the source
of each value. Provider text is untrusted: control characters and newlines are folded so
a value cannot start a line of its own.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from knollm.fmt import fmt_price, fmt_tokens
from knollm.vocab import CAPABILITIES

__all__ = ["render_llms_txt", "render_llms_full_txt", "plain"]

_CTRL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def plain(text: object) -> str:
    """One line of plain text: control characters and newlines become a space."""
    return "" if text is None else _CTRL.sub(" ", str(text)).strip()


def render_llms_txt(cat: dict[str, Any], *, full_catalog: bool = True, use_directory_urls: bool = True) -> str:
    from knollm.site.render import page_url

    stats = cat.get("stats") or {}
    n_models, n_prov = len(cat["models"]), len(cat["providers"])
    data = [("catalog.json", "the whole catalog: every model and provider with the source of each value")
            if full_catalog else None,
            ("schema.json", "JSON Schema of the catalog (field meanings)"),
            ("models.csv", "one row per model: prices, context, capabilities, price source"),
            ("data/index.json", "the compact explorer index"),
            ("llms-full.txt", "every provider and model in plain text")]
    out = [
        "# Knollm",
        "",
        f"> A sourced catalog of {n_models:,} LLM models from {n_prov} providers (data date "
        f"{cat.get('data_date') or 'unknown'}): prices in USD per 1M tokens, context windows, capabilities, "
        "and where each model is served. Every value names its source; an unknown price is unknown, never 0.",
        "",
        "Sources: " + ", ".join(plain(s.get("name")) + (f" {plain(s['version'])}" if s.get("version") else "")
                                for s in cat.get("sources") or []) + ".",
        f"Coverage: prices for {stats.get('coverage_price_pct', '?')}% of models, context for "
        f"{stats.get('coverage_context_pct', '?')}%.",
        "",
        "## Query it",
        "",
        "- `knollm models search TEXT --capability tools --max-input-price 1 --sort price`: filter models",
        "- `knollm models where MODEL`: every provider serving a model, cheapest first",
        "- `knollm cost MODEL… --input 2k --output 500 --requests 10k`: what a workload costs",
        "- `knollm recommend USE_CASE --budget USD_PER_1K`: ranked models with reasons",
        "- Python: `from knollm import Catalog; Catalog.load().where(\"llama-3.3-70b-instruct\")`",
        "- MCP: `knollm mcp` (stdio) or `knollm mcp --transport http --port N`; tools search_models, "
        "get_provider_models, get_model, where_is, compare_models, recommend_for_use_case, get_cost_analysis, "
        "validate_lockfile, create_lockfile_binding, list_libraries, recommend_library",
        "",
        "## Data files",
        "",
        *[f"- [{path}]({path}): {what}" for path, what in (d for d in data if d)],
        "",
        "## Docs",
        "",
        f"- [Command line]({page_url('cli.md', use_directory_urls)}): every command",
        f"- [MCP server and advisor]({page_url('mcp.md', use_directory_urls)}): tools for agents, the lockfile advisor",
        "",
    ]
    return "\n".join(out)


def _model_line(m: dict[str, Any]) -> str:
    p = m.get("prices") or {}
    src = m.get("sources") or {}
    caps = [c for c in CAPABILITIES if (m.get("capabilities") or {}).get(c) is True]
    ctx = m.get("context_window")
    bits = [f"- {plain(m['key'])}",
            f"context {fmt_tokens(ctx) if ctx else '?'}" + (f" ({plain(src['context_window'])})"
                                                            if ctx and src.get("context_window") else ""),
            f"in ${fmt_price(p.get('input'))} out ${fmt_price(p.get('output'))}"
            + (f" ({plain(src.get('prices.input') or src.get('prices.output'))})"
               if src.get("prices.input") or src.get("prices.output") else ""),
            "caps " + (",".join(caps) or "none known")]
    if m.get("deprecated"):
        bits.append("deprecated")
    if m.get("canonical_id") and m["canonical_id"] != m.get("id"):
        bits.append(f"canonical {plain(m['canonical_id'])}")
    return " | ".join(bits)


def render_llms_full_txt(cat: dict[str, Any]) -> str:
    by_p: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in cat["models"]:
        by_p[m["provider"]].append(m)
    out = [f"# Knollm catalog, data date {cat.get('data_date') or 'unknown'}",
           "",
           "Prices: USD per 1M input / output tokens; ? = unknown (never 0). The source of a value is in",
           "parentheses (dump = the provider's own model list; genai-prices, models.dev = registries).",
           ""]
    for p in sorted(cat["providers"], key=lambda p: p["id"]):
        models = sorted(by_p.get(p["id"], []), key=lambda m: m["key"])
        out.append(f"## {plain(p.get('name') or p['id'])} ({plain(p['id'])}): {len(models)} models")
        facts = [f"base URL {plain(p['base_url'])}" if p.get("base_url") else None,
                 "key " + ", ".join(plain(k) for k in p["api_key_env"]) if p.get("api_key_env") else None,
                 "sources " + ", ".join(plain(s) for s in p.get("sources") or []) if p.get("sources") else None]
        if any(facts):
            out.append("; ".join(f for f in facts if f))
        out += [_model_line(m) for m in models]
        out.append("")
    return "\n".join(out)
