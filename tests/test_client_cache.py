"""The client's response cache against loopback provider servers: hit/miss, keys, sampling,
TTL expiry, LRU eviction, two processes, streaming replay, the ledger row, a corrupt file,
no key in the cache file, and ``knollm cache stats|clear|warm``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from knollm.cli import main
from knollm.client import Client, SQLiteStore
from knollm.client_cache import AsyncCachedClient, CachedClient, CacheWarning, ResponseCache, cache_key
from knollm.query.api import Catalog
from tests.support.client_fixtures import CANON, catalog, env_for, model, servers, srv  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[1]
PROVIDERS = ("groq", "cerebras")
KEYS = {"GROQ_API_KEY": "gsk_cache_SECRET_1111", "CEREBRAS_API_KEY": "csk_cache_SECRET_3333"}
CAT = catalog(
    model("groq", "llama-3.3-70b-versatile", input=0.59, output=0.79),
    model("cerebras", "llama-3.3-70b", input=0.85, output=1.2),
)
GROQ = "groq/llama-3.3-70b-versatile"
MSG = [{"role": "user", "content": "what is WAL?"}]
COST = (120 * 0.59 + 30 * 0.79) / 1e6  # the servers' default usage: 120 in, 30 out


def make(srv, tmp_path, *, cache=None, client_cls=Client, **kw):
    store = SQLiteStore(tmp_path / "knollm.db")
    c = client_cls(catalog=Catalog(CAT), env=env_for(srv, KEYS), store=store, backoff_base=0.01)
    cache = cache or ResponseCache(tmp_path / "cache.db")
    wrap = (AsyncCachedClient if client_cls is not Client else CachedClient)(c, cache, **kw)
    return wrap, store


def n_requests(srv) -> int:
    return sum(len(s.requests) for s in srv.values())


def test_miss_then_hit_marked_cost_zero_saving_recorded(srv, tmp_path):
    cc, store = make(srv, tmp_path, enabled=True)
    first = cc.chat(GROQ, MSG)
    assert not getattr(first, "cached", False) and first.cost_usd == pytest.approx(COST)
    again = cc.chat(GROQ, MSG)
    assert n_requests(srv) == 1  # the second call never reached the provider
    assert again.cached is True and again.cost_usd == 0 and again.price_source == "cache"
    assert again.saved_usd == pytest.approx(COST)
    assert (again.content, again.provider, again.model, again.finish_reason) == (
        first.content, first.provider, first.model, first.finish_reason)
    assert again.usage.input_tokens == 120 and again.attempts == []
    d = again.to_dict()
    assert d["cached"] is True and d["cost_usd"] == 0 and d["saved_usd"] == pytest.approx(COST)
    st = cc.cache.stats()
    assert (st["entries"], st["hits"], st["misses"]) == (1, 1, 1)
    assert st["saved_usd"] == pytest.approx(COST)
    rows = store.rows()
    assert [(r["cost_usd"], r["price_source"]) for r in rows] == [(pytest.approx(COST), "catalog:genai-prices"),
                                                                  (0.0, "cache")]
    assert rows[1]["request_id"] == again.request_id
    assert rows[0]["saved_usd"] is None and rows[1]["saved_usd"] == pytest.approx(COST)  # the saving, in the ledger
    from knollm.cli.cmd_usage import summarize

    (agg,) = summarize(rows, "provider")
    assert agg["saved_usd"] == pytest.approx(COST) and agg["calls"] == 2


def test_key_is_provider_model_messages_and_output_params(srv, tmp_path):
    cc, _ = make(srv, tmp_path, enabled=True)
    cc.chat(GROQ, MSG, max_tokens=50)
    # normalized messages, ignored parameters, 50 == 50.0: the same entry
    same = [{"role": "user", "content": [{"type": "text", "text": "what is WAL?  \r\n"}], "name": None}]
    assert cc.chat(GROQ, same, max_tokens=50.0, strategy="cheapest").cached
    # a parameter that changes the output, other text, another model: misses
    assert not getattr(cc.chat(GROQ, MSG, max_tokens=60), "cached", False)
    assert not getattr(cc.chat(GROQ, [{"role": "user", "content": "what is a WAL?"}], max_tokens=50), "cached", False)
    assert not getattr(cc.chat("cerebras/llama-3.3-70b", MSG, max_tokens=50), "cached", False)
    assert n_requests(srv) == 4
    assert cache_key("groq", "m", MSG, {"seed": 1}) != cache_key("groq", "m", MSG, {"seed": 2})
    assert cache_key("groq", "m", MSG, {"stream": True}) == cache_key("groq", "m", MSG, {})


def test_a_canonical_target_hits_the_entry_of_the_provider_that_answered(srv, tmp_path):
    cc, _ = make(srv, tmp_path, enabled=True)
    first = cc.chat(CANON, MSG)
    hit = cc.chat(CANON, MSG)
    assert hit.cached and (hit.provider, hit.model) == (first.provider, first.model)
    assert n_requests(srv) == 1


def test_temperature_above_zero_is_not_cached_unless_asked(srv, tmp_path):
    cc, _ = make(srv, tmp_path, enabled=True)
    cc.chat(GROQ, MSG, temperature=0.7)
    assert not getattr(cc.chat(GROQ, MSG, temperature=0.7), "cached", False)
    assert n_requests(srv) == 2 and cc.cache.stats()["bypassed"] == 2
    cc.chat(GROQ, MSG, temperature=0.7, cache_sampled=True)
    assert cc.chat(GROQ, MSG, temperature=0.7, cache_sampled=True).cached
    cc.chat(GROQ, MSG, temperature=0)
    assert cc.chat(GROQ, MSG, temperature=0).cached  # 0 is deterministic: cached
    assert n_requests(srv) == 4


def test_opt_in_per_call_globally_and_per_alias(srv, tmp_path):
    cc, _ = make(srv, tmp_path)  # not enabled
    cc.chat(GROQ, MSG)
    assert not getattr(cc.chat(GROQ, MSG), "cached", False)
    cc.chat(GROQ, MSG, cache=True)
    assert cc.chat(GROQ, MSG, cache=True).cached
    assert n_requests(srv) == 3

    class Fast:
        models = [GROQ]
        strategy = None
        requires = {}

    store = SQLiteStore(tmp_path / "k2.db")
    c = Client(catalog=Catalog(CAT), env=env_for(srv, KEYS), store=store,
               resolver=lambda n: Fast() if n == "fast" else None)
    ac = CachedClient(c, ResponseCache(tmp_path / "c2.db"), aliases={"fast": 60})
    ac.chat("fast", MSG)
    hit = ac.chat("fast", MSG)
    assert hit.cached and hit.alias == "fast"
    assert not getattr(ac.chat("fast", MSG, cache=False), "cached", False)  # per-call opt-out wins


def test_ttl_per_entry_per_provider_and_default(srv, tmp_path):
    cache = ResponseCache(tmp_path / "cache.db", ttl=60, provider_ttl={"cerebras": 0.3})
    cc, _ = make(srv, tmp_path, cache=cache, enabled=True)
    cc.chat(GROQ, MSG)                                  # default TTL 60 s
    cc.chat("cerebras/llama-3.3-70b", MSG)              # provider TTL 0.3 s
    cc.chat(GROQ, MSG, max_tokens=9, cache_ttl=0.3)     # per-entry TTL 0.3 s
    assert cc.chat("cerebras/llama-3.3-70b", MSG).cached
    time.sleep(0.45)
    assert cache.stats()["expired"] == 2
    assert cc.chat(GROQ, MSG).cached
    assert not getattr(cc.chat("cerebras/llama-3.3-70b", MSG), "cached", False)
    assert not getattr(cc.chat(GROQ, MSG, max_tokens=9), "cached", False)
    assert n_requests(srv) == 5
    assert cc.cache.clear(expired_only=True) == 0  # the expired ones were replaced by fresh answers


def test_size_cap_evicts_least_recently_used(srv, tmp_path):
    probe = ResponseCache(tmp_path / "probe.db")
    cc0, _ = make(srv, tmp_path, cache=probe, enabled=True)
    cc0.chat(GROQ, [{"role": "user", "content": "a"}])
    one = probe.stats()["bytes"]
    cache = ResponseCache(tmp_path / "cache.db", max_bytes=int(one * 2.5))  # room for two entries
    cc, _ = make(srv, tmp_path, cache=cache, enabled=True)
    a, b, c = ([{"role": "user", "content": x}] for x in "abc")
    cc.chat(GROQ, a)
    time.sleep(0.01)
    cc.chat(GROQ, b)
    time.sleep(0.01)
    assert cc.chat(GROQ, a).cached  # a is now more recently used than b
    time.sleep(0.01)
    cc.chat(GROQ, c)                 # over the cap: b goes
    st = cache.stats()
    assert st["entries"] == 2 and st["evictions"] == 1 and st["bytes"] <= cache.max_bytes
    srv["groq"].requests.clear()
    assert cc.chat(GROQ, a).cached and cc.chat(GROQ, c).cached
    assert not getattr(cc.chat(GROQ, b), "cached", False)
    assert len(srv["groq"].requests) == 1


def test_streams_replay_as_streams(srv, tmp_path):
    cc, store = make(srv, tmp_path, enabled=True)
    live = list(cc.stream(GROQ, MSG))
    deltas, res = live[:-1], live[-1]
    assert len(deltas) > 2 and all(isinstance(x, str) for x in deltas)
    again = list(cc.stream(GROQ, MSG))
    assert again[:-1] == deltas  # the same pieces, in order
    hit = again[-1]
    assert hit.cached and hit.content == res.content == "".join(deltas) and hit.cost_usd == 0
    assert cc.chat(GROQ, MSG).content == res.content  # a whole answer from a streamed entry
    assert n_requests(srv) == 1
    assert [r["stream"] for r in store.rows()] == [1, 1, 0]


def test_a_broken_stream_is_not_cached(srv, tmp_path):
    from knollm.errors import StreamInterrupted

    cc, _ = make(srv, tmp_path, enabled=True)
    srv["groq"].faults("cut")
    with pytest.raises(StreamInterrupted):
        list(cc.stream(GROQ, MSG))
    assert cc.cache.stats()["entries"] == 0


def test_async_twin(srv, tmp_path):
    from knollm.client import AsyncClient

    async def go():
        cc, _ = make(srv, tmp_path, client_cls=AsyncClient, enabled=True)
        async with cc:
            first = await cc.chat(GROQ, MSG)
            hit = await cc.chat(GROQ, MSG)
            s1 = [x async for x in cc.stream(GROQ, MSG, max_tokens=20)]
            s2 = [x async for x in cc.stream(GROQ, MSG, max_tokens=20)]
        return first, hit, s1, s2

    first, hit, s1, s2 = asyncio.run(go())
    assert hit.cached and hit.content == first.content
    assert s2[:-1] == s1[:-1] and len(s1) > 2 and s2[-1].cached
    assert n_requests(srv) == 2


def test_no_key_in_the_cache_file(srv, tmp_path):
    cc, _ = make(srv, tmp_path, enabled=True)
    cc.chat(GROQ, MSG)
    list(cc.stream("cerebras/llama-3.3-70b", MSG))
    cc.chat(GROQ, MSG)
    cc.cache.close()
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("cache.db*"))
    assert b"Hello from" in blob  # the answers are there…
    for v in KEYS.values():
        assert v.encode() not in blob  # …the keys are not
    assert b"_API_KEY" not in blob and b"what is WAL" not in blob.replace(b"You said: what is WAL", b"")


def test_a_corrupt_cache_file_is_set_aside_with_a_warning(srv, tmp_path):
    path = tmp_path / "cache.db"
    path.write_bytes(b"this is not a sqlite database " * 100)
    with pytest.warns(CacheWarning, match="set aside"):
        cache = ResponseCache(path)
    aside = list(tmp_path.glob("cache.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")
    cc, _ = make(srv, tmp_path, cache=cache, enabled=True)
    cc.chat(GROQ, MSG)
    assert cc.chat(GROQ, MSG).cached
    # corrupted while open: the next lookup sets it aside again and the call still works
    cache.close()
    path.write_bytes(b"garbage" * 1000)
    for ext in ("-wal", "-shm"):
        Path(f"{path}{ext}").unlink(missing_ok=True)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        cache2 = ResponseCache(path)
        cc2, _ = make(srv, tmp_path, cache=cache2, enabled=True)
        assert cc2.chat(GROQ, MSG).content
    assert any(issubclass(x.category, CacheWarning) for x in w)


def test_two_processes_share_the_cache(srv, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), CACHE_DB=str(tmp_path / "cache.db"),
               LEDGER_DB=str(tmp_path / "knollm.db"), SERVERS=json.dumps(env_for(srv, KEYS)),
               CATALOG=json.dumps(CAT), TARGET=GROQ)
    SQLiteStore(tmp_path / "knollm.db").close()  # the ledger exists; the cache file is created by both at once
    worker = str(ROOT / "tests" / "support" / "cache_worker.py")
    procs = [subprocess.Popen([sys.executable, worker, "12"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    res = [json.loads(o) for o, _ in outs]
    assert all(r["errors"] == 0 for r in res)
    st = ResponseCache(tmp_path / "cache.db").stats()
    assert st["entries"] == 6  # 6 distinct prompts, each twice per process
    assert st["hits"] + st["misses"] == 2 * 12
    assert st["misses"] == n_requests(srv) and 6 <= n_requests(srv) <= 12
    assert sum(r["hits"] for r in res) == st["hits"] >= 12


# ---------------------------------------------------------------------------- the CLI
def test_cli_warm_stats_clear(srv, tmp_path, monkeypatch, capsys):
    for k, v in env_for(srv, KEYS).items():
        monkeypatch.setenv(k, v)
    cat = tmp_path / "catalog.json"
    cat.write_text(json.dumps(CAT))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("# warm-up\n"
                       f'{{"target": "{GROQ}", "prompt": "one", "max_tokens": 20}}\n'
                       "two\n\n"
                       f'{{"target": "{GROQ}", "messages": [{{"role": "user", "content": "one"}}], "max_tokens": 20}}\n')
    db = str(tmp_path / "cache.db")
    args = ["--db", db, "--catalog", str(cat)]
    assert main(["cache", "warm", str(prompts), "--target", "cerebras/llama-3.3-70b", *args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["result"] for r in out["requests"]] == ["stored", "stored", "hit"]
    assert [r["line"] for r in out["requests"]] == [2, 3, 5]
    assert n_requests(srv) == 2
    assert main(["cache", "stats", "--db", db, "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert (st["entries"], st["hits"], st["misses"]) == (2, 1, 2)
    assert st["saved_usd"] == pytest.approx((120 * 0.59 + 30 * 0.79) / 1e6)
    assert {p["provider"] for p in st["providers"]} == {"groq", "cerebras"}
    assert main(["cache", "stats", "--db", db]) == 0
    assert "hit rate" in capsys.readouterr().out
    assert main(["cache", "clear", "--provider", "groq", "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"removed": 1}
    assert main(["cache", "clear", "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"removed": 1}
    # a line without a target names the file and line
    bad = tmp_path / "bad.txt"
    bad.write_text("hello\n")
    assert main(["cache", "warm", str(bad), *args]) == 2
    assert f"{bad}:1" in capsys.readouterr().err


def test_cache_arguments_never_reach_the_provider_and_the_hook_alone(srv, tmp_path):
    from knollm.client_cache import CacheHook

    cc, _ = make(srv, tmp_path)
    cc.chat(GROQ, MSG, cache=True, cache_ttl=30, cache_sampled=True, temperature=0.5, max_tokens=7)
    body = srv["groq"].requests[-1]["json"]
    assert body["max_tokens"] == 7 and body["temperature"] == 0.5
    assert not {"cache", "cache_ttl", "cache_sampled"} & set(body)
    # the hook as a client would call it around its own flow
    c = Client(catalog=Catalog(CAT), env=env_for(srv, KEYS), store=False)
    hook = CacheHook(ResponseCache(tmp_path / "hook.db"), enabled=True)
    p, opts = CacheHook.split({"max_tokens": 5, "cache_ttl": 60})
    assert opts == {"cache_ttl": 60} and p == {"max_tokens": 5}
    plan = c.plan(GROQ, MSG, p)
    req = hook.begin(plan, p, opts)
    assert req.use and req.ttl == 60 and hook.lookup(plan, MSG, req, False) is None
    assert hook.store(req, MSG, c.chat(GROQ, MSG, **p))
    hit, deltas = hook.lookup(plan, MSG, req, False)
    assert hit.cached and deltas == [hit.content]
    no = hook.begin(plan, {"temperature": 1.0}, {})
    assert not no.use and "temperature" in no.why_not and hook.lookup(plan, MSG, no, False) is None


def test_cache_per_alias_from_the_lockfile(srv, tmp_path, monkeypatch):
    """A binding with `cache = 3600` in knollm.lock caches that alias (with that TTL); an
    alias without it is not cached; `cache=False` on the call still wins."""
    lock = tmp_path / "knollm.lock"
    lock.write_text('version = 1\ndefault_profile = "default"\n\n'
                    f'[[profiles.default.bindings]]\nalias = "fast"\nmodels = ["{GROQ}"]\ncache = 3600\n\n'
                    f'[[profiles.default.bindings]]\nalias = "live"\nmodels = ["{GROQ}"]\n')
    monkeypatch.setenv("KNOLLM_LOCK", str(lock))
    cc, _ = make(srv, tmp_path)  # not enabled globally
    cc.chat("fast", MSG)
    hit = cc.chat("fast", MSG)
    assert hit.cached is True and hit.alias == "fast" and n_requests(srv) == 1
    assert cc.cache.stats()["entries"] >= 1
    assert not getattr(cc.chat("fast", MSG, cache=False), "cached", False) and n_requests(srv) == 2
    cc.chat("live", [{"role": "user", "content": "other"}])
    assert not getattr(cc.chat("live", [{"role": "user", "content": "other"}]), "cached", False)
    assert n_requests(srv) == 4
    bad = tmp_path / "bad.lock"
    bad.write_text('version = 1\ndefault_profile = "default"\n[[profiles.default.bindings]]\n'
                   f'alias = "x"\nmodels = ["{GROQ}"]\ncache = "forever"\n')
    from knollm.errors import LockError
    from knollm.lock import resolve_alias

    with pytest.raises(LockError, match="cache"):
        resolve_alias("x", lock=bad)


def test_tag_is_not_part_of_the_key_and_tags_the_hit_row(srv, tmp_path):
    cc, store = make(srv, tmp_path, enabled=True)
    first = cc.chat(GROQ, MSG, tag="team-a")
    again = cc.chat(GROQ, MSG, tag="team-b")  # same request from another caller: a hit
    streamed = list(cc.stream(GROQ, MSG, tag="team-c"))[-1]
    assert n_requests(srv) == 1 and "tag" not in srv["groq"].requests[0]["json"]
    assert (first.tag, again.cached, again.tag, streamed.cached, streamed.tag) == ("team-a", True, "team-b", True,
                                                                                  "team-c")
    assert [(r["tag"], r["price_source"]) for r in store.rows()] == [
        ("team-a", "catalog:genai-prices"), ("team-b", "cache"), ("team-c", "cache")]
