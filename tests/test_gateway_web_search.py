"""Anthropic's web search server tool through ``knollm serve``'s ``/v1/messages``, called by
the official ``anthropic`` SDK (as Claude Code and other Anthropic-SDK apps call it): the
tool goes to an Anthropic deployment unchanged, and the answer's blocks come back as
Anthropic's API gives them (``server_tool_use``, ``web_search_tool_result``, text with
``citations``; whole and streamed), its usage with ``server_tool_use.web_search_requests``,
its cost (``x-knollm-cost-usd``, the ledger, a gateway key's spend) with the searches' fees.
A route with no Anthropic model answers a 400 saying web search needs one (the client
excludes the others: a direct :class:`knollm.Client` does the same), and so does a route
whose only Anthropic-shaped model is another provider's Anthropic-compatible API (MiniMax:
it runs no server tools); other server tools are still refused; a gateway key with a
budget holds for ``max_uses`` searches, and refuses a web_search tool without it. The
next turn sends the answer back (as Claude Code does): its search blocks reach the
Anthropic upstream as they were, and need an Anthropic model even without the tool. The
upstreams are loopback servers answering as Anthropic's web search docs show
(:class:`tests.support.provider_servers.ProviderServer`)."""

from __future__ import annotations

import json

import pytest

from knollm import Client
from knollm.client import SQLiteStore
from knollm.errors import NoCandidates
from knollm.query.api import Catalog
from tests.support.client_fixtures import catalog, env_for, model
from tests.support.gateway_proc import GatewayProcess, ledger_rows
from tests.support.provider_servers import CITATION, ProviderServer
from tests.test_gateway import SECRETS, gateway_env
from tests.test_gateway_keys import cli, new_key

anthropic = pytest.importorskip("anthropic")

