"""``knollm browse``: a full-screen terminal explorer over the catalog (Textual).

The table is :meth:`knollm.query.index.Index.search_positions` over one
:class:`knollm.query.filters.Filters` (held by :class:`knollm.browse.state.BrowseState`);
costs are :func:`knollm.query.cost.estimate`; a model's fields with their sources are
:func:`knollm.fmt.field_rows` over the full catalog (:class:`knollm.query.api.Catalog`),
which loads in a background thread after the first table is drawn. Nothing here filters,
sorts or prices on its own.

Provider text is shown as :class:`rich.text.Text` (never parsed as markup).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import (
    Checkbox, DataTable, Footer, Header, Input, Label, SelectionList, Static, TabbedContent, TabPane,
)

from knollm.browse.state import BrowseState
from knollm.fmt import field_rows, fmt_usd, summary_cells
from knollm.query.filters import CANON, DEPR, FREE, KEY, PRICES, PROVIDER
from knollm.vocab import CAPABILITY_TABLE, MODALITIES, SORT_KEYS

__all__ = ["BrowseApp", "MODEL_COLUMNS", "ROW_PAGE", "where_else"]

#: the model table's columns: (column key, label, Filters sort key or None)
MODEL_COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("pick", "", None),
    ("id", "model", "name"),
    ("provider", "provider", "provider"),
    ("context", "context", "context"),
    ("input", "in $/1M", "price"),
    ("output", "out $/1M", "output_price"),
    ("caps", "capabilities", None),
)
#: rows drawn at once (``m`` draws more); the status line says how many match
ROW_PAGE = 200

HELP = """\
[b]Keys[/b]
  /          search (type to filter live); escape leaves a text field (then keys work)
  tab        next field / pane          1 2 3 4   models, compare, providers, libraries
  ↑ ↓        move in the table (the detail pane follows)
  space      pick / unpick the model for the compare view
  s          next sort order (or click a column header)
  p          paid only on/off           d   show / hide deprecated
  m          draw more rows             r   clear all filters
  y          copy the state as knollm commands and as the site's URL
  enter      (providers view) filter the models by that provider
  ?          this help                  q   quit
[b]Facets[/b] (left): capabilities, modalities, providers (space toggles);
  min context, max input / output price (type a number: 128k, 0.5).
[b]Compare[/b]: type a workload (input, output tokens per request; requests);
  the cost per request and in total use the same formula as `knollm cost`.
