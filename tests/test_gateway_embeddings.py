"""``POST /v1/embeddings`` on a real ``knollm serve``, called by the official ``openai`` SDK
(sync and async; its default base64 encoding and floats), LangChain's ``OpenAIEmbeddings``
and pydantic-ai's ``Embedder``; the upstreams are loopback servers with injected faults. We
assert the vectors, usage, cost, the ``x-knollm-*`` headers, fallback, the ledger, gateway
keys and budgets, and the errors."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest

from tests.support.client_fixtures import catalog, env_for, model
from tests.support.gateway_proc import GatewayProcess, ledger_rows
from tests.support.provider_servers import ProviderServer, vector_of

openai = pytest.importorskip("openai")

SMALL = "openai/text-embedding-3-small"
ROUTED = "openrouter/openai/text-embedding-3-small"  # the same model from a second provider
SECRETS = {"OPENAI_API_KEY": "sk-oai-EMBEDSECRET-1234", "OPENROUTER_API_KEY": "sk-or-EMBEDSECRET-5678",
           "GROQ_API_KEY": "gsk-EMBEDSECRET-9012"}
TEXTS = ["first document", "second document", "a query"]
COST = 120 * 0.02 / 1e6  # the servers report 120 input tokens


def emb(provider: str, mid: str, price: float | None) -> dict:
    return model(provider, mid, "text-embedding-3-small", input=price, output=None, kind="embedding", context=8191,
                 max_output=None, tools=None)


CATALOG = catalog(emb("openai", "text-embedding-3-small", 0.02), emb("openrouter", "openai/text-embedding-3-small", 0.02),
                  model("groq", "llama-3.3-70b-versatile"))


@pytest.fixture(scope="module")
def servers():
    srvs = {p: ProviderServer(p).start() for p in ("openai", "openrouter", "groq")}
    yield srvs
    for s in srvs.values():
        s.stop()


@pytest.fixture(autouse=True)
def _reset(servers):
    for s in servers.values():
        s.script.clear()
        s.default = "ok"
        s.requests.clear()


def env(tmp, servers, **extra) -> dict:
    (tmp / "catalog.json").write_text(json.dumps(CATALOG))
    e = env_for(servers, SECRETS)
    e.update(KNOLLM_HOME=str(tmp), KNOLLM_CATALOG=str(tmp / "catalog.json"),
             KNOLLM_GATEWAY_CLIENT_OPTIONS=json.dumps({"retries": 1, "backoff_base": 0.01, "backoff_max": 0.02}))
    e.pop("KNOLLM_DATABASE_URL", None)
    e.update(extra)
    return e


@pytest.fixture(scope="module")
def gw(servers, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gw-embed")
    with GatewayProcess(env(tmp, servers)) as g:
        g.home = tmp
        yield g


@pytest.fixture
def oai(gw):
    return openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0)


def ledger(gw) -> list[dict]:
    return ledger_rows(gw.home)


def test_the_sdk_default_base64_and_floats_usage_headers_and_ledger(gw, oai, servers):
    before = len(ledger(gw))
    raw = oai.embeddings.with_raw_response.create(model=SMALL, input=TEXTS)  # the SDK asks for base64 and decodes
    r = raw.parse()
    assert [d.embedding for d in r.data] == [vector_of(t) for t in TEXTS]
    assert all(isinstance(d["embedding"], str) for d in raw.http_response.json()["data"])  # base64, as asked
    assert [d.index for d in r.data] == [0, 1, 2] and r.usage.prompt_tokens == r.usage.total_tokens == 120
    h = raw.headers
    assert (h["x-knollm-provider"], h["x-knollm-model"], h["x-knollm-attempts"]) == \
        ("openai", "text-embedding-3-small", "1")
    assert float(h["x-knollm-cost-usd"]) == pytest.approx(COST)
    assert r.model_extra["knollm"]["cost_usd"] == pytest.approx(COST)
    sent = servers["openai"].requests[-1]
    assert sent["path"] == "/v1/embeddings" and sent["json"]["encoding_format"] == "base64"
    assert sent["json"]["input"] == TEXTS and sent["headers"]["authorization"] == "Bearer " + SECRETS["OPENAI_API_KEY"]
    f = oai.embeddings.create(model=SMALL, input="one text", encoding_format="float", dimensions=4)
    assert f.data[0].embedding == vector_of("one text", 4) and servers["openai"].requests[-1]["json"]["dimensions"] == 4
    rows = ledger(gw)[before:]
    assert [(x["provider"], x["input_tokens"], x["output_tokens"]) for x in rows] == [("openai", 120, 0)] * 2
    assert rows[0]["cost_usd"] == pytest.approx(COST)


def test_models_say_which_are_embedding_models(oai):
    kinds = {m.id: m.model_extra["knollm"]["kind"] for m in oai.models.list().data}
    assert kinds == {SMALL: "embedding", ROUTED: "embedding", "groq/llama-3.3-70b-versatile": "chat"}


def test_async_sdk_concurrent_embeddings(gw):
    async def main():
        c = openai.AsyncOpenAI(base_url=gw.base_url, api_key="unused", max_retries=0)
        try:
            return await asyncio.gather(*[c.embeddings.create(model=SMALL, input=[f"text {i}"]) for i in range(20)])
        finally:
            await c.close()

    got = asyncio.run(main())
    assert [r.data[0].embedding for r in got] == [vector_of(f"text {i}") for i in range(20)]


def test_fallback_to_the_same_model_elsewhere_and_the_canonical_id(gw, oai, servers):
    servers["openai"].default = "503"
    raw = oai.embeddings.with_raw_response.create(model="text-embedding-3-small", input=TEXTS)
    assert [d.embedding for d in raw.parse().data] == [vector_of(t) for t in TEXTS]
    assert raw.headers["x-knollm-provider"] == "openrouter" and raw.headers["x-knollm-attempts"] == "3"
    assert servers["openrouter"].requests[-1]["headers"]["authorization"] == "Bearer " + SECRETS["OPENROUTER_API_KEY"]
    servers["openrouter"].default = "503"
    with pytest.raises(openai.APIStatusError) as e:
        oai.embeddings.create(model=f"{SMALL},{ROUTED}", input=TEXTS)
    assert e.value.status_code == 502 and e.value.response.headers["x-knollm-cost-usd"] == "0"
    assert not any(s in e.value.response.text for s in SECRETS.values())


def test_a_chat_model_is_not_an_embedding_model_and_bad_requests_are_400(oai):
    with pytest.raises(openai.BadRequestError) as e:
        oai.embeddings.create(model="groq/llama-3.3-70b-versatile", input="x")
    assert e.value.code == "no_candidates" and "not an embedding model" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model=SMALL, messages=[{"role": "user", "content": "hi"}])
    assert "an embedding model: it does not chat" in e.value.message
    for payload, param in (({"model": SMALL, "input": []}, "input"), ({"model": SMALL, "input": ["a", ""]}, "input"),
                           ({"model": SMALL, "input": "x", "dimensions": -1}, "dimensions"),
                           ({"model": SMALL, "input": "x", "encoding_format": "int8"}, "encoding_format"),
                           ({"model": SMALL, "input": "x", "input_type": "query"}, "input_type"),
                           ({"input": "x"}, "model")):
        with pytest.raises(openai.BadRequestError) as e:
            oai.post("/embeddings", body=payload, cast_to=object)
        assert e.value.code == param, payload


def test_gateway_keys_models_and_budget_apply(servers, tmp_path):
    from knollm.gateway.keys import KeyStore

    e = env(tmp_path, servers)
    ks = KeyStore(f"sqlite:///{tmp_path}/knollm.db")
    _, rag = ks.create("rag", allowed=["text-embedding-3-small", SMALL], budget_usd=COST * 1.5)
    _, chat = ks.create("chat", allowed=["groq/llama-3.3-70b-versatile"])
    ks.db.close()
    with GatewayProcess(e) as g:
        c = openai.OpenAI(base_url=g.base_url, api_key=rag, max_retries=0)
        assert c.embeddings.create(model=SMALL, input=TEXTS).usage.prompt_tokens == 120
        with pytest.raises(openai.RateLimitError) as err:  # one call's cost left 0.5 of one in the budget
            c.embeddings.create(model=SMALL, input=TEXTS * 50)
        assert err.value.code == "insufficient_quota"
        with pytest.raises(openai.PermissionDeniedError):
            openai.OpenAI(base_url=g.base_url, api_key=chat, max_retries=0).embeddings.create(model=SMALL, input="x")
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=g.base_url, api_key="kn-wrong", max_retries=0).embeddings.create(model=SMALL,
                                                                                                   input="x")
        with urllib.request.urlopen(urllib.request.Request(g.url + "/metrics",
                                                           headers={"authorization": "Bearer " + chat})) as r:
            text = r.read().decode()  # (with keys, /metrics needs one)
    assert 'knollm_gateway_requests_total{route="/v1/embeddings",status="200"} 1' in text
    assert 'knollm_gateway_requests_total{route="/v1/embeddings",status="429"} 1' in text
    rows = [x for x in ledger_rows(tmp_path) if x["provider"] == "openai"]
    assert len(rows) == 1 and rows[0]["tag"] == "key:rag"


def test_langchain_openai_embeddings(gw):
    lc = pytest.importorskip("langchain_openai")
    emb = lc.OpenAIEmbeddings(model=SMALL, base_url=gw.base_url, api_key="unused", max_retries=0,
                              check_embedding_ctx_length=False)  # (its tiktoken path downloads encodings)
    assert emb.embed_documents(TEXTS) == [vector_of(t) for t in TEXTS]  # (exact in float32)
    assert emb.embed_query("a query") == vector_of("a query")


def test_pydantic_ai_embedder(gw):
    pytest.importorskip("pydantic_ai.embeddings")
    from pydantic_ai import Embedder
    from pydantic_ai.embeddings.openai import OpenAIEmbeddingModel
    from pydantic_ai.providers.openai import OpenAIProvider

    embedder = Embedder(OpenAIEmbeddingModel(SMALL, provider=OpenAIProvider(base_url=gw.base_url, api_key="unused")))
    res = asyncio.run(embedder.embed_documents(TEXTS))
    assert [list(v) for v in res.embeddings] == [vector_of(t) for t in TEXTS]
    assert res.usage.input_tokens == 120 and res.model_name == "text-embedding-3-small"