CLAUDE = "anthropic/claude-x"
GROQ = "groq/llama-3.3-70b-versatile"
MINIMAX = "minimax/MiniMax-M2"  # an Anthropic-compatible API (the catalog's provider record says so)
SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
MSG = [{"role": "user", "content": "news"}]
TOKENS = (120 * 3.0 + 30 * 15.0) / 1e6  # the servers' usage (120 in, 30 out) at claude-x's prices
FEE = 0.01  # USD a search (claude-x's web_search price)
REPLY = "Hello from anthropic! You said: news"
WEATHER = {"name": "get_weather", "description": "w", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def web_catalog() -> dict:
    claude = model("anthropic", "claude-x", canonical="claude-x", input=3.0, output=15.0)
    claude["prices"]["web_search"] = FEE
    cat = catalog(claude, model("groq", "llama-3.3-70b-versatile", input=1.0, output=2.0),
                  model("minimax", "MiniMax-M2", canonical="minimax-m2", input=0.3, output=1.2))
    for p in cat["providers"]:  # as models.dev gives MiniMax: its Anthropic-compatible endpoint
        if p["id"] == "minimax":
            p.update(api_shape="anthropic", base_url="https://api.minimax.io/anthropic/v1",
                     api_key_env=["MINIMAX_API_KEY"])
    return cat


@pytest.fixture(scope="module")
def servers():
    srvs = {"anthropic": ProviderServer("anthropic").start(), "groq": ProviderServer("groq").start(),
            "minimax": ProviderServer("minimax").start()}
    yield srvs
    for s in srvs.values():
        s.stop()


@pytest.fixture(autouse=True)
def _searching(servers):
    """Each test: the Anthropic server searches 3 times and cites, as Anthropic's docs show."""
    for s in servers.values():
        s.script.clear()
        s.default, s.searches, s.cite = "ok", 0, False
        s.requests.clear()
    servers["anthropic"].searches, servers["anthropic"].cite = 3, True


@pytest.fixture(scope="module")
def gw(servers, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gateway-web-search")
    with GatewayProcess(gateway_env(tmp, servers, web_catalog(), MINIMAX_API_KEY="sk-mm-VERYSECRET-3456")) as g:
        g.home = tmp
        yield g


@pytest.fixture
def claude(gw):
    return anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0)


def search_types(n: int) -> list[str]:
    return ["server_tool_use", "web_search_tool_result"] * n


def check_answer(m, searches: int = 3) -> None:
    """The answer's blocks as the Anthropic server gave them, in order, with its usage."""
    assert [b.type for b in m.content] == ["text", *search_types(searches), "text", "text"]
    assert m.content[0].text == "Let me search the web."
    use, result = m.content[1], m.content[2]
    assert (use.id, use.name, use.input) == ("srvtoolu_0", "web_search", {"query": "query 0"})
    assert result.tool_use_id == "srvtoolu_0"
    assert result.content[0].url == "https://example.com/" and result.content[0].encrypted_content
    assert m.content[-2].text == "Based on the search results, " and not m.content[-2].citations
    cited = m.content[-1]
    assert cited.text == REPLY
    assert [c.to_dict() for c in cited.citations] == [CITATION]
    assert m.stop_reason == "end_turn"
    assert (m.usage.input_tokens, m.usage.output_tokens) == (120, 30)
    assert m.usage.server_tool_use.web_search_requests == searches


def test_web_search_whole_answer_blocks_usage_cost_and_ledger(gw, claude, servers):
    raw = claude.messages.with_raw_response.create(model=CLAUDE, max_tokens=100, messages=MSG, tools=[SEARCH])
    m = raw.parse()
    check_answer(m)
    sent = servers["anthropic"].requests[-1]["json"]
    assert sent["tools"] == [SEARCH]  # passed on unchanged
    assert raw.headers["x-knollm-provider"] == "anthropic"
    assert float(raw.headers["x-knollm-cost-usd"]) == pytest.approx(TOKENS + 3 * FEE)
    row = ledger_rows(gw.home)[-1]
    assert row["request_id"] == raw.headers["x-request-id"]
    assert row["cost_usd"] == pytest.approx(TOKENS + 3 * FEE)


def test_web_search_streamed_events_and_final_message(gw, claude, servers):
    starts, stops, deltas = [], [], []
    with claude.messages.stream(model=CLAUDE, max_tokens=100, messages=MSG, tools=[SEARCH]) as s:
        for ev in s:
            if ev.type == "content_block_start":
                starts.append((ev.index, ev.content_block.type))
            elif ev.type == "content_block_stop":
                stops.append(ev.index)
            elif ev.type == "content_block_delta":
                deltas.append((ev.index, ev.delta.type))
        m = s.get_final_message()
    check_answer(m)
    types = ["text", *search_types(3), "text", "text"]
    assert starts == list(enumerate(types))  # numbered in order, one after the other
    assert stops == list(range(len(types)))
    assert (1, "input_json_delta") in deltas and (3, "input_json_delta") in deltas  # the queries' input
    assert (len(types) - 1, "citations_delta") in deltas
    assert "".join(m.content[-1].text) == REPLY
    row = ledger_rows(gw.home)[-1]
    assert row["stream"] == 1 and row["cost_usd"] == pytest.approx(TOKENS + 3 * FEE)
    assert servers["anthropic"].requests[-1]["json"]["tools"] == [SEARCH]


@pytest.mark.parametrize("stream", [False, True])
def test_web_search_beside_a_custom_tool_the_call_comes_after_the_searches(claude, servers, stream):
    tools = [WEATHER, SEARCH]
    if stream:
        with claude.messages.stream(model=CLAUDE, max_tokens=100, messages=MSG, tools=tools) as s:
            m = s.get_final_message()
    else:
        m = claude.messages.create(model=CLAUDE, max_tokens=100, messages=MSG, tools=tools)
    assert [b.type for b in m.content] == ["text", *search_types(3), "tool_use"]
    call = m.content[-1]
    assert call.name == "get_weather" and call.input == {"city": "Paris"} and m.stop_reason == "tool_use"
    assert m.usage.server_tool_use.web_search_requests == 3
    sent = servers["anthropic"].requests[-1]["json"]["tools"]
    assert sent[1] == SEARCH and sent[0]["name"] == "get_weather"  # in the caller's order


@pytest.mark.parametrize("stream", [False, True])
def test_without_searches_the_answer_is_as_before(claude, servers, stream):
    servers["anthropic"].searches = 0  # the model chose not to search
    if stream:
        with claude.messages.stream(model=CLAUDE, max_tokens=100, messages=MSG, tools=[SEARCH]) as s:
            m = s.get_final_message()
    else:
        m = claude.messages.create(model=CLAUDE, max_tokens=100, messages=MSG, tools=[SEARCH])
    assert [b.type for b in m.content] == ["text"] and m.content[0].text == REPLY
    assert m.usage.server_tool_use is None


@pytest.mark.parametrize("stream", [False, True])
def test_a_route_without_an_anthropic_model_is_a_400_saying_web_search_needs_one(claude, servers, stream):
    with pytest.raises(anthropic.BadRequestError) as e:
        if stream:
            with claude.messages.stream(model=GROQ, max_tokens=100, messages=MSG, tools=[SEARCH]) as s:
                s.get_final_message()
        else:
            claude.messages.create(model=GROQ, max_tokens=100, messages=MSG, tools=[SEARCH])
    err = e.value.response.json()
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert "web search needs an Anthropic model" in err["error"]["message"]
    assert not servers["groq"].requests  # nothing was sent


def test_a_chain_skips_its_non_anthropic_models(claude, servers):
    raw = claude.messages.with_raw_response.create(model=f"{GROQ},{CLAUDE}", max_tokens=100, messages=MSG,
                                                   tools=[SEARCH])
    assert raw.headers["x-knollm-provider"] == "anthropic"
    check_answer(raw.parse())
    assert not servers["groq"].requests


@pytest.mark.parametrize("tool", [
    {"type": "code_execution_20250522", "name": "code_execution"},
    {"type": "web_fetch_20250910", "name": "web_fetch", "max_uses": 2},
    {"type": "bash_20250124", "name": "bash"},
])
def test_other_server_tools_are_still_refused(claude, servers, tool):
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model=CLAUDE, max_tokens=100, messages=MSG, tools=[SEARCH, tool])
    err = e.value.response.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert f"built-in tool {tool['type']!r} is not supported" in err["message"]
    assert not servers["anthropic"].requests


