"""Embeddings through knollm.Client / AsyncClient against real loopback servers: the three
API shapes, routing to embedding models only, fallback, the ledger, budgets, the facade."""

from __future__ import annotations

import array
import base64

import pytest

from knollm import AllAttemptsFailed, BudgetExceeded, NoCandidates
from knollm.client import Budget, SQLiteStore
from knollm.client.accounting import estimate_tokens
from knollm.query.api import Catalog
from tests.support.async_facade import Drivers, every_driver
from tests.support.client_fixtures import catalog, env_for, model, servers, srv  # noqa: F401 - fixtures
from tests.support.provider_servers import vector_of

PROVIDERS = ("openai", "gemini", "ollama", "anthropic", "groq")
KEYS = {"OPENAI_API_KEY": "sk-embed-SECRET-1111", "GEMINI_API_KEY": "gm-embed-SECRET-2222",
        "ANTHROPIC_API_KEY": "sk-ant-embed-SECRET-3333", "GROQ_API_KEY": "gsk-embed-SECRET-4444"}
TEXTS = ["the cat sat", "on the mat", "a third text"]
EMB = "embed-x"  # a canonical id every provider below serves


def emb(provider: str, mid: str, price: float | None = 0.02, canonical: str = EMB, context: int | None = 8191):
    return model(provider, mid, canonical, input=price, output=None, kind="embedding", context=context,
                 max_output=None, tools=None)


CAT = catalog(
    emb("openai", "text-embedding-3-small"),
    emb("gemini", "gemini-embedding-001", price=0.15),
    emb("ollama", "nomic-embed-text", price=None),
    emb("anthropic", "embed-anthropic"),  # no such API: a reason, never a call
    model("groq", "chat-x", EMB),  # a chat model under the same canonical id: not a candidate
    emb("groq", "bge-x", canonical="bge-x"),  # an OpenAI-compatible API serving another tokenizer's model
    emb("ollama", "no-window", price=None, canonical="no-window", context=None),
    model("groq", "llama-3.3-70b-versatile"),
)

_D = Drivers()
driver = every_driver(_D)  # every test here runs on the sync Client and on AsyncClient over each HTTP driver


def client(srv, **kw):
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("store", False)
    # Gemini's native API (the registry's default is its OpenAI-compatible one, /embeddings)
    kw.setdefault("providers", {"gemini": {"shape": "gemini"}})
    kw.update(catalog=Catalog(CAT), env=env_for(srv, KEYS))
    return _D.client(**kw)


def reasons(r_or_err):
    return {c["deployment"]: c.get("reason") for c in r_or_err.candidates if c["status"] != "eligible"}


@pytest.mark.parametrize("target,path", [("openai/text-embedding-3-small", "/v1/embeddings"),
                                         ("gemini/gemini-embedding-001", "/v1/models/gemini-embedding-001:batchEmbedContents"),
                                         ("ollama/nomic-embed-text", "/api/embed")])
