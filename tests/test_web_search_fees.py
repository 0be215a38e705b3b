"""Web searches a provider's own search tool makes are billed apart from the tokens (Anthropic's
web_search server tool: $10 per 1,000 searches, counted in ``usage.server_tool_use``). The
catalog carries the price from genai-prices (USD a search, named as its source), the client
adds the searches to a call's cost (whole answers and streams), a call that searched where
the price is unknown is unpriced (never its tokens' cost alone), and a budget holds for the
searches a call may make (``max_uses``) or refuses a search tool nothing bounds. Real clients
against loopback provider servers that answer as Anthropic's and Perplexity's APIs document."""

from __future__ import annotations

import pytest

from knollm import AsyncClient, Client
from knollm.client import Budget, SQLiteStore
from knollm.client.accounting import search_bound, worst_case_cost
from knollm.client.routing import Offer
from knollm.query.api import Catalog
from tests.support.client_fixtures import catalog, env_for, model, servers, srv  # noqa: F401 - fixtures

PROVIDERS = ("anthropic", "groq")  # (the module's loopback servers: client_fixtures.servers)

KEYS = {"ANTHROPIC_API_KEY": "sk-ant-search-1111", "GROQ_API_KEY": "gsk_search_2222"}
MSG = [{"role": "user", "content": "what happened in the news today?"}]
CLAUDE = "anthropic/claude-test"
SEARCH = {"type": "web_search_20250305", "name": "web_search"}


def claude(web_search: float | None) -> dict:
    m = model("anthropic", "claude-test", "claude-test", input=3.0, output=15.0)
    m["prices"]["web_search"] = web_search
    return m


def client(srv, tmp_path, web_search: float | None = 0.01, cls=Client, **kw):
    cat = catalog(claude(web_search), model("groq", "llama-3.3-70b-versatile"))
    return cls(catalog=Catalog(cat), env=env_for(srv, KEYS), store=SQLiteStore(tmp_path / "l.db"), **kw)


TOKENS = (120 * 3.0 + 30 * 15.0) / 1_000_000  # the servers' default usage: 120 in, 30 out


def test_the_catalog_carries_anthropics_search_price_from_genai_prices():
    from knollm.catalog.registries import load_genai_prices
    from knollm.providers import provider_registry

    reg = load_genai_prices(provider_registry())
    claude_models = reg.provider_models("anthropic")
    priced = {mid: m.fields["prices"].get("web_search") for mid, m in claude_models.items()
              if "sonnet-4" in mid or "opus-4" in mid}
    assert priced, "genai-prices lists Anthropic's Claude 4 models"
    # $10 per 1,000 searches, as genai-prices (web_searches_kcount) and Anthropic's pricing page say
    assert set(priced.values()) == {0.01}, priced


@pytest.mark.parametrize("stream", [False, True])
def test_a_calls_searches_are_added_to_its_cost(srv, tmp_path, stream):
    srv["anthropic"].searches = 3
    with client(srv, tmp_path) as c:
        if stream:
            items = list(c.stream(CLAUDE, MSG, tools=[SEARCH]))
            text, r = "".join(items[:-1]), items[-1]
        else:
            r = c.chat(CLAUDE, MSG, tools=[SEARCH])
            text = r.content
        assert text  # the search blocks are not the answer's text
        assert r.usage.web_searches == 3
        assert r.cost_usd == pytest.approx(TOKENS + 3 * 0.01)
        d = r.to_dict()  # (knollm chat --json)
        assert d["usage"]["web_searches"] == 3
        assert [b["type"] for b in d["blocks"]][:2] == ["server_tool_use", "web_search_tool_result"]
    rows = SQLiteStore(tmp_path / "l.db").rows()
    assert rows[-1]["cost_usd"] == pytest.approx(TOKENS + 3 * 0.01)  # the ledger too


def test_without_searches_nothing_is_added(srv, tmp_path):
    with client(srv, tmp_path) as c:
        r = c.chat(CLAUDE, MSG)
    assert r.usage.web_searches == 0
    assert r.cost_usd == pytest.approx(TOKENS)


def test_searches_without_a_known_price_leave_the_call_unpriced_not_charged_for_its_tokens_alone(srv, tmp_path):
    srv["anthropic"].searches = 2
    with client(srv, tmp_path, web_search=None) as c:
        r = c.chat(CLAUDE, MSG, tools=[SEARCH])
    assert r.cost_usd is None
    assert "web_search" in r.unpriced_reason and "2 web searches" in r.unpriced_reason


def test_perplexitys_counted_searches_are_priced_on_an_openai_compatible_api(srv, tmp_path):
    """``usage.num_search_queries`` (Perplexity's chat completions) is read on every
    OpenAI-compatible answer: here a groq-shaped deployment whose catalog entry has the price."""
    srv["groq"].searches = 4
    cat = catalog(model("groq", "sonar-test", "sonar-test", input=1.0, output=1.0))
    cat["models"][0]["prices"]["web_search"] = 0.005
    with Client(catalog=Catalog(cat), env=env_for(srv, KEYS), store=SQLiteStore(tmp_path / "p.db")) as c:
        r = c.chat("groq/sonar-test", MSG)
    assert r.usage.web_searches == 4
    assert r.cost_usd == pytest.approx((120 + 30) / 1_000_000 + 4 * 0.005)


def test_the_search_bound_of_a_request():
    assert search_bound({}) == 0
    assert search_bound({"tools": [{"type": "function", "function": {"name": "f"}}]}) == 0
    assert search_bound({"tools": [{**SEARCH, "max_uses": 2}, {**SEARCH, "max_uses": 3}]}) == 5
    assert search_bound({"tools": [SEARCH]}) is None
    assert search_bound({"tools": [{**SEARCH, "max_uses": 0}]}) is None
    assert search_bound({"tools": [{**SEARCH, "max_uses": "5"}]}) is None