def test_chat_completions_still_refuses_a_server_tool(gw):
    import openai

    oai = openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model=CLAUDE, messages=MSG, tools=[SEARCH])


# --------------------------------------------------------------------------- Anthropic-compatible APIs
def test_an_anthropic_compatible_api_is_excluded_for_web_search(claude, servers):
    """MiniMax speaks Anthropic's Messages API (it serves a plain call) but runs none of
    Anthropic's server tools: excluded, with the reason; a chain goes on to Anthropic."""
    plain = claude.messages.with_raw_response.create(model=MINIMAX, max_tokens=100, messages=MSG)
    assert plain.headers["x-knollm-provider"] == "minimax"
    assert servers["minimax"].requests[-1]["path"] == "/v1/messages"  # the Anthropic shape, on the loopback
    servers["minimax"].requests.clear()
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model=MINIMAX, max_tokens=100, messages=MSG, tools=[SEARCH])
    err = e.value.response.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert "web search needs an Anthropic model" in err["message"]
    assert "minimax's Anthropic-compatible API does not run Anthropic's server tools" in err["message"]
    raw = claude.messages.with_raw_response.create(model=f"{MINIMAX},{CLAUDE}", max_tokens=100, messages=MSG,
                                                   tools=[SEARCH])
    assert raw.headers["x-knollm-provider"] == "anthropic"
    check_answer(raw.parse())
    assert not servers["minimax"].requests


