"""The ``knollm`` MkDocs plugin's options and catalog loading.

``mkdocs.yml``::

    plugins:
      - knollm:
          dumps: work/model_catalog   # optional; else $KNOLLM_DUMPS, else work/model_catalog
          catalog: null               # optional: a built catalog JSON instead of building
          canonical_pages: true       # one page per model served by 2+ providers
          libraries: true             # the libraries section (if knollm.libraries is present)
          changes: true               # "What changed" (if knollm.diff.compare is present)

``knollm build --dumps DIR`` sets ``dumps`` and hands over the catalog it already built
(:func:`preload`) so it is loaded once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.config import base
from mkdocs.config import config_options as c

__all__ = ["KnollmConfig", "resolve_dumps", "load_site_catalog", "preload"]

_LOADED: dict[tuple[str, str], dict[str, Any]] = {}


class KnollmConfig(base.Config):
    dumps = c.Optional(c.Type(str))
    catalog = c.Optional(c.Type(str))
    canonical_pages = c.Type(bool, default=True)
    libraries = c.Type(bool, default=True)
    changes = c.Type(bool, default=True)
    full_catalog = c.Type(bool, default=True)


def resolve_dumps(option: str | None, config_file: str | None = None) -> Path:
    """``dumps`` option (relative to mkdocs.yml) > ``$KNOLLM_DUMPS`` > ``work/model_catalog``."""
    if option:
        p = Path(option)
        if not p.is_absolute() and config_file:
            p = Path(config_file).resolve().parent / p
        return p
    from knollm.query.cache import default_dumps

    return default_dumps()


def preload(dumps: Path | None, catalog: dict[str, Any]) -> None:
    """Register an already-built catalog for ``dumps`` so the plugin does not load it again."""
    _LOADED[("dumps", str(Path(dumps).resolve()) if dumps else "")] = catalog


def load_site_catalog(dumps: Path | None, catalog_path: str | None = None) -> dict[str, Any]:
    """The catalog for the site: a catalog file, a preloaded catalog, or a cached build of ``dumps``."""
    if catalog_path:
        from knollm.query.api import Catalog

        return Catalog.load(catalog_path).data
    key = ("dumps", str(Path(dumps).resolve()) if dumps else "")
    if key in _LOADED:
        return _LOADED[key]
    from knollm.query.cache import cached_catalog

    return cached_catalog(Path(dumps) if dumps else None)