"""


def _t(v: Any) -> Text:
    """A cell as plain text (provider strings must not be read as markup)."""
    return Text("?" if v is None else str(v))


def where_else(index: Any, key: str, include_deprecated: bool = False) -> list[tuple]:
    """The other offers of ``key``'s canonical model: paid offers with a known price cheapest
    first, then free ones, then unknown prices (the order of :meth:`Index.where`)."""
    rows = [r for r in index.where(key) if r[KEY] != key and (include_deprecated or not r[DEPR])]

    def group(r: tuple) -> int:
        p = r[PRICES]
        if r[FREE]:
            return 1
        return 0 if p[0] is not None and p[1] is not None else 2

    return sorted(rows, key=group)  # stable: keeps the price order within each group


class TextScreen(ModalScreen[None]):
    """A modal text box (help, copied state); any key closes it."""

    DEFAULT_CSS = """
    TextScreen { align: center middle; }
    TextScreen > VerticalScroll { width: 90%; height: auto; max-height: 90%; border: thick $accent;
                                  background: $surface; padding: 1 2; }
    """
    BINDINGS = [Binding("escape,q,question_mark,enter", "dismiss_screen", "close")]

    def __init__(self, body: str | Text, id: str | None = None) -> None:
        super().__init__(id=id)
        self.body = body

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(self.body, id="text-body")

    def action_dismiss_screen(self) -> None:
        self.dismiss(None)


class BrowseApp(App[None]):
    """The explorer. ``index``: a :class:`knollm.query.index.Index`; ``catalog_loader``: returns
    the full :class:`knollm.query.api.Catalog` (called once, in a thread, for the detail
    pane's sources); ``libraries_loader``: returns ``knollm.libraries.query.list_libraries()``."""

    TITLE = "knollm browse"
    CSS = """
    #facets { width: 34; border-right: solid $primary-darken-2; }
    #facets SelectionList { height: auto; max-height: 12; }
    #facets Label { margin-top: 1; text-style: bold; }
    #facets Input { margin: 0; }
    #main { width: 1fr; }
    #models { height: 1fr; }
    #status, #compare-status { height: 1; color: $text-muted; }
    #detail { width: 58; border-left: solid $primary-darken-2; }
    #detail-title { text-style: bold; }
    #fields { height: auto; max-height: 28; }
    #where { height: auto; max-height: 14; }
    #workload Input { width: 1fr; }
    #workload { height: 3; }
    """
    BINDINGS = [
        Binding("question_mark", "help", "keys"),
        Binding("slash", "focus_search", "search"),
        Binding("space", "pick", "pick"),
        Binding("s", "next_sort", "sort"),
        Binding("p", "toggle_paid", "paid only"),
        Binding("d", "toggle_deprecated", "deprecated"),
        Binding("m", "more", "more rows", show=False),
        Binding("r", "reset", "reset", show=False),
        Binding("y", "copy_state", "copy state"),
        Binding("1", "tab('tab-models')", "models", show=False),
        Binding("2", "tab('tab-compare')", "compare", show=False),
        Binding("3", "tab('tab-providers')", "providers", show=False),
        Binding("4", "tab('tab-libraries')", "libraries", show=False),
        Binding("q", "quit", "quit"),
        Binding("escape", "leave_field", "leave field", show=False),
    ]

    def __init__(self, index: Any, *, state: BrowseState | None = None,
                 catalog_loader: Callable[[], Any] | None = None,
                 libraries_loader: Callable[[], list[Any]] | None = None,
                 site_url: str | None = None) -> None:
        super().__init__()
        self.index = index
        self.state = state or BrowseState()
        self.catalog_loader = catalog_loader
        self.libraries_loader = libraries_loader
        self.site_url = site_url
        self.catalog: Any = None
        self.positions: list[int] = []  # every match, in order
        self.shown = 0  # how many of them are drawn
        self.current: str | None = None  # the model in the detail pane
        self.copied: str = ""  # the last text put on the clipboard (y)
        self.first_frame_at: float | None = None  # wall clock when the first frame was displayed
        self._syncing = False
        counts: dict[str, int] = {}
        for r in index.rows:
            counts[r[PROVIDER]] = counts.get(r[PROVIDER], 0) + 1
        self.provider_counts = counts

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        f = self.state.filters
        yield Header()
        with TabbedContent(initial="tab-models"):
            with TabPane("Models", id="tab-models"):
                with Horizontal():
                    with VerticalScroll(id="facets"):
                        yield Label("Capabilities")
                        yield SelectionList[str](
                            *[(c.label, c.key, c.key in f.capabilities) for c in CAPABILITY_TABLE], id="caps")
                        yield Label("Modalities")
                        yield SelectionList[str](*[(m, m, m in f.modalities) for m in MODALITIES], id="mods")
                        yield Label("Providers")
                        pids = sorted(self.provider_counts)
                        sel = {self.index.provider_id(p) for p in f.providers} if f.providers else set()
                        yield SelectionList[str](
                            *[(Text(f"{p} ({self.provider_counts[p]})"), p, p in sel) for p in pids], id="provs")
                        yield Label("Ranges")
                        yield Input(str(f.min_context or ""), placeholder="min context (128k)", id="min-context")
                        yield Input("" if f.max_input_price is None else f"{f.max_input_price:g}",
                                    placeholder="max input $/1M", id="max-in")
                        yield Input("" if f.max_output_price is None else f"{f.max_output_price:g}",
                                    placeholder="max output $/1M", id="max-out")
                        yield Checkbox("paid only", f.paid, id="paid")
                        yield Checkbox("hide deprecated", not f.include_deprecated, id="hide-dep")
                    with Vertical(id="main"):
                        yield Input(f.text or "", placeholder="search (all words in key, name or canonical id)",
                                    id="search")
                        yield DataTable(id="models", cursor_type="row", zebra_stripes=True)
                        yield Static(id="status")
                    with VerticalScroll(id="detail"):
                        yield Static("no model selected", id="detail-title")
                        yield DataTable(id="fields", cursor_type="row", show_cursor=False)
                        yield Label("Where else (cheapest paid first)")
                        yield DataTable(id="where", cursor_type="row")
            with TabPane("Compare", id="tab-compare"):
                with Horizontal(id="workload"):
                    yield Input(self.state.input_tokens, placeholder="input tokens / request", id="w-in")
                    yield Input(self.state.output_tokens, placeholder="output tokens / request", id="w-out")
                    yield Input(self.state.requests, placeholder="requests", id="w-req")
                yield DataTable(id="compare", cursor_type="row")
                yield Static(id="compare-status")
            with TabPane("Providers", id="tab-providers"):
                yield DataTable(id="providers", cursor_type="row")
            with TabPane("Libraries", id="tab-libraries"):
                yield DataTable(id="libraries", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        t = self.query_one("#models", DataTable)
        for key, label, _ in MODEL_COLUMNS:
            t.add_column(label, key=key, width=48 if key == "id" else None)
        self.query_one("#fields", DataTable).add_columns("field", "value", "source")
        w = self.query_one("#where", DataTable)
        w.add_column("provider", key="provider")
        w.add_column("in", key="input")
        w.add_column("out", key="output")
        w.add_column("context", key="context")
        w.add_column("model", key="key")
        c = self.query_one("#compare", DataTable)
        for k in ("key", "input", "output", "cache_read", "context", "caps", "per_request", "total"):
            c.add_column(k.replace("_", " "), key=k)
        self.refresh_models()
        self.refresh_compare()
        t.focus()

    def on_ready(self) -> None:
        """The first frame is on screen: now load the full catalog (a parsing thread would
        hold the GIL while the first frame paints)."""
        import time

        self.first_frame_at = time.time()  # scripts/bench_browse.py reads it
        if self.catalog_loader is not None:
            self.load_catalog()

    # ------------------------------------------------------------------ the model table
    def refresh_models(self) -> None:
        """Search with the current filters and redraw the first page of rows."""
        try:
            self.positions = self.index.search_positions(self.state.filters.replace(limit=None))
            err = ""
        except Exception as e:  # a FilterError / NotFoundError is shown, never fatal
            self.positions, err = [], f"  ({e})"
        t = self.query_one("#models", DataTable)
        t.clear()
        self.shown = 0
        self._draw_more(ROW_PAGE)
        self._status(err)
        if self.positions:
            self.show_detail(self.index.rows[self.positions[0]][KEY])

    def _draw_more(self, n: int) -> None:
        t = self.query_one("#models", DataTable)
        rows = self.index.rows
        picked = set(self.state.picked)
        new = self.positions[self.shown:self.shown + n]
        for i in new:
            r = rows[i]
            t.add_row(*self._cells(r, picked), key=r[KEY])
        self.shown += len(new)

    def _cells(self, r: tuple, picked: set[str]) -> list[Any]:
        c = summary_cells(self.index.summary(r))
        return ["●" if r[KEY] in picked else " ", _t(c["id"]), _t(c["provider"]), c["context"], c["input"],
                c["output"], c["caps"]]

    def _status(self, extra: str = "") -> None:
        f = self.state.filters
        total = len(self.positions)
        more = f"; {self.shown:,} drawn (m: more)" if self.shown < total else ""
        picked = f"; {len(self.state.picked)} picked" if self.state.picked else ""
        self.query_one("#status", Static).update(
            Text(f"{total:,} models{more} · sort {f.sort}{picked}{extra}"))

    def table_keys(self) -> list[str]:
        """The keys of the rows drawn in the model table, in order (tests read this)."""
        t = self.query_one("#models", DataTable)
        return [rk.value for rk in t.rows]

    # ------------------------------------------------------------------ detail + where else
    def show_detail(self, key: str) -> None:
        self.current = key
        idx = self.index
        r = idx.model(key)
        title = self.query_one("#detail-title", Static)
        fields = self.query_one("#fields", DataTable)
        fields.clear()
        if self.catalog is not None:
            m = self.catalog.model(key)
            title.update(Text(f"{key}  (every value with its source)"))
            rows = field_rows(m)
        else:
            title.update(Text(f"{key}  (sources loading…)"))
            rows = [{"field": k, "value": v, "source": ""} for k, v in summary_cells(idx.summary(r)).items()]
        for row in rows:
            fields.add_row(_t(row["field"]), _t(row["value"]), _t(row["source"]))
        w = self.query_one("#where", DataTable)
        w.clear()
        for o in where_else(idx, key, self.state.filters.include_deprecated):
            c = summary_cells(idx.summary(o))
            w.add_row(_t(o[PROVIDER]), c["input"], c["output"], c["context"], _t(o[KEY]), key=o[KEY])
        if not w.row_count:
            w.add_row(Text(f"only here ({r[CANON]})"), "", "", "", "")

    @work(thread=True, exclusive=True, group="catalog")
    def load_catalog(self) -> None:
        cat = self.catalog_loader() if self.catalog_loader else None
        self.call_from_thread(self._catalog_ready, cat)

    def _catalog_ready(self, cat: Any) -> None:
        self.catalog = cat
        if self.current:
            self.show_detail(self.current)

    @on(DataTable.RowHighlighted, "#models")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value:
            self.show_detail(event.row_key.value)

    @on(DataTable.HeaderSelected, "#models")
    def _header(self, event: DataTable.HeaderSelected) -> None:
        sort = {k: s for k, _, s in MODEL_COLUMNS}.get(event.column_key.value)
        if sort:
            self.state.update(sort=sort)
            self.refresh_models()

    # ------------------------------------------------------------------ facets
    @on(Input.Changed, "#search")
    def _search(self, event: Input.Changed) -> None:
        self.state.update(text=event.value)
        self.refresh_models()

    @on(SelectionList.SelectedChanged)
    def _facet(self, event: SelectionList.SelectedChanged) -> None:
        if self._syncing:
            return
        field = {"caps": "capabilities", "mods": "modalities", "provs": "providers"}.get(event.selection_list.id)
        if field:
            self.state.update(**{field: list(event.selection_list.selected)})
            self.refresh_models()

    @on(Input.Changed, "#min-context, #max-in, #max-out")
    def _range(self, event: Input.Changed) -> None:
        from knollm.query.cost import parse_count

        text = event.value.strip().lstrip("$")
        field = {"min-context": "min_context", "max-in": "max_input_price",
                 "max-out": "max_output_price"}[event.input.id]
        try:
            v: Any = None if not text else parse_count(text) if field == "min_context" else float(text)
            if v is not None and v < 0:
                raise ValueError("must be >= 0")
        except ValueError:
            self._status(f"  ({field.replace('_', ' ')}: not a number: {text!r})")
            return
        self.state.update(**{field: v})
        self.refresh_models()

    @on(Checkbox.Changed, "#paid")
    def _paid(self, event: Checkbox.Changed) -> None:
        self.state.update(paid=bool(event.value))
        self.refresh_models()

    @on(Checkbox.Changed, "#hide-dep")
    def _dep(self, event: Checkbox.Changed) -> None:
        self.state.update(include_deprecated=not event.value)
        self.refresh_models()

    # ------------------------------------------------------------------ actions
    def action_help(self) -> None:
        self.push_screen(TextScreen(HELP, id="help"))

    def action_leave_field(self) -> None:
        """Escape: from a text field or facet back to the active view's table (keys work again)."""
        tab = self.query_one(TabbedContent).active
        table = {"tab-models": "#models", "tab-compare": "#compare", "tab-providers": "#providers",
                 "tab-libraries": "#libraries"}[tab]
        self.query_one(table, DataTable).focus()

    def action_focus_search(self) -> None:
        self.query_one(TabbedContent).active = "tab-models"
        self.query_one("#search", Input).focus()

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_toggle_paid(self) -> None:
        cb = self.query_one("#paid", Checkbox)
        cb.value = not cb.value

    def action_toggle_deprecated(self) -> None:
        cb = self.query_one("#hide-dep", Checkbox)
        cb.value = not cb.value

    def action_next_sort(self) -> None:
        keys = list(SORT_KEYS)
        self.state.update(sort=keys[(keys.index(self.state.filters.sort) + 1) % len(keys)])
        self.refresh_models()

    def action_more(self) -> None:
        self._draw_more(ROW_PAGE)
        self._status()

    def action_reset(self) -> None:
        self._syncing = True
        for sid in ("#caps", "#mods", "#provs"):
            self.query_one(sid, SelectionList).deselect_all()
        self._syncing = False
        from knollm.query.filters import Filters

        self.state.filters = Filters()
        for iid in ("#search", "#min-context", "#max-in", "#max-out"):
            self.query_one(iid, Input).value = ""
        self.query_one("#paid", Checkbox).value = False
        self.query_one("#hide-dep", Checkbox).value = True
        self.refresh_models()

    def action_pick(self) -> None:
        t = self.query_one("#models", DataTable)
        if not t.row_count or self.query_one(TabbedContent).active != "tab-models":
            return
        key = t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value
        now = self.state.toggle_pick(key)
        t.update_cell(key, "pick", "●" if now else " ")
        self._status()
        self.refresh_compare()

    def action_copy_state(self) -> None:
        lines = self.state.commands()
        url = self.state.explorer_url(self.site_url)
        gaps = self.state.url_gaps()
        self.copied = "\n".join(lines + [url])
        self.copy_to_clipboard(self.copied)
        body = Text()
        body.append("Copied to the clipboard (OSC 52):\n\n", style="bold")
        body.append("\n".join(lines) + "\n\n" + url + "\n")
        if gaps:
            body.append("\nnot in the URL (no such explorer parameter): " + ", ".join(gaps) + "\n", style="italic")
        self.push_screen(TextScreen(body, id="copied"))

    # ------------------------------------------------------------------ compare
    @on(Input.Changed, "#w-in, #w-out, #w-req")
    def _workload(self, event: Input.Changed) -> None:
        attr = {"w-in": "input_tokens", "w-out": "output_tokens", "w-req": "requests"}[event.input.id]
        setattr(self.state, attr, event.value.strip())
        self.refresh_compare()

    def compare_rows(self) -> list[dict[str, Any]]:
        """The compare view's rows: each picked model's summary cells plus its cost
        (:func:`knollm.query.cost.estimate`) for the typed workload."""
        from knollm.query.cost import estimate

        w = self.state.workload()
        out = []
        for key in self.state.picked:
            s = self.index.summary(self.index.model(key))
            e = estimate(s, w)
            out.append({**summary_cells(s), "per_request": e["per_request"], "total": e["total"]})
        return out

    def refresh_compare(self) -> None:
        t = self.query_one("#compare", DataTable)
        status = self.query_one("#compare-status", Static)
        t.clear()
        try:
            rows = self.compare_rows()
        except ValueError as e:
            status.update(Text(f"workload: {e}"))
            return
        for r in rows:
            t.add_row(_t(r["key"]), r["input"], r["output"], r["cache_read"], r["context"], r["caps"],
                      fmt_usd(r["per_request"]), fmt_usd(r["total"]), key=r["key"])
        w = self.state.workload()
        status.update(Text(
            f"{len(rows)} picked (space in the models table) · {w.input_tokens:,} in + {w.output_tokens:,} out "
            f"x {w.requests:,} requests · '?' = a needed price is unknown" if rows else
            "pick models with space in the models table"))

    # ------------------------------------------------------------------ providers, libraries
    @on(TabbedContent.TabActivated)
    def _tab(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane.id
        if pane == "tab-providers":
            self.fill_providers()
        elif pane == "tab-libraries":
            self.fill_libraries()

    def fill_providers(self) -> None:
        t = self.query_one("#providers", DataTable)
        if t.row_count:
            return
        for k in ("id", "name", "models", "api_shape", "base_url", "sources"):
            t.add_column(k, key=k)
        for p in sorted(self.index.providers, key=lambda p: (-(p.get("model_count") or 0), p["id"])):
            t.add_row(_t(p["id"]), _t(p.get("name")), str(p.get("model_count") or 0), _t(p.get("api_shape")),
                      _t(p.get("base_url")), _t(",".join(p.get("sources") or [])), key=p["id"])

    @on(DataTable.RowSelected, "#providers")
    def _provider_chosen(self, event: DataTable.RowSelected) -> None:
        pid = event.row_key.value
        sl = self.query_one("#provs", SelectionList)
        self._syncing = True
        sl.deselect_all()
        if pid in self.provider_counts:
            sl.select(pid)
        self._syncing = False
        self.state.update(providers=[pid])
        self.refresh_models()
        self.action_tab("tab-models")

    def fill_libraries(self) -> None:
        t = self.query_one("#libraries", DataTable)
        if t.row_count or self.libraries_loader is None:
            return
        for k in ("slug", "name", "category", "rating", "score", "summary"):
            t.add_column(k, key=k)
        for row in self.libraries_loader():
            lib = row.record.library
            t.add_row(_t(lib.slug), _t(lib.name), _t(lib.category), str(row.rating.rating),
                      f"{row.rating.score:.2f}", _t(lib.summary), key=lib.slug)