# --------------------------------------------------------------------------- the next turn
#: an earlier answer's blocks as Anthropic's web search docs show them (a client sends them back)
HISTORY = [
    {"role": "user", "content": "news"},
    {"role": "assistant", "content": [
        {"type": "text", "text": "Let me search the web."},
        {"type": "server_tool_use", "id": "srvtoolu_0", "name": "web_search", "input": {"query": "news"}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_0", "content": [
            {"type": "web_search_result", "url": "https://example.com/", "title": "Example",
             "encrypted_content": "EqgfCioIARgBIiQ3", "page_age": "April 30, 2025"}]},
        {"type": "text", "text": "Example says hello.", "citations": [CITATION]}]},
    {"role": "user", "content": "tell me more"},
]


def first_answer(claude, stream: bool):
    """A first answer with searches, the way the SDK gives it back (whole or streamed)."""
    if stream:
        with claude.messages.stream(model=CLAUDE, max_tokens=100, messages=MSG, tools=[SEARCH]) as s:
            return s.get_final_message()
    return claude.messages.create(model=CLAUDE, max_tokens=100, messages=MSG, tools=[SEARCH])


def ask(claude, stream: bool, **kw):
    if stream:
        with claude.messages.stream(max_tokens=100, **kw) as s:
            return s.get_final_message()
    return claude.messages.create(max_tokens=100, **kw)


@pytest.mark.parametrize("stream", [False, True])
def test_the_next_turn_sends_the_answers_search_blocks_back_unchanged(claude, servers, stream):
    first = first_answer(claude, stream)
    check_answer(first)
    turn = [b.to_dict() for b in first.content]  # what the SDK sends back for the assistant turn
    messages = [*MSG, {"role": "assistant", "content": first.content}, *MSG]  # (the same question: the same reply)
    servers["anthropic"].requests.clear()
    m = ask(claude, stream, model=CLAUDE, messages=messages, tools=[SEARCH])
    check_answer(m)
    (sent,) = [r["json"] for r in servers["anthropic"].requests]
    assert [x["role"] for x in sent["messages"]] == ["user", "assistant", "user"]
    blocks = sent["messages"][1]["content"]
    assert blocks == turn  # every block, in order, as the caller sent it
    assert [b["type"] for b in blocks] == ["text", *search_types(3), "text", "text"]
    assert blocks[1]["id"] == "srvtoolu_0" and blocks[1]["input"] == {"query": "query 0"}
    assert blocks[2]["content"][0]["encrypted_content"] == "EqgfCioIARgBIiQ3"
    assert blocks[-1]["citations"] == [CITATION]
    assert sent["tools"] == [SEARCH]


@pytest.mark.parametrize("stream", [False, True])
def test_search_history_without_the_web_search_tool_still_needs_anthropic(claude, servers, stream):
    """The tools no longer list web_search (Anthropic takes such a history): the blocks still
    go to Anthropic unchanged, and a chain skips its non-Anthropic model."""
    servers["anthropic"].searches = 0
    raw_kw = {"model": f"{GROQ},{CLAUDE}", "messages": HISTORY, "tools": [WEATHER]}
    if stream:
        with claude.messages.stream(max_tokens=100, **raw_kw) as s:
            m = s.get_final_message()
    else:
        raw = claude.messages.with_raw_response.create(max_tokens=100, **raw_kw)
        assert raw.headers["x-knollm-provider"] == "anthropic"
        m = raw.parse()
    assert m.content[-1].type == "tool_use"  # (the loopback server calls the custom tool)
    sent = servers["anthropic"].requests[-1]["json"]
    assert sent["messages"][1] == HISTORY[1]
    assert [t["name"] for t in sent["tools"]] == ["get_weather"]
    assert not servers["groq"].requests
    servers["anthropic"].requests.clear()
    ask(claude, stream, model=CLAUDE, messages=HISTORY)  # no tools at all
    assert servers["anthropic"].requests[-1]["json"]["messages"][1] == HISTORY[1]