def test_each_shape_embeds_in_order_with_usage_and_cost(srv, target, path):
    provider = target.split("/")[0]
    r = client(srv).embed(target, TEXTS)
    assert r.vectors == [vector_of(t) for t in TEXTS] and r.dimensions == 8
    assert (r.provider, r.model) == (provider, target.split("/")[1])
    req = srv[provider].requests[-1]
    assert req["path"] == path
    if provider == "openai":
        assert req["json"] == {"model": "text-embedding-3-small", "input": TEXTS, "encoding_format": "base64"}
        assert req["headers"]["authorization"] == "Bearer " + KEYS["OPENAI_API_KEY"]
        assert (r.usage.input_tokens, r.usage.estimated) == (120, False)
        assert r.cost_usd == pytest.approx(120 * 0.02 / 1e6) and r.price_source == "catalog:genai-prices"
    elif provider == "gemini":
        assert req["json"] == {"requests": [{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": t}]}}
                                            for t in TEXTS]}
        assert req["headers"]["x-goog-api-key"] == KEYS["GEMINI_API_KEY"]
        # Gemini's batchEmbedContents reports no usage: Knollm's estimate, said to be one
        n = sum(estimate_tokens(t) for t in TEXTS)
        assert (r.usage.input_tokens, r.usage.estimated) == (n, True)
        assert r.cost_usd == pytest.approx(n * 0.15 / 1e6)
    else:  # truncate: false, so an over-long input is an error, never a vector of its first part
        assert req["json"] == {"model": "nomic-embed-text", "input": TEXTS, "truncate": False}
        assert (r.usage.input_tokens, r.usage.estimated) == (120, False)
        assert r.cost_usd is None and "no input price" in r.unpriced_reason  # unknown is None, never $0
    assert r.usage.output_tokens == 0


def test_dimensions_reach_each_api_in_its_own_words(srv):
    c = client(srv)
    for target in ("openai/text-embedding-3-small", "gemini/gemini-embedding-001", "ollama/nomic-embed-text"):
        assert client(srv).embed(target, "one text", dimensions=4).vectors == [vector_of("one text", 4)]
    bodies = {p: srv[p].requests[-1]["json"] for p in ("openai", "gemini", "ollama")}
    assert bodies["openai"]["dimensions"] == 4 and bodies["ollama"]["dimensions"] == 4
    assert bodies["gemini"]["requests"][0]["outputDimensionality"] == 4
    assert c.embed("openai/text-embedding-3-small", "solo").vectors == [vector_of("solo")]  # one text: one vector


def test_only_embedding_models_are_candidates_and_the_reasons_say_why(srv):
    r = client(srv).embed(EMB, TEXTS)
    assert r.provider == "openai"
    why = reasons(r)
    assert why["groq/chat-x"] == "not an embedding model (the catalog's kind: chat)"
    assert why["anthropic/embed-anthropic [ANTHROPIC_API_KEY]"] == "the anthropic API has no embeddings endpoint"
    assert srv["anthropic"].requests == [] and srv["groq"].requests == []
    with pytest.raises(NoCandidates) as e:  # and the other way round: an embedding model does not chat
        client(srv).chat("openai/text-embedding-3-small", [{"role": "user", "content": "hi"}])
    assert "an embedding model: it does not chat" in str(e.value.excluded)
    with pytest.raises(NoCandidates):
        client(srv).embed("groq/llama-3.3-70b-versatile", "hi")


def test_token_id_inputs_go_only_to_apis_that_take_them(srv):
    c = client(srv)
    r = c.embed(EMB, [[1, 2, 3], [4, 5]], strategy="cheapest")
    assert r.provider == "openai" and srv["openai"].requests[-1]["json"]["input"] == [[1, 2, 3], [4, 5]]
    assert r.vectors == [vector_of("[1, 2, 3]"), vector_of("[4, 5]")]
    assert c.embed("openai/text-embedding-3-small", [7, 8, 9]).vectors == [vector_of("[7, 8, 9]")]  # one token list
    with pytest.raises(NoCandidates) as e:
        c.embed("gemini/gemini-embedding-001", [[1, 2, 3]])
    assert "input given as token ids: the gemini API takes text only" in str(e.value.excluded)
    with pytest.raises(NoCandidates) as e:  # ids are tokenizer-specific: OpenAI's models only
        c.embed("groq/bge-x", [[1, 2, 3]])
    assert "only OpenAI's text-embedding models share the tokenizer" in str(e.value.excluded)
    assert c.embed("groq/bge-x", ["a text"]).provider == "groq"


def test_a_batch_over_an_apis_limit_goes_where_it_fits(srv):
    texts = [f"text {i}" for i in range(101)]  # Gemini's batchEmbedContents takes at most 100
    r = client(srv).embed(["gemini/gemini-embedding-001", "openai/text-embedding-3-small"], texts)
    assert r.provider == "openai" and len(r.vectors) == 101
    assert reasons(r)["gemini/gemini-embedding-001 [GEMINI_API_KEY]"] == \
        "101 inputs: the gemini API takes at most 100 a request"


def test_an_api_that_ignores_dimensions_is_not_trusted(srv):
    srv["openai"].faults("nodims")
    r = client(srv).embed(["openai/text-embedding-3-small", "gemini/gemini-embedding-001"], TEXTS, dimensions=4)
    assert r.provider == "gemini" and r.vectors == [vector_of(t, 4) for t in TEXTS]
    assert "asked for 4 dimensions, got 8" in r.attempts[0]["message"]


def test_an_input_too_long_for_a_model_without_a_known_window_still_falls_back(srv):
    srv["ollama"].faults("context")  # the context limit is per input: 40 inputs of ~300 tokens fit 8,191
    texts = [f"document {i} " + "word " * 240 for i in range(40)]
    r = client(srv).embed(["ollama/no-window", "openai/text-embedding-3-small"], texts)
    assert r.provider == "openai" and [a["provider"] for a in r.attempts] == ["ollama", "openai"]


def test_cheapest_ranks_embedding_models_by_input_price(srv):
    r = client(srv).embed(["gemini/gemini-embedding-001", "openai/text-embedding-3-small"], TEXTS, strategy="cheapest")
    assert r.provider == "openai" and "lowest estimated cost" in r.why


@pytest.mark.parametrize("fault", ["503", "429", "reset", "html", "short", "truncated"])
def test_a_failed_attempt_is_retried_or_falls_back(srv, fault):
    srv["openai"].faults(fault, fault, fault)
    r = client(srv, max_retry_wait=5).embed([f"openai/text-embedding-3-small", "gemini/gemini-embedding-001"], TEXTS)
    assert r.vectors == [vector_of(t) for t in TEXTS]
    assert r.provider == "gemini" and r.attempts[-1]["provider"] == "gemini"
    assert all(a["provider"] == "openai" for a in r.attempts[:-1]) and len(r.attempts) >= 2


def test_vectors_follow_the_index_field_not_the_order_they_came_in(srv):
    srv["openai"].faults("shuffled")
    r = client(srv).embed("openai/text-embedding-3-small", TEXTS)
    assert r.vectors == [vector_of(t) for t in TEXTS]


def test_ledger_rows_and_a_cut_answer_charged_once(srv, tmp_path):
    store = SQLiteStore(tmp_path / "k.db")
    c = client(srv, store=store)
    r = c.embed("openai/text-embedding-3-small", TEXTS, tag="rag")
    (row,) = store.rows()
    assert (row["provider"], row["model"], row["input_tokens"], row["output_tokens"], row["stream"]) == \
        ("openai", "text-embedding-3-small", 120, 0, 0)
    assert row["cost_usd"] == pytest.approx(r.cost_usd) and row["tag"] == "rag" and row["outcome"] == "ok"
    srv["openai"].faults("bodycut")  # the provider answered (and bills it), the body was cut: retried
    r2 = c.embed("openai/text-embedding-3-small", TEXTS)
    rows = store.rows()
    assert len(rows) == 3 and r2.vectors == [vector_of(t) for t in TEXTS]
    cut = [x for x in rows if x["outcome"] == "interrupted"]
    assert len(cut) == 1 and cut[0]["output_tokens"] == 0 and r2.attempts[0].get("charged")
    assert not any(v in open(tmp_path / "k.db", "rb").read().decode("latin-1") for v in KEYS.values())


def test_budgets_hold_embeddings_without_an_output_price(srv, tmp_path):
    store = SQLiteStore(tmp_path / "b.db")
    c = client(srv, store=store, budgets=[Budget(1e-6, "total")])  # less than one call's 120 * $0.02/1M
    c.embed("openai/text-embedding-3-small", "x")  # the hold (a few tokens) fits: the call runs
    with pytest.raises(BudgetExceeded):  # its real cost (120 tokens) spent the budget
        c.embed("openai/text-embedding-3-small", "x")
    assert len(store.rows()) == 1


def test_the_key_never_shows_in_an_error(srv):
    srv["openai"].faults("echo401")
    with pytest.raises(AllAttemptsFailed) as e:
        client(srv).embed("openai/text-embedding-3-small", TEXTS)
    text = str(e.value) + repr(e.value.attempts)
    assert KEYS["OPENAI_API_KEY"] not in text and "***" in text


def test_openai_shaped_facade_validates_with_the_sdk_types(srv):
    types = pytest.importorskip("openai.types")
    c = client(srv)
    f = c.embeddings.create(model="openai/text-embedding-3-small", input=TEXTS)
    resp = types.CreateEmbeddingResponse.model_validate(f.model_dump())
    assert [d.embedding for d in resp.data] == [vector_of(t) for t in TEXTS]
    assert resp.usage.prompt_tokens == 120 and f.knollm.provider == "openai"
    b = c.embeddings.create(model="openai/text-embedding-3-small", input=TEXTS, encoding_format="base64")
    got = [array.array("f", base64.b64decode(d.embedding)).tolist() for d in b.data]
    assert got == [vector_of(t) for t in TEXTS]


@pytest.mark.parametrize("bad,why", [([], "input must be"), ("", "empty text"), (["a", ""], "input[1] is an empty"),
                                     ([[1, -2]], "input[0] must be"), ([None], "input[0] must be")])
def test_bad_input_is_refused_before_any_call(srv, bad, why):
    with pytest.raises(ValueError, match=r".*" + why.replace("[", r"\[").replace("]", r"\]")):
        client(srv).embed("openai/text-embedding-3-small", bad)
    with pytest.raises(ValueError, match="dimensions must be a positive integer"):
        client(srv).embed("openai/text-embedding-3-small", "x", dimensions=0)
    with pytest.raises(ValueError, match="not temperature"):
        client(srv).embed("openai/text-embedding-3-small", "x", temperature=0)
    assert srv["openai"].requests == []


def test_an_alias_names_embedding_models_and_the_result_says_so(srv):
    class Embedder:  # what a lockfile alias gives the router (knollm.lock's resolver)
        models = ["openai/text-embedding-3-small", "ollama/nomic-embed-text"]
        strategy = None
        requires = {"tools": True}  # a chat requirement means nothing to an embeddings call

    srv["openai"].faults("401")
    r = client(srv, resolver=lambda name: Embedder() if name == "embedder" else None).embed("embedder", TEXTS)
    assert (r.alias, r.provider, r.model) == ("embedder", "ollama", "nomic-embed-text")
    assert r.vectors == [vector_of(t) for t in TEXTS] and "fallback" in r.why


def test_a_provider_that_hangs_times_out_and_falls_back(srv):
    srv["openai"].faults("hang", "hang")
    srv["openai"].hang_s = 1.0
    r = client(srv, retries=1, timeout=0.3).embed(["openai/text-embedding-3-small", "gemini/gemini-embedding-001"],
                                                   TEXTS)
    assert r.provider == "gemini" and [a["kind"] for a in r.attempts[:-1]] == ["timeout", "timeout"]
    assert r.vectors == [vector_of(t) for t in TEXTS]
