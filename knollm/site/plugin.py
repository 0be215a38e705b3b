"""The ``knollm`` MkDocs plugin: loads the catalog once and adds the generated pages.

It only wires rendering functions in (:mod:`knollm.site.render`, :mod:`knollm.site.data`,
``knollm.libraries.render``, ``knollm.diff.compare``); nothing is written into ``docs_dir``.

* ``on_config`` – load the catalog; live figures into ``config.extra.knollm`` (for
  mkdocs-macros in hand-written pages); provider / library pages into the nav; the
  project's JS and CSS into ``extra_javascript`` / ``extra_css``.
* ``on_files`` – generated pages (``File.generated``): providers, cross-provider model
  pages (not in the nav, excluded from search), matrices, libraries, changes; the assets.
* ``on_post_build`` – the machine-readable files into ``site_dir``: ``catalog.json``,
  ``schema.json``, ``models.csv``, ``data/index.json``, ``data/models/<n>.json``,
  ``llms.txt`` and ``llms-full.txt`` (:mod:`knollm.site.llms`).

Any failure raises :class:`mkdocs.exceptions.PluginError` naming the page or file.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.plugins import BasePlugin
from mkdocs.structure.files import File, Files, InclusionLevel

from knollm.site import ASSETS_DIR
from knollm.site.config import KnollmConfig, load_site_catalog, resolve_dumps

__all__ = ["KnollmPlugin", "ASSET_FILES"]

log = logging.getLogger("mkdocs.plugins.knollm")

ASSET_FILES = ("knollm.js", "knollm.css")
ASSET_PREFIX = "assets/knollm/"
DATA_LINKS = ("catalog.json", "schema.json", "models.csv", "data/index.json", "data/index-head.json", "data/audit.json")


def _libraries() -> tuple[Any, list] | None:
    """``(render_module, rows)`` when the libraries package is present, else None."""
    try:
        from knollm.libraries import render as lrender
        from knollm.libraries.query import list_libraries
    except ImportError:
        return None
    return lrender, list_libraries()


def _changes(dumps: Path | None) -> tuple[Any, list] | None:
    try:
        from knollm.diff import compare as D
    except ImportError:
        return None
    if not hasattr(D, "render_changes_markdown"):
        return None
    diffs = D.load_diffs(Path(dumps) / "changes") if dumps else []
    return D, diffs


class KnollmPlugin(BasePlugin[KnollmConfig]):
    supports_multiple_instances = False

    def __init__(self) -> None:
        super().__init__()
        self.catalog: dict[str, Any] | None = None
        self.dumps: Path | None = None
        self.groups: dict[str, list] = {}
        self.slugs: dict[str, str] = {}
        self.libs: tuple[Any, list] | None = None
        self.changes: tuple[Any, list] | None = None
        self.timings: dict[str, float] = {}
        self._head: str | None = None
        self.measured: Any = None

    # ------------------------------------------------------------------ config
    def on_config(self, config):
        t0 = time.perf_counter()
        self.dumps = resolve_dumps(self.config.dumps, config.config_file_path)
        try:
            self.catalog = load_site_catalog(self.dumps, self.config.catalog)
        except Exception as e:  # noqa: BLE001 - reported as a plugin error with the path
            where = self.config.catalog or self.dumps
            raise PluginError(f"knollm: cannot load the catalog from {where}: {e}") from e
        from knollm.site.data import canonical_multi, canonical_slugs
        from knollm.site.render import headline_figures

        self.groups = canonical_multi(self.catalog["models"]) if self.config.canonical_pages else {}
        self.slugs = canonical_slugs(canonical_multi(self.catalog["models"]))
        self.libs = _libraries() if self.config.libraries else None
        self.changes = _changes(self.dumps) if self.config.changes else None
        from knollm.site.measured import load_measured

        self.measured = load_measured(self.dumps)
        figures = headline_figures(self.catalog, libraries=len(self.libs[1]) if self.libs else 0)
        config.extra["knollm"] = figures
        config.nav = self._nav(config.nav)
        tdir = str(Path(__file__).parent / "templates")
        if tdir not in config.theme.dirs:
            config.theme.dirs.insert(1 if config.theme.custom_dir else 0, tdir)
        for name, lst in (("knollm.css", config.extra_css), ("knollm.js", config.extra_javascript)):
            if ASSET_PREFIX + name not in [str(x) for x in lst]:
                lst.append(ASSET_PREFIX + name)
        self.timings["load"] = time.perf_counter() - t0
        return config

    def _nav(self, nav):
        """Fill the ``Providers`` and ``Libraries`` sections; drop entries for pages not generated."""
        if not nav:
            return nav
        from knollm.site.render import esc

        # the provider list lives on the providers index only, not in every page's sidebar
        # (nav titles are printed unescaped by the theme: data-derived ones are escaped)
        prov_section = ["providers/index.md"]
        lib_section = None
        if self.libs:
            lrender, rows = self.libs
            lib_section = [{"Overview": "libraries/index.md"}, {"Features matrix": "libraries/matrix.md"},
                           {"Choosing a library": "libraries/guide.md"}, {"Rubric": "libraries/rubric.md"}]
            lib_section += [{esc(r.record.library.name): f"libraries/{lrender.page_name(r.slug)}"} for r in rows]

        def walk(items):
            out = []
            for item in items:
                if isinstance(item, dict):
                    (title, value), = item.items()
                    target = value if isinstance(value, str) else None
                    if target == "providers/index.md" or (title == "Providers" and not isinstance(value, str)):
                        out.append({title: prov_section})
                        continue
                    if target and target.startswith("libraries/") or title == "Libraries":
                        if lib_section is None:
                            continue
                        if title == "Libraries":
                            out.append({title: lib_section})
                            continue
                    if target == "changes.md" and self.changes is None:
                        continue
                    if isinstance(value, list):
                        out.append({title: walk(value)})
                        continue
                    out.append(item)
                else:
                    if isinstance(item, str) and item.startswith("libraries/") and lib_section is None:
                        continue
                    out.append(item)
            return out

        return walk(nav)

    # ------------------------------------------------------------------ files
    def on_files(self, files: Files, config) -> Files:
        t0 = time.perf_counter()
        from knollm.site import render as R

        cat = self.catalog
        use_dir = config.use_directory_urls
        by_p: dict[str, list] = {p["id"]: [] for p in cat["providers"]}
        for m in cat["models"]:
            by_p.setdefault(m["provider"], []).append(m)
        pmap = {p["id"]: p for p in cat["providers"]}

        def add(path: str, render, *, inclusion=InclusionLevel.UNDEFINED) -> None:
            if files.get_file_from_path(path) is not None:
                return  # a hand-written page wins
            try:
                content = render(R.Links(path, use_dir))
            except Exception as e:  # noqa: BLE001
                raise PluginError(f"knollm: cannot render {path}: {type(e).__name__}: {e}") from e
            files.append(File.generated(config, path, content=content, inclusion=inclusion))

        add("providers/index.md", lambda L: R.render_providers_index(cat, L))
        popularity = {c: len({o["provider"] for o in offers})
                      for c, offers in (self.groups or canonical_groups_all(cat)).items()}
        from knollm.site import measured as M

        meas = self.measured
        for p in cat["providers"]:
            ph = M.health_text(meas.by_provider.get(p["id"])) if meas and p["id"] in meas.by_provider else None
            add(f"providers/{p['id']}.md",
                lambda L, p=p, ph=ph: R.render_provider_page(p, by_p.get(p["id"], []), L, self.slugs,
                                                             popularity=popularity, registries=cat.get("sources"),
                                                             health=ph),
                inclusion=InclusionLevel.NOT_IN_NAV)
        if self.groups:
            add("canonical/index.md", lambda L: R.render_canonical_index(self.groups, self.slugs, L))
            for canon, offers in self.groups.items():
                slug = self.slugs[canon]
                ch = {o["key"]: M.health_text(meas.by_model[(o["provider"], o["id"])]) for o in offers
                      if meas and (o["provider"], o["id"]) in meas.by_model}
                add(f"canonical/{slug}.md",
                    lambda L, c=canon, o=offers, s=slug, ch=ch: R.render_canonical_page(c, o, pmap, L, s, ch or None),
                    inclusion=InclusionLevel.NOT_IN_NAV)
        add("matrix/capabilities.md", lambda L: R.render_capability_matrix(cat, L))
        add("audit.md", lambda L: R.render_audit_page(cat))
        add("measured.md", lambda L: M.render_measured_page(meas))
        if self.libs:
            lrender, rows = self.libs
            try:
                pages = lrender.render_all(rows)
            except Exception as e:  # noqa: BLE001
                raise PluginError(f"knollm: cannot render libraries/: {type(e).__name__}: {e}") from e
            for name, md in pages.items():
                add(f"libraries/{name}", lambda L, md=md: md)
        if self.changes:
            D, diffs = self.changes
            feed = "feed.xml" if config.site_url else None
            add("changes.md", lambda L: D.render_changes_markdown(diffs, feed_href=feed))
            if feed:
                # the feed's rel="self" and page links name where the files are written: feed.xml at
                # the site root, the page at changes/ (changes.html without directory URLs)
                feed_file = File.generated(config, feed, content="")
                page_url = File.generated(config, "changes.md", content="").url
                try:
                    xml = D.render_atom(diffs, config.site_url, feed_path=feed_file.url, page_path=page_url)
                except Exception as e:  # noqa: BLE001
                    raise PluginError(f"knollm: cannot render feed.xml: {e}") from e
                files.append(File.generated(config, feed, content=xml))
        # placeholders so links to the data files resolve; on_post_build writes the real content
        for path in DATA_LINKS:
            if files.get_file_from_path(path) is None:
                files.append(File.generated(config, path, content=b""))
        if files.get_file_from_path("cli.md") is None:
            add("cli.md", lambda L: _cli_stub())
        for name in ASSET_FILES:
            path = ASSET_PREFIX + name
            src = ASSETS_DIR / name
            if not src.is_file():
                raise PluginError(f"knollm: missing asset {src}")
            if files.get_file_from_path(path) is None:
                files.append(File.generated(config, path, abs_src_path=str(src)))
        self.timings["files"] = time.perf_counter() - t0
        return files

    # ------------------------------------------------------------------ pages
    def on_post_page(self, output: str, page, config) -> str:
        """The explorer page carries the first rows of its default view inline (the
        ``data/index-head.json`` content), so they show without waiting for another request."""
        if page.file.src_uri != "explorer.md" or 'id="kn-explorer"' not in output:
            return output
        from knollm.site import data as Dt

        if self._head is None:
            idx = Dt.explorer_index(self.catalog, use_directory_urls=config.use_directory_urls, canon_slugs=self.slugs)
            self._head = inline_json(Dt.explorer_head(idx))
        tag = f'<script type="application/json" id="kn-index-head">{self._head}</script>'
        return output.replace('<div id="kn-explorer"', tag + '<div id="kn-explorer"', 1)

    # ------------------------------------------------------------------ outputs
    def on_post_build(self, config) -> None:
        t0 = time.perf_counter()
        write_data_files(self.catalog, Path(config.site_dir), use_directory_urls=config.use_directory_urls,
                         canon_slugs=self.slugs, full_catalog=self.config.full_catalog)
        self.timings["data"] = time.perf_counter() - t0
        log.info("knollm: %d models, %d providers, %d cross-provider pages (load %.1fs, pages %.1fs, data %.1fs)",
                 len(self.catalog["models"]), len(self.catalog["providers"]), len(self.groups),
                 self.timings.get("load", 0), self.timings.get("files", 0), self.timings["data"])


def write_data_files(cat: dict[str, Any], site_dir: Path, *, use_directory_urls: bool = True,
                     canon_slugs: dict[str, str] | None = None, full_catalog: bool = True) -> dict[str, int]:
    """Write the machine-readable outputs into ``site_dir``; returns ``{relative path: bytes}``."""
    import orjson

    from knollm.catalog.schema import json_schema
    from knollm.site import data as Dt

    written: dict[str, int] = {}

    def write(rel: str, payload: bytes) -> None:
        path = site_dir / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(payload)
        except OSError as e:
            raise PluginError(f"knollm: cannot write {path}: {e.strerror or e}") from e
        written[rel] = len(payload)

    idx = Dt.explorer_index(cat, use_directory_urls=use_directory_urls, canon_slugs=canon_slugs)
    write("data/index.json", Dt.explorer_index_bytes(idx))
    write("data/index-head.json", Dt.explorer_index_bytes(Dt.explorer_head(idx)))
    for b, payload in Dt.detail_chunks(cat).items():
        write(f"data/models/{b}.json", payload)
    write("schema.json", orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2))
    write("models.csv", Dt.catalog_csv(cat))
    from knollm.query.audit import disagreements, summary

    rows = disagreements(cat)
    write("data/audit.json", orjson.dumps({"summary": summary(rows), "rows": rows}))
    if full_catalog:
        write("catalog.json", orjson.dumps(cat))
    from knollm.site.llms import render_llms_full_txt, render_llms_txt

    write("llms.txt", render_llms_txt(cat, full_catalog=full_catalog, use_directory_urls=use_directory_urls).encode("utf-8"))
    write("llms-full.txt", render_llms_full_txt(cat).encode("utf-8"))
    return written


def inline_json(obj: Any) -> str:
    """JSON for a ``<script type="application/json">`` element: ``< > & = '`` written as
    ``\\uXXXX`` escapes, so no ``</script>`` or ``<!--`` in the data can end the element and
    no markup-looking text appears in the page."""
    import orjson

    text = orjson.dumps(obj).decode("utf-8")
    for ch in "<>&='":
        text = text.replace(ch, f"\\u{ord(ch):04x}")
    return text


def canonical_groups_all(cat: dict[str, Any]) -> dict[str, list]:
    from knollm.site.data import canonical_multi

    return canonical_multi(cat["models"])


def _cli_stub() -> str:
    return ("# Command line\n\nRun `knollm --help` for every command; `knollm build --help` builds this site.\n")
