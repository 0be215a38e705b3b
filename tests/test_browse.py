"""``knollm browse``: the Textual app driven headlessly by Textual's own test driver
(``App.run_test()`` + ``Pilot``), its table checked against the Python API
(:class:`knollm.query.api.Catalog`) on the fixture dumps and on the real dumps; the state
as commands (run through the CLI) and as the site explorer's URL."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from pathlib import Path

import pytest

pytest.importorskip("textual", reason="knollm browse needs the optional extra 'browse' (textual)")

from knollm.browse.app import ROW_PAGE, BrowseApp, where_else  # noqa: E402
from knollm.browse.cli import make_app  # noqa: E402
from knollm.browse.state import BrowseState  # noqa: E402
from knollm.cli import main  # noqa: E402
from knollm.fmt import field_rows  # noqa: E402
from knollm.query.api import Catalog  # noqa: E402
from knollm.query.cost import Workload, estimate  # noqa: E402
from knollm.query.filters import Filters  # noqa: E402
from knollm.vocab import CAPABILITIES  # noqa: E402

JS = Path(__file__).resolve().parents[1] / "knollm" / "site" / "assets" / "knollm.js"
SIZE = (200, 50)


def api_keys(cat: Catalog, f: Filters) -> list[str]:
    return [m["key"] for m in cat.search(f.replace(limit=None))]


def run(app: BrowseApp, script) -> None:
    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await script(app, pilot)

    asyncio.run(go())


async def toggle_option(app: BrowseApp, pilot, list_id: str, value: str) -> None:
    """Highlight ``value`` in a facet list and press space, as a user does."""
    from textual.widgets import SelectionList

    sl = app.query_one(list_id, SelectionList)
    sl.focus()
    sl.highlighted = next(i for i in range(sl.option_count) if sl.get_option_at_index(i).value == value)
    await pilot.press("space")
    await pilot.pause()


@pytest.fixture(scope="module")
def fixture_cat(fixture_dumps) -> Catalog:
    return Catalog.load(dumps=fixture_dumps)


# ---------------------------------------------------------------------------- the app, fixture dumps
def test_opens_on_the_full_catalog_in_api_order(fixture_dumps, fixture_cat):
    app = make_app(str(fixture_dumps))

    async def script(app, pilot):
        want = api_keys(fixture_cat, Filters())
        assert len(app.positions) == len(want) > ROW_PAGE
        assert app.table_keys() == want[:ROW_PAGE]
        await pilot.press("m")
        assert app.table_keys() == want[: 2 * ROW_PAGE]

    run(app, script)


def test_type_query_toggle_facets_and_toggles(fixture_dumps, fixture_cat):
    app = make_app(str(fixture_dumps))

    async def script(app, pilot):
        await pilot.press("slash", *"llama")
        await pilot.pause()
        f = Filters(text="llama")
        assert app.state.filters == f
        assert app.table_keys() == api_keys(fixture_cat, f)[:ROW_PAGE] and app.table_keys()

        await toggle_option(app, pilot, "#caps", "tools")
        f = f.replace(capabilities=["tools"])
        assert app.state.filters == f
        assert app.table_keys() == api_keys(fixture_cat, f) and app.table_keys()

        await pilot.press("escape", "p")  # paid only
        f = f.replace(paid=True)
        assert app.state.filters == f
        want = api_keys(fixture_cat, f)
        assert app.table_keys() == want
        assert not any(fixture_cat.model(k)["free"] for k in want)

        await pilot.press("d")  # show deprecated
        f = f.replace(include_deprecated=True)
        assert app.table_keys() == api_keys(fixture_cat, f)

        await pilot.press("s")  # next sort order after name
        f = f.replace(sort="provider")
        assert app.state.filters == f
        assert app.table_keys() == api_keys(fixture_cat, f)

        await toggle_option(app, pilot, "#provs", "openrouter")
        f = f.replace(providers=["openrouter"])
        assert app.table_keys() == api_keys(fixture_cat, f)
        assert {k.split("/")[0] for k in app.table_keys()} == {"openrouter"}

        app.query_one("#min-context").focus()
        await pilot.press(*"128k")
        app.query_one("#max-in").focus()
        await pilot.press(*"2")
        await pilot.pause()
        f = f.replace(min_context=128_000, max_input_price=2.0)
        assert app.state.filters == f
        assert app.table_keys() == api_keys(fixture_cat, f)

        # a bad number is reported, and the filters stay as they were
        await pilot.press("x")
        await pilot.pause()
        assert app.state.filters == f
        assert "not a number" in str(app.query_one("#status").render())

    run(app, script)


def test_sort_by_clicking_a_column_header(fixture_dumps, fixture_cat):
    app = make_app(str(fixture_dumps))

    async def script(app, pilot):
        from textual.widgets import DataTable

        t = app.query_one("#models", DataTable)
        t.post_message(DataTable.HeaderSelected(t, t.columns["context"].key, 3, t.columns["context"].label))
        await pilot.pause()
        assert app.state.filters.sort == "context"
        assert app.table_keys() == api_keys(fixture_cat, Filters(sort="context"))[:ROW_PAGE]

    run(app, script)


def test_detail_pane_every_value_with_its_source_and_where_else(fixture_dumps, fixture_cat):
    # a model served by several providers in the fixtures
    groups = fixture_cat.canonical_groups()
    canon = next(c for c, ms in sorted(groups.items()) if len({m["provider"] for m in ms}) >= 3
                 and not any(m.get("deprecated") for m in ms))
    key = groups[canon][0]["key"]
    app = make_app(str(fixture_dumps), Filters(text=key))

    async def script(app, pilot):
        await app.workers.wait_for_complete()
        await pilot.pause()
        from textual.widgets import DataTable

        app.show_detail(key)
        fields = app.query_one("#fields", DataTable)
        got = [[str(c) for c in fields.get_row_at(i)] for i in range(fields.row_count)]
        want = [["?" if r[k] is None else str(r[k]) for k in ("field", "value", "source")]
                for r in field_rows(fixture_cat.model(key))]
        assert got == want
        assert any(r[2] for r in got)  # sources are shown

        w = app.query_one("#where", DataTable)
        got_where = [str(w.get_row_at(i)[4]) for i in range(w.row_count)]
        offers = [m for m in fixture_cat.where(key) if m["key"] != key and not m.get("deprecated")]
        assert sorted(got_where) == sorted(m["key"] for m in offers) and got_where
        # cheapest paid first: known-price paid offers ascending, then free, then unknown
        kinds = []
        for k in got_where:
            m = fixture_cat.model(k)
            p = m["prices"]
            kinds.append(1 if m["free"] else 0 if p["input"] is not None and p["output"] is not None else 2)
        assert kinds == sorted(kinds)
        paid = [fixture_cat.model(k)["prices"] for k, g in zip(got_where, kinds) if g == 0]
        assert [p["input"] + p["output"] for p in paid] == sorted(p["input"] + p["output"] for p in paid)

    run(app, script)


def test_select_and_compare_with_a_typed_workload(fixture_dumps, fixture_cat):
    app = make_app(str(fixture_dumps), Filters(text="llama", paid=True, sort="price"))

    async def script(app, pilot):
        await pilot.press("space", "down", "space", "down", "space")
        picked = app.table_keys()[:3]
        assert app.state.picked == picked
        await pilot.press("space")  # unpick the third
        assert app.state.picked == picked[:2]
        await pilot.press("2")
        await pilot.pause()
        for wid, text in (("#w-in", "1.5M"), ("#w-out", "200k"), ("#w-req", "10k")):
            inp = app.query_one(wid)
            inp.value = ""
            inp.focus()
            await pilot.press(*text)
        await pilot.pause()
        w = Workload(1_500_000, 200_000, requests=10_000)
        rows = app.compare_rows()
        assert [r["key"] for r in rows] == picked[:2]
        for r in rows:
            e = estimate(fixture_cat.model(r["key"]), w)
            assert (r["per_request"], r["total"]) == (e["per_request"], e["total"])
            assert r["total"] is not None and r["total"] > 0
        from textual.widgets import DataTable

        t = app.query_one("#compare", DataTable)
        assert [str(t.get_row_at(i)[0]) for i in range(t.row_count)] == picked[:2]
        # a workload that is not a count is reported, not fatal
        await pilot.press("x")
        await pilot.pause()
        assert "workload" in str(app.query_one("#compare-status").render())

    run(app, script)


def test_providers_and_libraries_views_and_help(fixture_dumps, fixture_cat):
    app = make_app(str(fixture_dumps))

    async def script(app, pilot):
        from textual.widgets import DataTable

        await pilot.press("3")
        await pilot.pause()
        t = app.query_one("#providers", DataTable)
        ids = [rk.value for rk in t.rows]
        assert sorted(ids) == sorted(p["id"] for p in fixture_cat.providers)
        t.focus()
        t.move_cursor(row=ids.index("togetherai"))
        await pilot.press("enter")
        await pilot.pause()
        assert app.state.filters.providers == ("togetherai",)
        assert app.table_keys() == api_keys(fixture_cat, Filters(providers=["togetherai"]))

        await pilot.press("4")
        await pilot.pause()
        from knollm.libraries.query import list_libraries

        lib = app.query_one("#libraries", DataTable)
        assert [rk.value for rk in lib.rows] == [r.slug for r in list_libraries()] and lib.row_count

        await pilot.press("question_mark")
        await pilot.pause()
        assert app.screen.id == "help"
        assert "pick / unpick" in str(app.screen.query_one("#text-body").render())
        await pilot.press("escape")
        assert app.screen.id != "help"

    run(app, script)


def test_copy_state_as_commands_and_url(fixture_dumps, fixture_cat, capsys):
    app = make_app(str(fixture_dumps), site_url="https://example.org/knollm")

    async def script(app, pilot):
        app.query_one("#search").value = "llama 3"  # (typing is covered above)
        await pilot.pause()
        await toggle_option(app, pilot, "#caps", "tools")
        await pilot.press("escape", "p", "s", "s")
        await pilot.press("space")
        await pilot.press("y")
        await pilot.pause()
        assert app.screen.id == "copied"

    run(app, script)
    lines = app.copied.splitlines()
    search, compare, cost, url = lines
    assert url.startswith("https://example.org/knollm/explorer/?")
    # the copied search command, run through the CLI, lists exactly the table's models
    argv = shlex.split(search)
    assert argv[:3] == ["knollm", "models", "search"]
    capsys.readouterr()
    assert main(argv[1:] + ["--dumps", str(fixture_dumps), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [m["key"] for m in out["models"]] == api_keys(fixture_cat, app.state.filters)
    assert out["query"]["paid"] is True and out["query"]["capabilities"] == ["tools"]
    # and the cost command prices the picked model with the same formula
    assert main(shlex.split(cost)[1:] + ["--dumps", str(fixture_dumps), "--json"]) in (0, 1)
    res = json.loads(capsys.readouterr().out)
    assert [r["key"] for r in res["results"]] + res["unknown"] == app.state.picked
    assert compare.startswith("knollm compare " + app.state.picked[0])


# ---------------------------------------------------------------------------- the state, without the app
def test_url_parameters_are_the_explorers():
    defaults = re.search(r"FACET_DEFAULTS = \{(.*?)\};", JS.read_text(encoding="utf-8"), re.S).group(1)
    known = set(re.findall(r"(\w+):", defaults))
    st = BrowseState(Filters(text="llama 3", providers=["groq", "openai"], capabilities=["tools", "vision"],
                             modalities=["image"], kinds=["chat"], min_context=128_000, max_input_price=0.5,
                             free=True, open_weights=True, include_deprecated=True, sort="context"))
    q = st.explorer_params()
    assert set(q) <= known
    assert q == {"s": "llama 3", "p": "groq,openai", "cap": "tools,vision", "mod": "image", "ctx": "128000",
                 "maxp": "0.5", "free": "1", "ow": "1", "dep": "1", "kind": "chat", "sort": "ctx", "dir": "desc"}
    assert st.explorer_url() == ("explorer/?s=llama+3&p=groq,openai&cap=tools,vision&mod=image&ctx=128000&maxp=0.5"
                                 "&free=1&ow=1&dep=1&kind=chat&sort=ctx&dir=desc")
    assert st.url_gaps() == []
    paid = BrowseState(Filters(paid=True, max_output_price=2))
    assert paid.explorer_url("https://x.org/") == "https://x.org/explorer/?paid=1"
    assert paid.url_gaps() == ["max output price"]


def test_commands_parse_back_to_the_same_filters(fixture_dumps, capsys):
    f = Filters(text="llama", providers=["openrouter"], capabilities=["tools"], modalities=["text"],
                min_context=8000, max_input_price=1.5, max_output_price=3, paid=True, include_deprecated=True,
                sort="price")
    st = BrowseState(f)
    argv = shlex.split(st.commands()[0])
    assert main(argv[1:] + ["--dumps", str(fixture_dumps), "--json"]) in (0, 1)
    q = json.loads(capsys.readouterr().out)["query"]
    assert Filters.of({k: v for k, v in q.items() if k != "limit"}) == f
    assert len(st.commands()) == 1  # nothing picked: no compare / cost lines


def test_free_and_paid_are_exclusive(fixture_dumps, capsys):
    assert main(["models", "search", "--free", "--paid", "--dumps", str(fixture_dumps)]) == 2
    assert "mutually exclusive" in capsys.readouterr().err


def test_untrusted_text_is_not_markup():
    from knollm.browse.app import _t

    assert _t("[bold red]x[/]").plain == "[bold red]x[/]"


# ---------------------------------------------------------------------------- the real dumps
@pytest.mark.shared
def test_real_dumps_search_facets_compare(shared_dumps):
    cat = Catalog.load(dumps=shared_dumps)
    app = make_app(str(shared_dumps))
    app.catalog_loader = lambda: cat  # the same cached catalog, loaded once for the test

    async def script(app, pilot):
        want = api_keys(cat, Filters())
        assert len(want) > 5000 and app.table_keys() == want[:ROW_PAGE]
        await pilot.press("slash", *"llama 3.3")
        app.query_one("#search").value = "llama 3.3 70b"
        await pilot.pause()
        f = Filters(text="llama 3.3 70b")
        assert app.table_keys() == api_keys(cat, f)[:ROW_PAGE] and len(app.table_keys()) > 5
        await toggle_option(app, pilot, "#caps", "tools")
        await pilot.press("escape", "p", "s")
        f = f.replace(capabilities=["tools"], paid=True, sort="provider")
        assert app.state.filters == f
        keys = app.table_keys()
        assert keys == api_keys(cat, f) and keys
        assert all(cat.model(k)["capabilities"]["tools"] is True for k in keys)
        # where else for the first one equals the API's offers
        offers = {m["key"] for m in cat.where(keys[0]) if m["key"] != keys[0] and not m.get("deprecated")}
        assert {r[0] for r in where_else(app.index, keys[0])} == offers
        await pilot.press("space", "down", "space")
        rows = app.compare_rows()
        w = Workload(2000, 500)
        assert [r["key"] for r in rows] == keys[:2]
        assert [r["total"] for r in rows] == [estimate(cat.model(k), w)["total"] for k in keys[:2]]
        await app.workers.wait_for_complete()
        await pilot.pause()
        app.show_detail(keys[0])
        assert "every value with its source" in str(app.query_one("#detail-title").render())

    run(app, script)
    assert set(CAPABILITIES) >= set(app.state.filters.capabilities)
