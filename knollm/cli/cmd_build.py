"""``knollm build``: build the catalog and the static site in one command.

Builds (or loads from the cache) the catalog for ``--dumps``, then runs ``mkdocs build``
programmatically with the ``knollm`` plugin pointed at the same dumps, so the catalog is
loaded once. ``mkdocs serve`` works too (the plugin reads ``$KNOLLM_DUMPS``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from knollm.cli.filters import check_dumps

__all__ = ["command", "build_site", "catalog_warnings"]


def build_site(dumps: Path | None, site_dir: Path | None = None, config_file: Path | str = "mkdocs.yml",
               *, strict: bool = False, catalog: dict | None = None) -> dict:
    """Build the site; returns timings and counts. Raises :class:`knollm.errors.SiteError`."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config
    from mkdocs.exceptions import MkDocsException

    from knollm.errors import SiteError
    from knollm.site.config import load_site_catalog, preload

    cfg_path = Path(config_file)
    if not cfg_path.is_file():
        raise SiteError(f"{cfg_path}: no MkDocs config (run knollm build from the project root, or pass --config)")
    t0 = time.perf_counter()
    if catalog is None:
        catalog = load_site_catalog(dumps)  # a preloaded catalog, else the cached build
    t_cat = time.perf_counter() - t0
    warnings = catalog_warnings(catalog)
    if strict and warnings:
        from knollm.errors import StrictModeError

        raise StrictModeError([str(w) for w in warnings])
    preload(dumps, catalog)
    old_env = os.environ.get("KNOLLM_DUMPS")
    if dumps is not None:
        os.environ["KNOLLM_DUMPS"] = str(dumps)
    try:
        overrides = {"strict": strict}
        if site_dir is not None:
            overrides["site_dir"] = str(Path(site_dir).resolve())
        cfg = load_config(str(cfg_path), **overrides)
        plugin = cfg.plugins.get("knollm")
        if plugin is None:
            raise SiteError(f"{cfg_path}: the knollm plugin is not enabled (plugins: [knollm])")
        if dumps is not None:
            plugin.config.dumps = str(Path(dumps).resolve())
        t1 = time.perf_counter()
        try:
            build(cfg)
        except MkDocsException as e:
            raise SiteError(f"site build failed: {e}") from e
        t_site = time.perf_counter() - t1
    finally:
        if old_env is None:
            os.environ.pop("KNOLLM_DUMPS", None)
        else:
            os.environ["KNOLLM_DUMPS"] = old_env
    out = Path(cfg.site_dir)
    pages = sum(1 for _ in out.rglob("*.html"))
    return {"site_dir": str(out), "models": len(catalog["models"]), "providers": len(catalog["providers"]),
            "pages": pages, "catalog_seconds": round(t_cat, 2), "site_seconds": round(t_site, 2),
            "warnings": [str(w) for w in warnings]}


def catalog_warnings(catalog: dict) -> list[str]:
    """The catalog build's warnings (bad dumps, bad records: file and record named), as text."""
    out = []
    for w in catalog.get("warnings") or []:
        if w.get("level", "warning") != "warning":
            continue
        where = w.get("file") or "?"
        if w.get("record") is not None:
            where += f" [{w['record']}]"
        out.append(f"{where}: {w.get('message')}")
    return out


@click.command("build")
@click.option("--dumps", type=click.Path(file_okay=False, path_type=Path), envvar="KNOLLM_DUMPS", default=None,
              callback=check_dumps, help="Dump directory (default $KNOLLM_DUMPS or work/model_catalog; a given one "
                                         "must exist).")
@click.option("--site-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory (default: site_dir of mkdocs.yml, i.e. site/).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=Path("mkdocs.yml"),
              show_default=True, help="MkDocs config file.")
@click.option("--strict", is_flag=True, help="Fail (exit 1) on any catalog warning (bad dump or record) or MkDocs warning.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(dumps: Path | None, site_dir: Path | None, config_file: Path, strict: bool, as_json: bool) -> int:
    """Build the catalog and the static site (MkDocs-Material + the knollm plugin).

    \b
    The site has provider pages, cross-provider model pages, the models explorer, the
    pricing calculator and catalog.json / models.csv / data/index.json / schema.json.
    """
    from knollm.query.cache import default_dumps

    if dumps is None:
        dumps = default_dumps()
    t0 = time.perf_counter()
    res = build_site(dumps, site_dir, config_file, strict=strict)
    res["seconds"] = round(time.perf_counter() - t0, 2)
    if res["warnings"] and not as_json:
        click.echo(f"knollm: {len(res['warnings'])} catalog warning(s) (--strict fails on them):", err=True)
        for w in res["warnings"][:50]:
            click.echo(f"  {w}", err=True)
        if len(res["warnings"]) > 50:
            click.echo(f"  ... and {len(res['warnings']) - 50} more (knollm build --json lists all)", err=True)
    if as_json:
        from knollm.cli.output import emit_json

        emit_json(res)
    else:
        click.echo(f"Built {res['pages']} pages for {res['models']:,} models / {res['providers']} providers "
                   f"in {res['seconds']:.1f}s (catalog {res['catalog_seconds']:.1f}s) -> {res['site_dir']}")
    return 0