@pytest.mark.parametrize("route", [GROQ, MINIMAX])
@pytest.mark.parametrize("stream", [False, True])
def test_search_history_on_a_route_without_an_anthropic_model_is_a_400(claude, servers, stream, route):
    with pytest.raises(anthropic.BadRequestError) as e:
        ask(claude, stream, model=route, messages=HISTORY)
    err = e.value.response.json()
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    msg = err["error"]["message"]
    assert "history holds Anthropic server tool blocks" in msg and "needs an Anthropic model" in msg
    assert not servers["groq"].requests and not servers["minimax"].requests  # nothing was sent


# --------------------------------------------------------------------------- gateway key budgets
def test_a_key_budget_holds_for_max_uses_searches_and_refuses_unbounded_search(servers, tmp_path):
    env = gateway_env(tmp_path, servers, web_catalog())
    key = new_key(env, "searcher", "--budget", "0.02")
    with GatewayProcess(env) as gw:
        c = anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)
        with pytest.raises(anthropic.BadRequestError) as unbounded:  # nothing bounds its searches
            c.messages.create(model=CLAUDE, max_tokens=100, messages=MSG,
                              tools=[{"type": "web_search_20250305", "name": "web_search"}])
        err = unbounded.value.response.json()
        assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
        assert "max_uses" in err["error"]["message"] and "searcher" in err["error"]["message"]
        # 3 searches at $0.01 do not fit in $0.02 with the tokens: refused before any call
        with pytest.raises(anthropic.RateLimitError) as over:
            c.messages.create(model=CLAUDE, max_tokens=100, messages=MSG, tools=[SEARCH])
        assert "worst case $0.03" in over.value.response.json()["error"]["message"]
        assert not servers["anthropic"].requests
        servers["anthropic"].searches = 1
        m = c.messages.create(model=CLAUDE, max_tokens=100, messages=MSG, tools=[{**SEARCH, "max_uses": 1}])
        assert m.usage.server_tool_use.web_search_requests == 1
    (k,) = json.loads(cli(env, "serve", "keys", "list", "--json").stdout)
    assert k["spent_usd"] == pytest.approx(TOKENS + FEE)  # the search's fee is charged to the key
    assert k["reserved_usd"] == pytest.approx(0.0, abs=1e-12)


# --------------------------------------------------------------------------- the client itself
def test_a_direct_client_excludes_non_anthropic_deployments_and_keeps_the_blocks(servers, tmp_path):
    keys = {k: v for k, v in SECRETS.items() if k in ("ANTHROPIC_API_KEY", "GROQ_API_KEY")}
    with Client(catalog=Catalog(web_catalog()), env=env_for(servers, keys),
                store=SQLiteStore(tmp_path / "l.db")) as c:
        with pytest.raises(NoCandidates) as e:
            c.chat(GROQ, MSG, tools=[SEARCH])
        assert "web search needs an Anthropic model" in str(e.value)
        r = c.chat([GROQ, CLAUDE], MSG, tools=[SEARCH])
        assert r.provider == "anthropic" and r.content == "Let me search the web.Based on the search results, " + REPLY
        assert [b["type"] for b in r.blocks] == ["text", *search_types(3), "text", "text"]
        assert r.cost_usd == pytest.approx(TOKENS + 3 * FEE)
        excluded = [x for x in r.candidates if x["status"] == "excluded"]
        assert excluded and excluded[0]["provider"] == "groq" and "Anthropic" in excluded[0]["reason"]
        items = list(c.stream(CLAUDE, MSG, tools=[SEARCH]))  # plain iteration: the text, then the result
        streamed = items[-1]
        assert "".join(items[:-1]) == streamed.content == r.content
        assert streamed.blocks == r.blocks  # the blocks, put together from the stream
        servers["anthropic"].searches = 0
        plain = c.chat(CLAUDE, MSG)  # no server tool's block: none
        assert plain.blocks is None
    assert not servers["groq"].requests
