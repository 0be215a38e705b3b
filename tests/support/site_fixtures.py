"""Small catalogs and site builds for the site tests (no network, no registries)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from knollm.catalog.schema import CatalogDocument, Model, Provider

XSS_NAME = '<script>window.__xss=1</script>Evil "model"'
XSS_DESC = '<img src=x onerror="window.__xss=2"> [click](javascript:window.__xss=3) {{ 7*7 }} | pipe'
XSS_ID = '"><img src=x onerror=window.__xss=4>'
XSS_URL = "javascript:window.__xss=5"


def _model(provider: str, mid: str, canon: str, **kw: Any) -> dict:
    base = {"key": f"{provider}/{mid}", "provider": provider, "id": mid, "canonical_id": canon, "kind": "chat"}
    base.update(kw)
    return Model(**base).model_dump()


def make_catalog(*, xss: bool = True) -> dict:
    """Three providers, a canonical model served by two of them, and (``xss``) hostile strings."""
    providers = [
        Provider(id="alpha", name="Alpha AI", base_url="https://api.alpha.example/v1", docs_url="https://alpha.example/docs",
                 api_key_env=["ALPHA_API_KEY"], api_shape="openai", sources=["dump"], dump_file="models_alpha.json",
                 model_count=2).model_dump(),
        Provider(id="beta", name="Beta", base_url="https://api.beta.example/v1", api_key_env=["BETA_KEY"],
                 api_shape="anthropic", sources=["models.dev"], model_count=2).model_dump(),
        Provider(id="evil", name='Evil <b onmouseover="window.__xss=6">Corp</b>' if xss else "Evil Corp",
                 base_url=XSS_URL if xss else None, docs_url=XSS_URL if xss else None,
                 api_key_env=["EVIL_KEY; rm -rf /"] if xss else [], sources=["dump"], model_count=2).model_dump(),
    ]
    models = [
        _model("alpha", "shared-7b", "shared-7b", name="Shared 7B", context_window=32768, max_output=4096,
               prices={"input": 0.2, "output": 0.6, "cache_read": 0.05}, capabilities={"tools": True},
               input_modalities=["text"], output_modalities=["text"],
               sources={"prices.input": "dump", "prices.output": "dump", "prices.cache_read": "genai-prices",
                        "context_window": "dump", "capabilities.tools": "models.dev"}),
        _model("alpha", "alpha-vision", "alpha-vision", name="Alpha Vision", context_window=128000,
               prices={"input": 1.0, "output": 3.0, "request": 0.001}, capabilities={"vision": True, "tools": True},
               input_modalities=["text", "image"], output_modalities=["text"], open_weights=False,
               sources={"prices.input": "dump", "prices.output": "dump", "capabilities.vision": "inferred"}),
        _model("beta", "shared-7b-instruct", "shared-7b", name="Shared 7B", context_window=16384,
               prices={"input": 0.1, "output": 0.3}, open_weights=True, sources={"prices.input": "models.dev"}),
        _model("beta", "beta-old", "beta-old", name="Beta Old", deprecated=True, prices={"input": 5.0, "output": 5.0}),
        _model("evil", XSS_ID if xss else "evil-1", "evil-1", name=XSS_NAME if xss else "Evil 1",
               description=XSS_DESC if xss else None, context_window=8192, free=True,
               prices={"input": 0.0, "output": 0.0}),
        _model("evil", "shared-7b", "shared-7b", name="Shared 7B (evil)", prices={"input": None, "output": 1.0}),
    ]
    cat = CatalogDocument(generated_at="2025-01-02T03:04:05Z", data_date="2025-01-01", sources=[], providers=providers,
                  models=models).model_dump()
    return orjson.loads(orjson.dumps(cat))


MKDOCS_TEMPLATE = """\
site_name: Knollm test
docs_dir: {docs}
site_dir: {site}
theme:
  name: material
  font: false
plugins:
  - knollm:
      catalog: {catalog}
  - search
  - macros:
      render_by_default: false
markdown_extensions: [admonition, attr_list, md_in_html, tables, pymdownx.highlight, pymdownx.superfences]
not_in_nav: |
  /model.md
nav:
  - Home: index.md
  - Explorer: explorer.md
  - Calculator: calculator.md
  - Providers: providers/index.md
  - Libraries: libraries/index.md
  - Cross-provider: canonical/index.md
  - Capabilities: matrix/capabilities.md
  - API: api.md
"""

DOCS = Path(__file__).resolve().parents[2] / "src_docs"
PAGES = ("index.md", "explorer.md", "calculator.md", "model.md", "api.md", "methodology.md")


def build_small_site(tmp: Path, catalog: dict | None = None) -> Path:
    """Build the site for a small catalog (hand-written pages copied, no mkdocstrings); returns site_dir."""
    tmp.mkdir(parents=True, exist_ok=True)
    docs = tmp / "docs"
    docs.mkdir(exist_ok=True)
    for name in PAGES:
        (docs / name).write_text((DOCS / name).read_text(encoding="utf-8"), encoding="utf-8")
    cat_path = tmp / "catalog.json"
    cat_path.write_bytes(orjson.dumps(catalog if catalog is not None else make_catalog()))
    site = tmp / "site"
    cfg = tmp / "mkdocs.yml"
    cfg.write_text(MKDOCS_TEMPLATE.format(docs=docs, site=site, catalog=cat_path), encoding="utf-8")
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    build(load_config(str(cfg)))
    return site