def test_the_worst_case_holds_for_the_searches():
    o = Offer.from_model(claude(0.01))
    base = worst_case_cost(o, 1000, 100)
    assert worst_case_cost(o, 1000, 100, 2) == pytest.approx(base + 0.02)
    assert worst_case_cost(o, 1000, 100, None) is None  # unbounded
    assert worst_case_cost(Offer.from_model(claude(None)), 1000, 100, 1) is None  # searches unpriced
    free = Offer.from_model({**model("groq", "free-test", input=0.0, output=0.0, free=True),
                             "prices": {"input": 0.0, "output": 0.0, "web_search": 0.004}})
    assert worst_case_cost(free, 1000, 100) == 0.0
    assert worst_case_cost(free, 1000, 100, 5) == pytest.approx(0.02)  # a free model's searches still cost


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_a_budget_refuses_a_search_tool_nothing_bounds_and_holds_for_max_uses(srv, tmp_path, cls):
    import asyncio

    from knollm.errors import KnollmError

    srv["anthropic"].searches = 2
    c = client(srv, tmp_path, cls=cls, budgets=[Budget(1.0, "day")])

    async def both():
        outcomes = []
        for tools in ([SEARCH], [{**SEARCH, "max_uses": 2}]):
            try:
                r = c.chat(CLAUDE, MSG, max_tokens=100, tools=tools)
                outcomes.append(await r if cls is AsyncClient else r)
            except KnollmError as e:
                outcomes.append(e)
        if cls is AsyncClient:
            await c.aclose()
        else:
            c.close()
        return outcomes

    refused, served = asyncio.run(both())
    assert isinstance(refused, KnollmError)
    assert "max_uses" in str(refused) and "budget" in str(refused)
    assert len(srv["anthropic"].requests) == 1  # refused before its provider was called; the second call sent
    assert served.cost_usd == pytest.approx(TOKENS + 0.02)


def test_a_budget_too_small_for_the_searches_refuses_the_call(srv, tmp_path):
    """The hold is the tokens' worst case plus max_uses searches: a budget with room for the
    tokens but not for 50 searches ($0.50) refuses."""
    o = Offer.from_model(claude(0.01))
    tokens_only = worst_case_cost(o, 2000, 100)
    with client(srv, tmp_path, budgets=[Budget(tokens_only + 0.1, "day")]) as c:
        from knollm.errors import KnollmError

        with pytest.raises(KnollmError):
            c.chat(CLAUDE, MSG, max_tokens=100, tools=[{**SEARCH, "max_uses": 50}])
        assert srv["anthropic"].requests == []
        assert c.chat(CLAUDE, MSG, max_tokens=100, tools=[{**SEARCH, "max_uses": 1}]).provider == "anthropic"


def test_a_stream_cut_after_its_searches_is_charged_for_them(srv, tmp_path):
    """The provider bills the searches it made even when the stream breaks before the final
    ``message_delta`` carries their count: the web_search blocks seen are counted, and the
    interrupted call's ledger row includes them."""
    from knollm import StreamInterrupted
    from knollm.client.accounting import estimate_tokens

    srv["anthropic"].searches = 2
    srv["anthropic"].faults("cut2")
    with client(srv, tmp_path, retries=0) as c:
        with pytest.raises(StreamInterrupted):
            list(c.stream(CLAUDE, MSG, tools=[{**SEARCH, "max_uses": 2}]))
    (row,) = SQLiteStore(tmp_path / "l.db").rows()
    assert row["outcome"] == "interrupted" and row["output_tokens"] == estimate_tokens("Hello from ")
    assert row["cost_usd"] == pytest.approx((120 * 3.0 + row["output_tokens"] * 15.0) / 1_000_000 + 2 * 0.01)


def test_the_prompt_estimate_counts_assistant_turns_passed_on_whole():
    """A history's search results go to Anthropic as input tokens: the turns passed on whole
    (``x_anthropic["turns"]``, as the gateway sends them) count in the estimate a budget holds."""
    from knollm.client.accounting import prompt_tokens

    msgs = [{"role": "user", "content": "news?"}, {"role": "assistant", "content": "Here."},
            {"role": "user", "content": "more"}]
    result = {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_0",
              "content": [{"type": "web_search_result", "url": "https://example.com/", "title": "Example",
                           "encrypted_content": "x" * 8000}]}
    plain = prompt_tokens(msgs, {})
    with_turns = prompt_tokens(msgs, {"x_anthropic": {"turns": [[result, {"type": "text", "text": "Here."}]]}})
    assert with_turns - plain >= 2000  # 8,000 characters of search result: ~2,000 tokens more
    assert prompt_tokens(msgs, {"x_anthropic": {"turns": [None]}}) == plain


def test_the_prompt_estimate_counts_thinking_blocks_given_back():
    """A tool loop with thinking on gives the assistant turn's thinking block back to
    Anthropic (``x_anthropic["thought"]``): input tokens the translated messages do not hold,
    so the estimate a budget holds counts them; an empty ``x_anthropic`` (every Messages
    request carries one) adds nothing."""
    from knollm.client.accounting import prompt_tokens

    msgs = [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": "Checking."},
            {"role": "user", "content": "sunny"}]
    plain = prompt_tokens(msgs, {})
    thought = [[{"type": "thinking", "thinking": "y" * 4000, "signature": "sig"}, {"type": "text", "text": "Checking."}]]
    assert prompt_tokens(msgs, {"x_anthropic": {"thought": thought}}) - plain >= 1000
    assert prompt_tokens(msgs, {"x_anthropic": {}}) == plain
