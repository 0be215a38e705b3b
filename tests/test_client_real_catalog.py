"""The client over the real catalog (../shared dumps; skipped without them): a canonical id
routes across every provider that serves it, each pointed at one loopback server."""

from __future__ import annotations

import pytest

from knollm import Client
from knollm.client.routing import env_name
from knollm.query.index import PRICES, PROVIDER, Index
from tests.support.provider_servers import ProviderServer

CANON = "llama-3.3-70b-instruct"
MSG = [{"role": "user", "content": "hi there"}]


@pytest.fixture(scope="module")
def setup(shared_dumps):
    idx = Index.load(shared_dumps)
    with ProviderServer("loop") as s:
        env = {}
        router = Client(catalog=idx, store=False, env={}).router
        for r in idx.where(CANON):
            f = router.facts(r[PROVIDER])  # the registry's, else the catalog's provider record
            if f is None:
                continue
            env[env_name(r[PROVIDER], "BASE_URL")] = s.root if f.shape == "ollama" else s.base_url
            for k in f.key_env[:1]:
                env[k] = f"test-key-{r[PROVIDER]}"
        yield idx, s, env


def test_canonical_id_routes_over_real_offers_cheapest_first(setup):
    idx, s, env = setup
    offers = idx.where(CANON)
    assert len(offers) >= 10
    c = Client(catalog=idx, env=env, store=False, strategy="cheapest")
    r = c.chat(CANON, MSG, max_tokens=50)
    eligible = [x for x in r.candidates if x["status"] == "eligible"]
    excluded = [x for x in r.candidates if x["status"] == "excluded"]
    assert len(eligible) >= 5 and all(x["reason"] for x in excluded)
    assert any(x["provider"] == "helicone" for x in eligible)  # not in providers.toml: the catalog record
    # the winner is the cheapest priced eligible offer by the documented estimate
    row = idx.rows[idx.by_key[f"{r.provider}/{r.model}"]]
    pin, pout = row[PRICES][0], row[PRICES][1]
    assert pin is not None and pout is not None
    prompt = c.plan(CANON, MSG, {"max_tokens": 50}).prompt
    best = min((idx.rows[idx.by_key[x["deployment"].split(" [")[0]]][PRICES] for x in eligible),
               key=lambda p: (p[0] is None or p[1] is None, (prompt * (p[0] or 0) + 50 * (p[1] or 0))))
    assert (pin, pout) == best[:2]
    assert r.cost_usd == pytest.approx((120 * pin + 30 * pout) / 1e6)
    assert s.requests[-1]["json"]["model"] == r.model


def test_real_capability_filter_names_its_reason(setup):
    idx, s, env = setup
    c = Client(catalog=idx, env=env, store=False)
    plan = c.plan(CANON, MSG, {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]})
    lacking = [x for x in plan.candidates if "needs tools" in (x.get("reason") or "")]
    for x in lacking:
        assert idx.summary(idx.rows[idx.by_key[x["deployment"]]])["capabilities"]["tools"] is False
    assert plan.order, "some real offers of llama-3.3-70b support tools"
