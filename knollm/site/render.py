"""Markdown (with HTML tables) for the site's generated pages. Plain functions returning strings.

Escaping rules
--------------
* Data goes into HTML that we build ourselves, through :func:`esc` (``html.escape``;
  newlines folded), because Markdown inside a raw HTML block is not processed.
* Data in Markdown text (headings, Markdown table cells) goes through :func:`md_text`
  (HTML-escaped, then Markdown punctuation – links' ``[]()``, and ``|`` – backslash-escaped).
* A data-derived ``href`` is emitted only when its scheme is http/https (:func:`safe_url`).
* Code examples put data in string literals (``json.dumps``) inside a fence longer than
  any backtick run.

Links between pages are relative; :class:`Links` computes them for one page so the site
works from any sub-path and from ``file://``.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from typing import Any
from urllib.parse import quote, urlsplit

from knollm.fmt import fmt_price as _fmt_price, fmt_tokens
from knollm.vocab import CAPABILITIES, CAPABILITY_TABLE, SOURCE_TABLE, SUSPECT_CHECKS

__all__ = [
    "esc", "md_text", "safe_url", "fmt_price", "fmt_tokens", "Links", "page_url", "headline_figures",
    "provider_summary", "render_providers_index", "render_provider_page", "call_example", "pick_example_model",
    "render_canonical_page", "render_canonical_index", "render_capability_matrix", "price_key", "paid_key",
    "default_order_key", "is_paid", "cheapest_paid", "LARGE_PROVIDER", "STATIC_ROWS", "SOURCE_MARK", "CAP_ABBR",
]

#: a provider page lists at most this many models as static rows; a larger provider's full
#: list is a client-side table (paged, filterable) that reads data/index.json
LARGE_PROVIDER = 300
STATIC_ROWS = 100

# from the one vocabulary (knollm.vocab)
SOURCE_MARK = {s.key: s.mark for s in SOURCE_TABLE}
SOURCE_TEXT = {s.key: s.text for s in SOURCE_TABLE}
CAP_ABBR = {c.key: c.abbr for c in CAPABILITY_TABLE}
CAP_LABEL = {c.key: c.label for c in CAPABILITY_TABLE}

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~>-])")
_ENV_RE = re.compile(r"^[A-Za-z0-9_]+$")


# --------------------------------------------------------------------------- escaping
def esc(text: object) -> str:
    """HTML-escape (quotes too) for text nodes and attribute values; newlines folded."""
    if text is None:
        return ""
    return html.escape(str(text), quote=True).replace("\r", " ").replace("\n", " ")


def md_text(text: object) -> str:
    """Escape for Markdown inline text (headings, table cells): HTML-escaped, then Markdown punctuation
    (``[x](javascript:…)`` stays text; ``|`` is ``\\|``, which a table cell keeps as text)."""
    return _MD_SPECIAL.sub(r"\\\1", esc(text))


def safe_url(url: object) -> str | None:
    """``url`` HTML-escaped for an ``href`` when it is an absolute http(s) URL, else None."""
    if not isinstance(url, str):
        return None
    u = url.strip()
    if any(c in u for c in "\"'<> \t\r\n\\`") or any(ord(c) < 32 for c in u):
        return None
    try:
        parts = urlsplit(u)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return html.escape(u, quote=True)


def link_or_text(url: object, text: object | None = None) -> str:
    href = safe_url(url)
    label = esc(text if text is not None else url)
    return f'<a href="{href}" rel="nofollow noopener">{label}</a>' if href else label


# --------------------------------------------------------------------------- formatting
def fmt_price(v: float | None, unknown: str = "?") -> str:
    """USD per 1M tokens for display: ``$3``, ``$0.15``, ``$0.0375``; ``free`` for 0."""
    return _fmt_price(v, dollar=True, zero="free", unknown=unknown)


def price_key(m: dict[str, Any]) -> tuple:
    """Cheapest first, unknown prices last."""
    p = m.get("prices") or {}
    unknown = p.get("input") is None or p.get("output") is None
    return (unknown, (p.get("input") or 0) + (p.get("output") or 0), m["key"])


def is_paid(m: dict[str, Any]) -> bool:
    """A paid offer: not free and a known input or output price above $0 (as ``Filters.paid``)."""
    p = m.get("prices") or {}
    return not m.get("free") and ((p.get("input") or 0) > 0 or (p.get("output") or 0) > 0)


def paid_key(m: dict[str, Any]) -> tuple:
    """Cheapest *paid* offer first, then $0 offers, unknown prices last (as :meth:`knollm.Catalog.where`)."""
    return (price_key(m)[0], not is_paid(m)) + price_key(m)[1:]


def cheapest_paid(offers: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The paid offer with the lowest known input + output price; an offer whose input or
    output price is suspect never ranks (as ``knollm cost``'s cheapest)."""
    paid = [o for o in offers if is_paid(o) and price_key(o)[0] is False
            and not {"prices.input", "prices.output"} & set(o.get("suspect") or {})]
    return min(paid, key=price_key) if paid else None


