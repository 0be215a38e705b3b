"""``knollm browse [TEXT] [filters]``: open the terminal explorer on the catalog.

The filter options are the same as ``knollm models search`` (so a copied command line
opens the same view); the app needs the optional extra ``browse`` (Textual).
"""

from __future__ import annotations

import os

import click

from knollm.cli.filters import dumps_option, load_cached_catalog, load_index, model_filters
from knollm.query.filters import Filters

__all__ = ["command", "make_app"]


def make_app(dumps: str, filters: Filters | None = None, site_url: str | None = None):
    """The :class:`knollm.browse.app.BrowseApp` over the cached index of ``dumps`` (the full
    catalog loads later, in a thread, for the sources)."""
    try:
        from knollm.browse.app import BrowseApp
    except ImportError as e:  # textual missing
        raise click.ClickException("knollm browse needs Textual: install Knollm's browse extra "
                                   f"(pip install -e '.[browse]' in the Knollm checkout) ({e})") from None
    from knollm.browse.state import BrowseState

    idx = load_index(dumps, quiet=False)

    def libraries():
        from knollm.libraries.query import list_libraries

        return list_libraries()

    return BrowseApp(idx, state=BrowseState(filters=(filters or Filters()).replace(limit=None)),
                     catalog_loader=lambda: load_cached_catalog(dumps, quiet=True),
                     libraries_loader=libraries, site_url=site_url)


@click.command("browse")
@click.argument("text", required=False)
@model_filters(limit=0)
@click.option("--site-url", envvar="KNOLLM_SITE_URL", default=None,
              help="The site's root for copied explorer URLs (env KNOLLM_SITE_URL; default: site-relative).")
@dumps_option
def command(text: str | None, filters: Filters, site_url: str | None, dumps: str) -> int:
    """A full-screen terminal explorer: live search, facets, sortable table, each value's
    source, where else a model is served, compare with a workload's cost, providers,
    libraries. Press ? inside for the keys; y copies the state as knollm commands and
    as the site's explorer URL.

    \b
    Examples:
      knollm browse
      knollm browse llama -c tools --paid --sort price
    """
    if filters.text is None and text:
        filters = filters.replace(text=text)
    if not os.isatty(1) and not os.environ.get("KNOLLM_BROWSE_FORCE"):
        raise click.UsageError("knollm browse needs a terminal (use `knollm models search` in scripts)")
    make_app(dumps, filters, site_url).run()
    return 0
