"""``fastest`` ranks on measurements only: a speed figure a health source gives as an
estimate (no observed calls, marked estimated, a source that is not a probe / benchmark /
ledger measurement, another model's or the provider-wide figure, a tokens/s computed from
estimated token counts) never ranks a deployment, and every eligible candidate's reason says
which kind of figure it has. Real loopback provider servers, the sync client."""

from __future__ import annotations

from types import SimpleNamespace as F

from knollm import Client
from knollm.probe.health import Figures
from knollm.query.api import Catalog
from tests.support.client_fixtures import CANON, catalog, env_for, model, servers, srv  # noqa: F401 - fixtures

PROVIDERS = ("groq", "cerebras")
KEYS = {"GROQ_API_KEY": "gsk_test_aaaa1111", "CEREBRAS_API_KEY": "csk-test-bbbb2222"}
MSG = [{"role": "user", "content": "hi there"}]
GROQ, CER = "groq/llama-3.3-70b-versatile", "cerebras/llama-3.3-70b"


def client(srv, health):
    cat = Catalog(catalog(model("groq", "llama-3.3-70b-versatile"), model("cerebras", "llama-3.3-70b", input=1.5)))
    return Client(catalog=cat, env=env_for(srv, KEYS), store=False, strategy="fastest", backoff_base=0.01,
                  health=health)


def eligible(r):
    """provider -> (rank, reason) of the eligible candidates, in rank order."""
    return {c["provider"]: (c["rank"], c["reason"]) for c in r.candidates if c["status"] == "eligible"}


def test_a_measured_figure_ranks_before_an_estimate_that_looks_faster(srv):
    # groq: a catalog-style guess (nothing observed) that looks 10x faster; cerebras: benchmark runs
    figs = {"groq": F(n=0, ttft_p50_ms=20.0, tokens_per_s_p50=5000.0, error_rate=0.0, sources=("catalog",),
                      last=None, estimated=True),
            "cerebras": F(n=25, ttft_p50_ms=400.0, tokens_per_s_p50=None, error_rate=0.0, sources=("benchmark",),
                          last="2025-05-01")}
    c = client(srv, lambda p, m: figs.get(p))
    r = c.chat(CANON, MSG, max_tokens=50)
    assert r.provider == "cerebras"
    assert r.why == "fastest measured (~400 ms; health: benchmark, n=25, last 2025-05-01)"
    got = eligible(r)
    assert got["cerebras"] == (1, "measured ~400 ms (health: benchmark, n=25, last 2025-05-01)")
    rank, why = got["groq"]
    assert rank == 2 and why.startswith("not measured: priority order; estimate ~30 ms (health: catalog")
    assert why.endswith("not a measurement: marked as an estimate) not used")
    assert srv["groq"].requests == []  # the guess sent nothing its way


def test_only_estimates_keep_priority_order_and_say_so(srv):
    # every figure a guess: the priority order (groq, the cheaper, first), however the guesses compare
    figs = {"groq": F(n=0, ttft_p50_ms=5000.0, tokens_per_s_p50=None, error_rate=0.0),
            "cerebras": F(n=3, ttft_p50_ms=10.0, tokens_per_s_p50=None, error_rate=0.0, sources=("artificialanalysis",))}
    r = client(srv, lambda p, m: figs.get(p)).chat(CANON, MSG, max_tokens=50)
    assert r.provider == "groq"
    assert r.why == "no speed measured yet: priority order (speed estimates not used)"
    got = eligible(r)
    assert got["groq"] == (1, "not measured: priority order; estimate ~5000 ms "
                              "(health source; not a measurement: no observed calls) not used")
    assert got["cerebras"] == (2, "not measured: priority order; estimate ~10 ms (health: artificialanalysis, n=3; "
                                  "not a measurement: not from a probe, benchmark or the ledger) not used")


def test_real_health_figures_other_model_and_estimated_tokens_per_s(srv):
    """knollm.probe.health.Figures: a provider-wide figure (model None) is not this model's
    measurement; a tokens/s from estimated token counts is dropped, its measured TTFT kept."""
    wide = Figures("groq", None, 50, 1.0, 0.0, 16.0, 30.0, 60.0, 5000.0, ("probe",), "2025-05-02")
    est_tps = Figures("cerebras", "llama-3.3-70b", 12, 1.0, 0.0, 300.0, 900.0, 950.0, 10.0, ("benchmark",),
                      "2025-05-03", tokens_per_s_estimated=True)
    c = client(srv, lambda p, m: {"groq": wide, "cerebras": est_tps}[p])
    r = c.chat(CANON, MSG, max_tokens=50)
    assert r.provider == "cerebras"  # a 10 tok/s guess would have added 5000 ms; the measured TTFT alone ranks
    got = eligible(r)
    assert got["cerebras"] == (1, "measured ~300 ms (health: benchmark, n=12, last 2025-05-03; TTFT only: "
                                  "its tokens/s is estimated, not used)")
    assert got["groq"] == (2, "not measured: priority order; estimate ~26 ms (health: probe, n=50, last 2025-05-02; "
                              "not measured on this model: provider-wide) not used")


def test_once_the_client_measured_both_its_measurements_decide(srv):
    # the guesses point the wrong way: groq "fast" but slow here, cerebras "slow" but fast here
    figs = {"groq": F(n=0, ttft_p50_ms=20.0, tokens_per_s_p50=50_000.0, error_rate=0.0, estimated=True),
            "cerebras": F(n=0, ttft_p50_ms=5000.0, tokens_per_s_p50=None, error_rate=0.0, estimated=True)}
    c = client(srv, lambda p, m: figs.get(p))
    srv["groq"].latency = 0.6  # far above a loopback call, even on a loaded machine
    c.chat(GROQ, MSG, max_tokens=50)
    c.chat(CER, MSG, max_tokens=50)
    srv["groq"].latency = 0.0
    r = c.chat(CANON, MSG, max_tokens=50)
    assert r.provider == "cerebras" and r.why.startswith("fastest measured (~") and r.why.endswith("; this client)")
    got = eligible(r)
    assert got["cerebras"][0] == 1 and got["cerebras"][1].endswith(" ms (this client, 1 call)")
    assert got["groq"][0] == 2 and got["groq"][1].startswith("measured ~")
    assert got["groq"][1].endswith(" ms (this client, 1 call)")
    assert float(got["groq"][1].split("~")[1].split(" ")[0]) >= 600  # its own figure, not blended with the guess


def test_a_measured_seed_blends_with_the_clients_own_calls(srv):
    figs = {"cerebras": F(n=40, ttft_p50_ms=100.0, tokens_per_s_p50=None, error_rate=0.0, sources=("benchmark", "probe"),
                          last="2025-05-04")}
    c = client(srv, lambda p, m: figs.get(p))
    c.chat(CER, MSG, max_tokens=50)
    plan = c.router.plan(CANON, MSG, {"max_tokens": 50}, "fastest")
    reasons = {x["provider"]: x["reason"] for x in plan.candidates if x["status"] == "eligible"}
    assert plan.order[0].provider == "cerebras"
    assert reasons["cerebras"].endswith("(this client, 1 call; seeded from health: benchmark+probe, n=40, "
                                        "last 2025-05-04)")
    assert reasons["groq"] == "not measured: priority order"