def default_order_key(m: dict[str, Any]) -> tuple:
    """A provider's models in the order a reader wants them: current chat models first,
    other kinds next, registry-only entries after, deprecated and unpriced last; by name."""
    p = m.get("prices") or {}
    return (bool(m.get("deprecated")), p.get("input") is None and p.get("output") is None and not m.get("free"),
            m.get("kind") != "chat", "registry_only" in (m.get("flags") or []),
            (m.get("name") or m["id"]).lower(), m["id"])


# --------------------------------------------------------------------------- links
def page_url(src_uri: str, use_directory_urls: bool = True) -> str:
    """The URL (relative to the site root) MkDocs gives the page ``src_uri``."""
    stem = src_uri[:-3] if src_uri.endswith(".md") else src_uri
    if stem == "index" or stem.endswith("/index"):
        d = stem[: -len("index")]
        return d if use_directory_urls else d + "index.html"
    return stem + "/" if use_directory_urls else stem + ".html"


class Links:
    """Relative links from one generated page (``src_uri``) to other pages and site files."""

    def __init__(self, src_uri: str = "index.md", use_directory_urls: bool = True) -> None:
        self.use_dir = use_directory_urls
        self.root = "../" * page_url(src_uri, use_directory_urls).count("/")

    def page(self, src_uri: str, query: str = "") -> str:
        url = page_url(src_uri, self.use_dir)
        if not url and not self.root:
            url = "./"
        return html.escape(self.root + url + query, quote=True)

    def file(self, path: str) -> str:
        return html.escape(self.root + path, quote=True)

    def provider(self, pid: str) -> str:
        return self.page(f"providers/{pid}.md")

    def model(self, key: str) -> str:
        return self.page("model.md", "?m=" + quote(key, safe="/"))

    def canonical(self, slug: str) -> str:
        return self.page(f"canonical/{slug}.md")


# --------------------------------------------------------------------------- summaries
def headline_figures(cat: dict[str, Any], libraries: int | None = None) -> dict[str, Any]:
    """Live figures for the home page (``{{ knollm.* }}`` in hand-written pages)."""
    from knollm.site.data import canonical_multi

    models = cat["models"]
    multi = canonical_multi(models)
    priced = sum(1 for m in models if (m.get("prices") or {}).get("input") is not None)
    return {
        "providers": len(cat["providers"]),
        "providers_with_dump": sum(1 for p in cat["providers"] if "dump" in (p.get("sources") or [])),
        "models": len(models),
        "canonical_models": len({m["canonical_id"] for m in models}),
        "multi_provider_models": len(multi),
        "models_on_multi_provider": sum(len(v) for v in multi.values()),
        "priced_models": priced,
        "free_models": sum(1 for m in models if m.get("free")),
        "libraries": libraries if libraries is not None else 0,
        "data_date": cat.get("data_date") or "unknown",
        "generated_at": (cat.get("generated_at") or "")[:10] or "unknown",
        "registries": registry_versions(cat),
        "dump_dates": dump_date_range(cat),
        "suspect_models": sum(1 for m in models if m.get("suspect")),
    }


def registry_versions(cat: dict[str, Any]) -> str:
    """``genai-prices 0.2.3 (data date unknown), models.dev 1.0.398 (data 2026-05-21)``."""
    parts = [f"{s['name']} {s.get('version') or '?'} (data {s.get('data_date') or 'date unknown'})"
             for s in cat.get("sources") or () if s.get("kind") == "registry"]
    return ", ".join(parts) or "none"


def dump_date_range(cat: dict[str, Any]) -> str:
    """The oldest and newest provider dump fetch dates (``2026-11-20 – 2026-11-23``)."""
    dates = sorted(p["data_date"] for p in cat.get("providers") or () if p.get("data_date"))
    if not dates:
        return "unknown"
    return dates[0] if dates[0] == dates[-1] else f"{dates[0]} – {dates[-1]}"


def provider_summary(provider: dict[str, Any], models: list[dict[str, Any]]) -> dict[str, Any]:
    live = [m for m in models if not m.get("deprecated")]
    # a suspect price never ranks as "cheapest"
    ins = [m["prices"]["input"] for m in live if (m.get("prices") or {}).get("input") is not None
           and "prices.input" not in (m.get("suspect") or {})]
    paid = [x for x in ins if x > 0]
    ctx = [m["context_window"] for m in models if m.get("context_window")]
    known = sum(1 for m in models for c in CAPABILITIES if (m.get("capabilities") or {}).get(c) is not None)
    total = len(models) * len(CAPABILITIES)
    priced = sum(1 for m in models if (m.get("prices") or {}).get("input") is not None)
    return {
        "models": len(models),
        "cheapest_input": min(paid) if paid else None,  # paid only: $0 offers are counted in "free"
        "free": sum(1 for m in models if m.get("free")),
        "largest_context": max(ctx) if ctx else None,
        "capability_coverage": round(100.0 * known / total) if total else None,
        "price_coverage": round(100.0 * priced / len(models)) if models else None,
        "sources": list(provider.get("sources") or []),
    }


def _source_label(provider: dict[str, Any]) -> str:
    parts = []
    for s in provider.get("sources") or []:
        if s == "dump" and provider.get("dump_file"):
            parts.append(f"dump ({provider['dump_file']})")
        else:
            parts.append(s)
    return ", ".join(parts) or "?"


def _by_provider(cat: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {p["id"]: [] for p in cat["providers"]}
    for m in cat["models"]:
        out.setdefault(m["provider"], []).append(m)
    return out


def _front_matter(title: str, *, search: bool = True, description: str | None = None,
                  hide: list[str] | None = None, template: str | None = None) -> str:
    # MkDocs' templates print the title and description without escaping: escape them here
    lines = ["---", f"title: {json.dumps(esc(title), ensure_ascii=False)}"]
    if template:
        lines.append(f"template: {template}")
    if description:
        lines.append(f"description: {json.dumps(esc(description), ensure_ascii=False)}")
    if not search:
        lines += ["search:", "  exclude: true"]
    if hide:
        lines += ["hide:"] + [f"  - {h}" for h in hide]
    lines += ["---", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- providers index
def render_providers_index(cat: dict[str, Any], links: Links | None = None) -> str:
    links = links or Links("providers/index.md")
    by_p = _by_provider(cat)
    rows = []
    provs = sorted(cat["providers"], key=lambda p: (-len(by_p.get(p["id"], [])), p["id"]))
    for p in provs:
        s = provider_summary(p, by_p.get(p["id"], []))
        cov = "?" if s["capability_coverage"] is None else f"{s['capability_coverage']}%"
        rows.append(
            "<tr>"
            f'<td><a href="{links.provider(p["id"])}">{esc(p.get("name") or p["id"])}</a>'
            f'<br><code>{esc(p["id"])}</code></td>'
            f"<td>{esc(p.get('kind'))}</td>"
            f'<td data-sort="{s["models"]}">{s["models"]}</td>'
            f'<td data-sort="{"" if s["cheapest_input"] is None else s["cheapest_input"]}">'
            f"{esc(fmt_price(s['cheapest_input'], unknown='only $0' if s['free'] else '?'))}</td>"
            f'<td data-sort="{s["largest_context"] or ""}">{esc(fmt_tokens(s["largest_context"]))}</td>'
            f'<td data-sort="{"" if s["price_coverage"] is None else s["price_coverage"]}">'
            f"{'?' if s['price_coverage'] is None else str(s['price_coverage']) + '%'}</td>"
            f"<td>{cov}</td>"
            f"<td>{esc(_source_label(p))}</td>"
            f"<td>{esc(p.get('api_shape') or '?')}</td>"
            "</tr>"
        )
    n_dump = sum(1 for p in cat["providers"] if "dump" in (p.get("sources") or []))
    out = [
        _front_matter("Providers", description="Every LLM API provider in the catalog", hide=["toc"]),
        "# Providers",
        "",
        f"{len(cat['providers'])} providers, {n_dump} of them from their own model-list dump; the others "
        "from the models.dev / genai-prices registries. *Cheapest paid input* is the lowest known paid input price "
        "(USD per 1M tokens) of a non-deprecated model; *capability coverage* is the share of capability flags "
        "that are known (not unknown) across the provider's models. Click a column header to sort.",
        "",
        '<div class="kn-table-wrap" data-search-exclude>',
        '<table class="kn-table kn-sortable" id="kn-providers">',
        "<thead><tr><th>Provider</th><th>Kind</th><th>Models</th><th>Cheapest paid input</th><th>Largest context</th>"
        "<th>Priced</th><th>Capability coverage</th><th>Data source</th><th>API shape</th></tr></thead>",
        "<tbody>",
        *rows,
        "</tbody></table></div>",
        "",
    ]
    return "\n".join(out)


# --------------------------------------------------------------------------- provider page
def pick_example_model(models: list[dict[str, Any]], popularity: dict[str, int] | None = None
                       ) -> dict[str, Any] | None:
    """The model of the provider's "Minimal call", by this rule (documented in the methodology):

    1. a chat model that is current (not deprecated), listed by the provider itself (not
       registry-only) and paid (a known input and output price, above $0), if any;
    2. among those, the one whose canonical model the most providers serve
       (``popularity``: canonical id -> number of providers), so it is a well-known model;
    3. then the newest (release date, else the provider's ``created``), then the shortest id.
    """
    if not models:
        return None
    pop = popularity or {}

    def key(m):
        p = m.get("prices") or {}
        priced = p.get("input") is not None and p.get("output") is not None and is_paid(m)
        date = m.get("release_date") or (m.get("created") or "")[:10] or ""
        return (
            m.get("kind") != "chat",
            bool(m.get("deprecated")),
            "registry_only" in (m.get("flags") or []),
            not priced,
            -pop.get(m.get("canonical_id"), 0),
            "".join(chr(0x10FFFF - ord(c)) for c in date),  # newest first
            len(m["id"]),
            m["id"],
        )

    return min(models, key=key)


def _fence(code: str, lang: str) -> str:
    longest = max((len(r) for r in re.findall(r"`+", code)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{code}\n{ticks}"


def call_example(provider: dict[str, Any], model_id: str | None) -> tuple[str, str, str]:
    """``(language, code, note)``: a minimal call for the provider's API shape."""
    shape = provider.get("api_shape")
    envs = [e for e in provider.get("api_key_env") or [] if _ENV_RE.match(e)]
    env = envs[0] if envs else f"{re.sub(r'[^A-Z0-9]', '_', provider['id'].upper())}_API_KEY"
    base = provider.get("base_url") if safe_url(provider.get("base_url")) else None
    mid = model_id or "MODEL_ID"
    if shape == "anthropic":
        args = [f'api_key=os.environ[{json.dumps(env)}]']
        if base and "api.anthropic.com" not in base:
            sdk_base = re.sub(r"/v1/?$", "", base)
            args.append(f"base_url={json.dumps(sdk_base)}")
        code = (
            "import os\n\nimport anthropic\n\n"
            f"client = anthropic.Anthropic({', '.join(args)})\n"
            "message = client.messages.create(\n"
            f"    model={json.dumps(mid)},\n"
            "    max_tokens=256,\n"
            '    messages=[{"role": "user", "content": "Say hello in one sentence."}],\n'
            ")\n"
            "print(message.content[0].text)"
        )
        return "python", code, "Anthropic Messages API (`pip install anthropic`)."
    if shape == "openai" and base:
        code = (
            "import os\n\nfrom openai import OpenAI\n\n"
            f"client = OpenAI(base_url={json.dumps(base)}, api_key=os.environ[{json.dumps(env)}])\n"
            "response = client.chat.completions.create(\n"
            f"    model={json.dumps(mid)},\n"
            '    messages=[{"role": "user", "content": "Say hello in one sentence."}],\n'
            ")\n"
            "print(response.choices[0].message.content)"
        )
        return "python", code, "OpenAI-compatible API (`pip install openai`)."
    if shape == "bedrock":
        code = (
            "import boto3\n\n"
            'client = boto3.client("bedrock-runtime")  # AWS credentials from the environment\n'
            "response = client.converse(\n"
            f"    modelId={json.dumps(mid)},\n"
            '    messages=[{"role": "user", "content": [{"text": "Say hello in one sentence."}]}],\n'
            ")\n"
            'print(response["output"]["message"]["content"][0]["text"])'
        )
        return "python", code, "Amazon Bedrock Converse API (`pip install boto3`)."
    if base:
        url = base.rstrip("/") + "/models"
        code = f"curl -sS '{url}' \\\n  -H \"Authorization: Bearer ${env}\""
        return ("bash", code, "The API shape of this provider is not recorded; this lists its models. "
                "See the provider's docs for the request format.")
    return ("text", f"# No public base URL is recorded for {provider['id']}; see its documentation.\n"
            f"# API key variable: {env}", "")


def _suspect_mark(m: dict[str, Any], path: str) -> str:
    """`` ⚠`` with the failed check as tooltip when ``path`` of ``m`` is suspect."""
    check = (m.get("suspect") or {}).get(path)
    if not check:
        return ""
    return f' <abbr class="kn-suspect" title="suspect: {esc(SUSPECT_CHECKS.get(check, check))}">⚠</abbr>'


def _cell(value: str, source: str | None, sort: object = None, cls: str = "") -> str:
    attrs = ""
    if source:
        attrs += f' data-s="{SOURCE_MARK.get(source, "?")}"'
    if sort is not None:
        attrs += f' data-sort="{esc(sort)}"'
    if cls:
        attrs += f' class="{cls}"'
    return f"<td{attrs}>{value}</td>"


def _caps_cell(m: dict[str, Any]) -> str:
    caps = m.get("capabilities") or {}
    src = m.get("sources") or {}
    parts = []
    for c in CAPABILITIES:
        if caps.get(c) is True:
            s = src.get(f"capabilities.{c}")
            parts.append(f'<abbr title="{esc(CAP_LABEL[c])} ({esc(s or "?")})">{CAP_ABBR[c]}</abbr>')
    return "<td class=\"kn-caps\">" + ("".join(parts) or "–") + "</td>"


def _model_row(m: dict[str, Any], links: Links, *, provider_col: bool = False,
               canon_slugs: dict[str, str] | None = None, providers: dict[str, dict] | None = None,
               extra: str = "") -> str:
    pr = m.get("prices") or {}
    src = m.get("sources") or {}
    name = m.get("name")
    label = f'<a href="{links.model(m["key"])}"><code>{esc(m["id"])}</code></a>'
    if name and name != m["id"]:
        label += f"<br><span class=\"kn-dim\">{esc(name)}</span>"
    if m.get("deprecated"):
        label += ' <span class="kn-badge kn-dep">deprecated</span>'
    if m.get("suspect"):
        label += ' <span class="kn-badge kn-suspect" title="a value failed a plausibility check">suspect</span>'
    if m.get("probe"):
        pv = ", ".join(f"{k}: {v}" for k, v in (m["probe"].get("verdicts") or {}).items())
        label += f' <span class="kn-badge kn-probed" title="{esc(pv)}">probed {esc(str(m["probe"].get("date"))[:10])}</span>'
    if canon_slugs and m["canonical_id"] in canon_slugs and not provider_col:
        label += f' <a class="kn-badge" href="{links.canonical(canon_slugs[m["canonical_id"]])}" ' \
                 f'title="compare providers of this model">compare</a>'
    cells = []
    if provider_col:
        p = (providers or {}).get(m["provider"], {})
        cells.append(f'<td><a href="{links.provider(m["provider"])}">{esc(p.get("name") or m["provider"])}</a></td>')
    cells.append(f"<td>{label}</td>")
    for f in ("input", "output", "cache_read"):
        v = pr.get(f)
        cells.append(_cell(esc(fmt_price(v)) + _suspect_mark(m, f"prices.{f}"),
                           src.get(f"prices.{f}") if v is not None else None, "" if v is None else v))
    for f in ("context_window", "max_output"):
        v = m.get(f)
        cells.append(_cell(esc(fmt_tokens(v)) + _suspect_mark(m, f), src.get(f) if v is not None else None,
                           "" if v is None else v))
    cells.append(_caps_cell(m))
    return "<tr>" + "".join(cells) + extra + "</tr>"


_MODEL_HEAD = ("<th>Input $/1M</th><th>Output $/1M</th><th>Cache read $/1M</th><th>Context</th>"
               "<th>Max output</th><th>Capabilities</th>")


def legend() -> str:
    srcs = " · ".join(f'<span class="kn-src">{v}</span> {esc(SOURCE_TEXT[k])}' for k, v in SOURCE_MARK.items())
    caps = " · ".join(f"<b>{v}</b> {esc(CAP_LABEL[k])}" for k, v in CAP_ABBR.items())
    return (f'<p class="kn-legend" data-search-exclude>Source of each value: {srcs}.<br>'
            f"Capabilities (known supported): {caps}. Prices in USD per 1M tokens; ? = unknown.</p>")


def _checked_facts(pid: str) -> list[tuple[str, str]]:
    """The registry's "checked against docs" row (date, page, what stayed unverified)."""
    from knollm.providers import provider_registry

    e = provider_registry().providers.get(pid)
    if e is None or not (e.checked or e.unverified):
        return []
    val = f"{e.checked.isoformat()} against {link_or_text(e.docs)}" if e.checked else "not yet"
    if e.unverified:
        val += f'<br><span class="kn-dim">Unverified: {esc(" ".join(e.unverified.split()))}</span>'
    return [("Facts checked", val)]


def render_provider_page(provider: dict[str, Any], models: list[dict[str, Any]], links: Links | None = None,
                         canon_slugs: dict[str, str] | None = None, popularity: dict[str, int] | None = None,
                         registries: list[dict[str, Any]] | None = None, health: str | None = None) -> str:
    pid = provider["id"]
    links = links or Links(f"providers/{pid}.md")
    name = provider.get("name") or pid
    s = provider_summary(provider, models)
    fs = provider.get("field_sources") or {}

    def src(field: str) -> str:
        return f' <span class="kn-dim">({esc(fs[field])})</span>' if fs.get(field) else ""

    envs = provider.get("api_key_env") or []
    facts = [
        ("Provider id", f"<code>{esc(pid)}</code>"),
        ("Kind", esc(provider.get("kind"))),
        ("Base URL", (f"<code>{esc(provider['base_url'])}</code>" if provider.get("base_url") else "?")
         + src("base_url")),
        ("Documentation", (link_or_text(provider.get("docs_url")) if provider.get("docs_url") else "?")
         + src("docs_url")),
        ("API key variable", (", ".join(f"<code>{esc(e)}</code>" for e in envs) if envs else "?")
         + src("api_key_env")),
        ("API shape", esc(provider.get("api_shape") or "unknown") + src("api_shape")),
        ("Data sources", esc(_source_label(provider))
         + (f" (shape <code>{esc(provider['dump_shape'])}</code>)" if provider.get("dump_shape") else "")),
        ("Data date", (f"{esc(provider['data_date'])} <span class=\"kn-dim\">(from the "
                       f"{esc(provider.get('data_date_source') or '?')})</span>") if provider.get("data_date")
         else "no dump (registries only)"),
        ("Price unit", (f"<code>{esc(provider['price_unit'])}</code>" if provider.get("price_unit")
                        else "not declared (unknown)") if provider.get("dump_file") else "n/a (no dump)"),
        ("Registries", esc(registry_versions({"sources": registries or []}))),
        ("Models", f"{s['models']} ({s['free']} free; prices known for "
                   f"{'?' if s['price_coverage'] is None else s['price_coverage']}%)"),
        ("Cheapest paid input", esc(fmt_price(s["cheapest_input"], unknown="only $0 offers" if s["free"] else "?"))),
        ("Largest context", esc(fmt_tokens(s["largest_context"]))),
        ("Capability coverage", "?" if s["capability_coverage"] is None else f"{s['capability_coverage']}%"),
    ]
    facts += _checked_facts(pid)
    if health:  # measured (knollm.site.measured.health_text, already escaped); hidden when nothing was measured
        facts.append(("Health (measured)", f'{health} <a href="{links.page("measured.md")}">details</a>'))
    if provider.get("registry_ids"):
        facts.append(("Registry ids", ", ".join(f"{esc(k)}: <code>{esc(v)}</code>"
                                                 for k, v in sorted(provider["registry_ids"].items()))))
    ex = pick_example_model(models, popularity)
    lang, code, note = call_example(provider, ex["id"] if ex else None)
    out = [
        _front_matter(name, description=f"{name}: {s['models']} models, prices, context windows and capabilities"),
        f"# {md_text(name)}",
        "",
        '<table class="kn-facts"><tbody>',
        *(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts),
        "</tbody></table>",
        "",
        f'<p><a class="md-button" href="{links.page("explorer.md", "?p=" + quote(pid))}">Open in the explorer</a> '
        f'<a class="md-button" href="{links.page("calculator.md", "?p=" + quote(pid))}">Cost calculator</a></p>',
        "",
        "## Minimal call",
        "",
    ]
    if note:
        out += [note, ""]
    if ex:
        out += [f'<p class="kn-dim">Example model chosen by the rule in the '
                f'<a href="{links.page("methodology.md", "#the-example-model-of-a-provider-page")}">methodology</a>: a current, paid chat '
                "model of this provider that many providers serve.</p>", ""]
    out += [_fence(code, lang), ""]
    sorted_models = sorted(models, key=default_order_key)
    large = len(models) > LARGE_PROVIDER
    shown = sorted_models[:STATIC_ROWS] if large else sorted_models
    out += [
        f"## Models ({len(models)})",
        "",
        legend(),
        "",
        "Current chat models first; other kinds next; deprecated and unpriced models last.",
        "",
    ]
    if large:
        out += [
            f'<div class="kn-ptable" data-provider="{esc(pid)}" data-count="{len(models)}" data-search-exclude>'
            f'<p class="kn-dim">The first {len(shown)} of {len(models):,} models; the full list (paged, '
            f'filterable) needs JavaScript, or open them <a href="{links.page("explorer.md", "?p=" + quote(pid))}">'
            "in the explorer</a>.</p>",
        ]
    else:
        out.append('<div class="kn-table-wrap" data-search-exclude>')
    out += [
        '<table class="kn-table kn-sortable kn-models">',
        f"<thead><tr><th>Model</th>{_MODEL_HEAD}</tr></thead>",
        "<tbody>",
        *(_model_row(m, links, canon_slugs=canon_slugs) for m in shown),
        "</tbody></table></div>",
        "",
    ]
    return "\n".join(out)


# --------------------------------------------------------------------------- cross-provider pages
def _known_paid(offers: list[dict[str, Any]], field: str) -> list[float | None]:
    """The paid offers' ``prices.<field>``, suspect values left out (as :func:`provider_summary`:
    a value that failed a plausibility check is no price to quote)."""
    return [(o.get("prices") or {}).get(field) for o in offers
            if is_paid(o) and f"prices.{field}" not in (o.get("suspect") or {})]


def _spread(values: list[float]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "unknown"
    lo, hi = min(vals), max(vals)
    if lo == hi:
        return f"{fmt_price(lo)} everywhere"
    ratio = f" ({hi / lo:.1f}×)" if lo > 0 else ""
    return f"{fmt_price(lo)} – {fmt_price(hi)}{ratio}"


def render_canonical_page(canon: str, offers: list[dict[str, Any]], providers: dict[str, dict[str, Any]],
                          links: Links | None = None, slug: str | None = None,
                          health: dict[str, str] | None = None) -> str:
    """Who serves the canonical model ``canon``, at what price and context, cheapest first."""
    from knollm.site.data import slugify

    links = links or Links(f"canonical/{slug or slugify(canon)}.md")
    offers = sorted(offers, key=paid_key)
    names = Counter(o.get("name") for o in offers if o.get("name"))
    title = names.most_common(1)[0][0] if names else canon
    provs = sorted({o["provider"] for o in offers})
    cheapest = cheapest_paid(offers)
    free = [o for o in offers if not is_paid(o) and price_key(o)[0] is False]
    cp = (cheapest or {}).get("prices") or {}
    base = None if cp.get("input") is None or cp.get("output") is None else cp["input"] + cp["output"]
    rows = []
    for rank, m in enumerate(offers, 1):
        pr = m.get("prices") or {}
        vs = "?"
        if base is not None and pr.get("input") is not None and pr.get("output") is not None:
            tot = pr["input"] + pr["output"]
            if not is_paid(m):
                vs = "$0 (free tier)"
            elif tot == base:
                vs = "cheapest paid"
            elif base > 0:
                vs = f"+{100 * (tot - base) / base:.0f}%"
            else:
                vs = f"+{fmt_price(tot)}"
        hcol = f"<td>{health.get(m['key'], '–')}</td>" if health else ""  # escaped by health_text
        rows.append(_model_row(m, links, provider_col=True, providers=providers,
                               extra=f"<td>{esc(vs)}</td>{hcol}").replace("<tr>", f"<tr><td>{rank}</td>", 1))
    ctx = [o["context_window"] for o in offers if o.get("context_window")]
    def offer_link(o: dict[str, Any]) -> str:
        name = esc((providers.get(o["provider"]) or {}).get("name") or o["provider"])
        return f'<a href="{links.model(o["key"])}">{name}</a>'

    paid_text = (f"{offer_link(cheapest)}: {esc(fmt_price(cp.get('input')))} in / "
                 f"{esc(fmt_price(cp.get('output')))} out" if cheapest else "none with a known price")
    free_text = (", ".join(offer_link(o) for o in free[:8]) + (f" and {len(free) - 8} more" if len(free) > 8 else "")
                 if free else "none")
    summary = [
        ("Canonical id", f"<code>{esc(canon)}</code>"),
        ("Providers", f"{len(provs)} ({len(offers)} offers)"),
        ("Cheapest paid", paid_text),
        ("Free ($0) offers", free_text + (' <span class="kn-dim">(free tiers and previews: limits apply)</span>'
                                          if free else "")),
        ("Paid input price spread", esc(_spread(_known_paid(offers, "input")))),
        ("Paid output price spread", esc(_spread(_known_paid(offers, "output")))),
        ("Context window", esc(f"{fmt_tokens(min(ctx))} – {fmt_tokens(max(ctx))}" if ctx else "?")),
    ]
    out = [
        _front_matter(f"{title}: {len(provs)} providers compared", search=False,
                      description=f"Every provider serving {title}, cheapest first", hide=["toc"],
                      template="knollm-compact.html"),
        f"# {md_text(title)}",
        "",
        f'<p class="kn-dim"><a href="{links.page("canonical/index.md")}">Models offered by several providers</a>'
        f' › <code>{esc(canon)}</code></p>',
        "",
        f"Served by {len(provs)} providers: paid offers cheapest first (input + output price per 1M tokens), "
        "then $0 offers (free tiers), unknown prices last.",
        "",
        '<table class="kn-facts"><tbody>',
        *(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in summary),
        "</tbody></table>",
        "",
        f'<p><a class="md-button" href="{links.page("calculator.md", "?s=" + quote(canon))}">'
        "Compare costs for your workload</a> "
        f'<a class="md-button" href="{links.page("compare.md", "?m=" + quote(",".join(o["key"] for o in offers[:4]), safe="/,"))}">'
        "Compare the first offers side by side</a></p>",
        "",
        legend(),
        "",
        '<div class="kn-table-wrap">',
        '<table class="kn-table kn-sortable kn-models">',
        f"<thead><tr><th>#</th><th>Provider</th><th>Model</th>{_MODEL_HEAD}<th>vs cheapest</th>"
        + ("<th>Health (measured)</th>" if health else "") + "</tr></thead>",
        "<tbody>",
        *rows,
        "</tbody></table></div>",
        "",
    ]
    return "\n".join(out)


def render_canonical_index(groups: dict[str, list[dict[str, Any]]], slugs: dict[str, str],
                           links: Links | None = None) -> str:
    links = links or Links("canonical/index.md")
    rows = []
    for canon, offers in sorted(groups.items(), key=lambda kv: (-len({o["provider"] for o in kv[1]}), kv[0])):
        cheap = cheapest_paid(offers)
        pr = (cheap or {}).get("prices") or {}
        ctx = max((o.get("context_window") or 0 for o in offers), default=0) or None
        n = len({o["provider"] for o in offers})
        ins = _known_paid(offers, "input")
        nfree = sum(1 for o in offers if not is_paid(o) and price_key(o)[0] is False)
        rows.append(
            f'<tr><td><a href="{links.canonical(slugs[canon])}">{esc(canon)}</a></td>'
            f"<td>{n}</td>"
            f'<td data-sort="{"" if pr.get("input") is None else pr["input"]}">{esc(fmt_price(pr.get("input")))}</td>'
            f'<td data-sort="{"" if pr.get("output") is None else pr["output"]}">'
            f'{esc(fmt_price(pr.get("output")))}</td>'
            f"<td>{nfree}</td>"
            f"<td>{esc(_spread(ins))}</td>"
            f'<td data-sort="{ctx or ""}">{esc(fmt_tokens(ctx))}</td></tr>'
        )
    out = [
        _front_matter("Models offered by several providers", description="The same model across providers",
                      hide=["toc"]),
        "# Models offered by several providers",
        "",
        f"{len(groups)} models are served by two or more providers. Each page lists who serves it, at what "
        "price and context, cheapest first. *Cheapest paid* is the paid offer with the lowest input + output "
        "price; $0 offers (free tiers, previews) are counted apart in *Free offers*.",
        "",
        '<div class="kn-table-wrap" data-search-exclude>',
        '<table class="kn-table kn-sortable">',
        "<thead><tr><th>Model</th><th>Providers</th><th>Cheapest paid input</th><th>Cheapest paid output</th>"
        "<th>Free offers</th><th>Paid input price spread</th><th>Max context</th></tr></thead>",
        "<tbody>",
        *rows,
        "</tbody></table></div>",
        "",
    ]
    return "\n".join(out)


# --------------------------------------------------------------------------- matrices
def render_capability_matrix(cat: dict[str, Any], links: Links | None = None, min_models: int = 1) -> str:
    """Capabilities × providers: share of each provider's models known to support each capability."""
    links = links or Links("matrix/capabilities.md")
    by_p = _by_provider(cat)
    head = "".join(f'<th title="{esc(CAP_LABEL[c])}">{esc(CAP_LABEL[c])}</th>' for c in CAPABILITIES)
    rows = []
    for p in sorted(cat["providers"], key=lambda p: (-len(by_p.get(p["id"], [])), p["id"])):
        ms = by_p.get(p["id"], [])
        if len(ms) < min_models:
            continue
        cells = []
        for c in CAPABILITIES:
            yes = sum(1 for m in ms if (m.get("capabilities") or {}).get(c) is True)
            unk = sum(1 for m in ms if (m.get("capabilities") or {}).get(c) is None)
            pct = round(100 * yes / len(ms))
            heat = 0 if yes == 0 else 1 + min(3, pct // 25)
            cells.append(f'<td class="kn-h{heat}" data-sort="{pct}" title="{yes} of {len(ms)} models support '
                         f'{esc(CAP_LABEL[c])}; {unk} unknown">{yes or "·"}</td>')
        rows.append(f'<tr><td><a href="{links.provider(p["id"])}">{esc(p.get("name") or p["id"])}</a></td>'
                    f'<td data-sort="{len(ms)}">{len(ms)}</td>{"".join(cells)}</tr>')
    out = [
        _front_matter("Capabilities × providers", description="Which provider supports which capability",
                      hide=["toc"]),
        "# Capabilities × providers",
        "",
        "Number of each provider's models *known* to support a capability (hover a cell for the share and "
        "how many are unknown). Darker = a larger share of the provider's models. Click a header to sort.",
        "",
        '<div class="kn-table-wrap" data-search-exclude>',
        f'<table class="kn-table kn-sortable kn-matrix"><thead><tr><th>Provider</th><th>Models</th>{head}'
        "</tr></thead><tbody>",
        *rows,
        "</tbody></table></div>",
        "",
    ]
    return "\n".join(out)


# --------------------------------------------------------------------------- data audit
#: disagreement rows written into the audit page; the full list is ``data/audit.json``
#: (every HTML page stays under 300 KB)
AUDIT_PAGE_ROWS = 800


def render_audit_page(cat: dict[str, Any], max_rows: int = AUDIT_PAGE_ROWS) -> str:
    """Every offer where the sources disagree (``knollm audit``), and every suspect value.
    The page lists the first ``max_rows`` disagreements; ``data/audit.json`` has all."""
    from knollm.query.audit import FIELD_GROUPS, disagreements, render_markdown

    rows = disagreements(cat)
    suspect = [(m, path, check) for m in cat["models"] for path, check in (m.get("suspect") or {}).items()]
    out = [
        _front_matter("Data audit", description="Where Knollm's sources disagree, and which values failed a "
                                                "plausibility check"),
        "# Data audit",
        "",
        "Every offer where the sources disagree beyond 5 % (prices, context window, max output) or at all "
        f"(capabilities, deprecation) – {', '.join(FIELD_GROUPS)} – with each source's value, the one Knollm "
        "shows and why. The same list: `knollm audit` (`--json`, `--markdown`). Data: registries "
        f"{md_text(registry_versions(cat))}; provider dumps fetched {md_text(dump_date_range(cat))}.",
        "",
        f"## Suspect values ({len(suspect)})",
        "",
        "Kept in the catalog but marked: they never rank as cheapest.",
        "",
        # an HTML table (Markdown is not processed in it): a model id such as "[x](javascript:…)" stays text
        "<table>",
        "<thead><tr><th>Model</th><th>Field</th><th>Value</th><th>Check</th></tr></thead>",
        "<tbody>",
        *(f"<tr><td>{esc(m['key'])}</td><td>{esc(p)}</td><td>{esc(_field_value(m, p))}</td>"
          f"<td>{esc(SUSPECT_CHECKS.get(c, c))}</td></tr>"
          for m, p, c in suspect),
        "</tbody></table>",
        "",
        "## Disagreements",
        "",
        f"The first {max_rows:,} rows; every row, as JSON: "
        "[data/audit.json](data/audit.json).",  # a Markdown link: MkDocs resolves it from audit.md
        "",
        '<div data-search-exclude markdown>',
        "",
        # Markdown table cells through md_text (HTML, Markdown punctuation and "|" escaped): a model
        # id such as "[x](javascript:…)" stays text, never a link
        render_markdown(rows, esc=md_text, max_rows=max_rows),
        "</div>",
        "",
    ]
    return "\n".join(out)


def _field_value(m: dict[str, Any], path: str) -> Any:
    head, _, tail = path.partition(".")
    v = m.get(head)
    return v.get(tail) if tail and isinstance(v, dict) else v
