"""Review fixes of ``knollm probe``: verdicts and figures that were published wrong.

Each test runs the real probe / benchmark code against a scripted loopback
OpenAI-compatible server (``respond(body) -> (status, obj)`` or ``("stream", events)``).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from knollm.probe.bench import benchmark, summarize_runs
from knollm.probe.common import Target
from knollm.probe.health import health
from knollm.probe.probes import probe_target
from tests.support.client_fixtures import model


class Srv:
    def __init__(self, respond):
        self.respond, self.bodies = respond, []
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                outer.bodies.append(body)
                r = outer.respond(body)
                if r[0] == "stream":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for delay, obj in r[1]:
                        time.sleep(delay)
                        data = ("data: " + (obj if isinstance(obj, str) else json.dumps(obj)) + "\n\n").encode()
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    return
                status, obj = r
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_port}/v1"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *a):
        self.httpd.shutdown()
        self.httpd.server_close()

    def providers(self):
        return {"p": {"base_url": self.base_url, "shape": "openai", "api_key": "k"}}


def answer(content, finish="stop", pt=20, ct=5):
    return 200, {"id": "x", "object": "chat.completion", "model": "m",
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                              "finish_reason": finish}],
                 "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}}


def err(status, message, typ="invalid_request_error"):
    return status, {"error": {"message": message, "type": typ, "code": None}}


def chunk(text=None, finish=None):
    return {"id": "x", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}]}


def usage(pt, ct):
    return {"id": "x", "object": "chat.completion.chunk", "model": "m", "choices": [],
            "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}}


def target(**kw):
    m = model("p", "m", vision=True, structured=True, **kw)
    m["capabilities"]["json_mode"] = True
    return Target(m["key"], "p", "m", m)


def has_image(body):
    return any(isinstance(m.get("content"), list) for m in body["messages"])


# 1 ----------------------------------------------------------------- rejections need a working control
@pytest.mark.parametrize("status,msg", [
    (402, "Insufficient credits. Add more using https://openrouter.ai/credits"),
    (400, "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing."),
])
def test_a_deployment_that_refuses_everything_gives_errors_not_nos(status, msg, tmp_path):
    from knollm.catalog.diagnostics import Diagnostics
    from knollm.catalog.probes import load_probe_layers

    with Srv(lambda b: err(status, msg)) as s:
        doc = probe_target(target(), providers=s.providers(), out_dir=tmp_path)
    assert {r["verdict"] for r in doc["results"]} == {"error"}
    assert doc["disagreements"] == []
    assert not (load_probe_layers(tmp_path, Diagnostics()).get(("p", "m")) or {}).get("capabilities")


def test_402_on_one_feature_is_an_error_even_with_a_working_control():
    with Srv(lambda b: err(402, "payment required") if has_image(b) else answer("MANGO")) as s:
        doc = probe_target(target(), providers=s.providers(), out_dir=None, names=["system_prompt", "vision"])
    assert [r["verdict"] for r in doc["results"]] == ["yes", "error"]


@pytest.mark.parametrize("names", [["system_prompt", "vision"], ["vision"]])
def test_a_feature_rejection_is_a_no_when_the_control_succeeds(names):
    with Srv(lambda b: err(400, "image input is not supported") if has_image(b) else answer("MANGO")) as s:
        doc = probe_target(target(), providers=s.providers(), out_dir=None, names=names)
    assert doc["results"][-1]["verdict"] == "no"
    assert doc["disagreements"][0]["field"] == "capabilities.vision"
    assert len(s.bodies) == 2  # the control was sent once (on its own when system_prompt was not planned)


# 2 ----------------------------------------------------------------- context limit, not prompt size
@pytest.mark.parametrize("msg,verdict,window", [
    ("prompt is too long: 9270 tokens > 8192 maximum", "yes", 8192),
    ("Prompt contains 9270 tokens, too large for model with 8192 maximum context length", "yes", 8192),
    ("This model's maximum context length is 8192 tokens. However, you requested 9300 tokens", "yes", 8192),
    ("prompt is too long: 9270 tokens", "partial", None),
])
def test_context_window_is_the_limit_never_the_prompt_size(msg, verdict, window):
    with Srv(lambda b: err(400, msg)) as s:
        doc = probe_target(target(context=8192), providers=s.providers(), out_dir=None, names=[], context=True)
    [r] = doc["results"]
    assert (r["verdict"], r.get("context_window")) == (verdict, window)
    assert doc["disagreements"] == []


# 3 ----------------------------------------------------------------- vision: a whole word
@pytest.mark.parametrize("text,verdict", [("No image was shared, so I cannot tell.", "partial"),
                                          ("Sorry, the image was not rendered.", "partial"),
                                          ("Red.", "yes")])
def test_vision_needs_the_word_red(text, verdict):
    with Srv(lambda b: answer(text)) as s:
        doc = probe_target(target(), providers=s.providers(), out_dir=None, names=["vision"])
    assert doc["results"][0]["verdict"] == verdict


# 4 ----------------------------------------------------------------- an answer cut at max_tokens
@pytest.mark.parametrize("content", ["", '{"city": "Paris", "coun'])
def test_json_cut_at_max_tokens_is_partial(content):
    with Srv(lambda b: answer(content, finish="length", ct=64)) as s:
        doc = probe_target(target(), providers=s.providers(), out_dir=None, names=["json_mode", "structured_output"])
    assert [r["verdict"] for r in doc["results"]] == ["partial", "partial"]
    assert doc["disagreements"] == []


# 5 ----------------------------------------------------------------- health counts every attempt
def test_health_counts_the_attempts_a_probe_retried(tmp_path):
    cnt = itertools.count()

    def respond(b):
        return err(500, "internal error", "server_error") if next(cnt) % 2 == 0 else answer("MANGO")

    with Srv(respond) as s:
        doc = probe_target(target(), providers=s.providers(), out_dir=tmp_path,
                           names=["system_prompt", "json_mode", "vision"])
    assert len(s.bodies) == 6 and [r["verdict"] for r in doc["results"]] == ["yes", "no", "partial"]
    [f] = health(7 * 86400, by="provider", probes_dir=tmp_path, store=False)
    assert (f.n, f.success_rate) == (6, 0.5)
    assert f.latency_p50_ms is not None


# 6 ----------------------------------------------------------------- benchmark figures
def test_tokens_per_s_counts_tokens_after_the_first():
    n, gap = 5, 0.06  # 5 tokens, one every 60 ms after the first: 4 tokens in 0.24 s ~ 16.7 tok/s

    def respond(b):
        ev = [(0.05 if i == 0 else gap, chunk(f"w{i} ")) for i in range(n)]
        return "stream", ev + [(0, chunk(finish="stop")), (0, usage(10, n)), (0, "[DONE]")]

    with Srv(respond) as s:
        doc = benchmark([target()], runs=2, providers=s.providers(), out_dir=None)
    r = doc["results"][0]
    assert r["tokens_per_s_estimated"] is False
    assert 10 <= r["tokens_per_s_p50"] <= (n - 1) / ((n - 1) * gap) * 1.02  # old formula: ~20.8


def test_estimated_token_counts_are_flagged_or_left_out(tmp_path):
    def respond(b):
        return "stream", [(0.03, chunk("東京都")) for _ in range(6)] + [(0, chunk(finish="stop")), (0, "[DONE]")]

    with Srv(respond) as s:
        doc = benchmark([target()], runs=2, providers=s.providers(), out_dir=None)
    r = doc["results"][0]
    assert all(x["usage_estimated"] for x in r["run_details"])
    assert r["tokens_per_s_p50"] and r["tokens_per_s_estimated"] is True
    base = {"ok": True, "ttft_ms": 1.0, "latency_ms": 2.0, "cost_usd": 0.0}
    mixed = summarize_runs([{**base, "tokens_per_s": 10.0, "usage_estimated": False},
                            {**base, "tokens_per_s": 90.0, "usage_estimated": True},
                            {**base, "tokens_per_s": 12.0, "usage_estimated": False}])
    assert (mixed["tokens_per_s_p50"], mixed["tokens_per_s_estimated"]) == (11.0, False)


def test_a_run_refused_by_the_cost_cap_is_skipped_not_a_failure(tmp_path):
    def respond(b):  # bills 3x max_tokens: the cap refuses the later runs before sending them
        return "stream", [(0, chunk("hi there")), (0, chunk(finish="stop")),
                          (0, usage(20, 3 * b.get("max_tokens", 128))), (0, "[DONE]")]

    with Srv(respond) as s:
        doc = benchmark([target()], runs=4, providers=s.providers(), out_dir=tmp_path)
    r = doc["results"][0]
    sent = len(s.bodies)
    assert sent < 4 and r["skipped"] == 4 - sent
    assert (r["runs"], r["ok"], r["success_rate"]) == (sent, sent, 1.0)
    [f] = health(7 * 86400, by="provider", probes_dir=tmp_path, store=False)
    assert (f.n, f.success_rate) == (sent, 1.0)


# second review (2026-11-24) ------------------------------------------------------------------------
@pytest.mark.parametrize("text,verdict", [("I cannot see images, so I can't tell whether it is red.", "partial"),
                                          ("It is not red; it looks blue.", "partial"),
                                          ("The image is red.", "yes"),
                                          ("red", "yes")])
def test_vision_needs_red_as_the_answer_not_a_mention(text, verdict):
    """A text-only model's refusal that mentions "red" was a vision "yes" (the probe layer
    outranks every list's claim)."""
    test_vision_needs_the_word_red(text, verdict)


def test_benchmark_spent_counts_what_failed_runs_were_charged_and_its_exit_code():
    """A stream cut after its output is charged what the provider bills: the benchmark's
    spent figure counts it (it counted only the runs that answered). Exit 1 when a sent run
    failed, whatever the others did (a target with one success passed)."""
    from knollm.probe.common import resolve_targets
    from knollm.query.api import Catalog
    from tests.support.client_fixtures import model
    from tests.support.provider_servers import ProviderServer

    cat = Catalog({"models": [model("p", "m", canonical="c")], "providers": [{"id": "p", "name": "p"}]})
    [t] = resolve_targets(cat, ["p/m"])
    prov = {"p": {"base_url": None, "shape": "openai", "api_key": "k"}}
    with ProviderServer("p") as s:
        prov["p"]["base_url"] = s.base_url
        s.faults("cut3", "cut3", "ok")
        doc = benchmark([t], runs=3, providers=prov, out_dir=None)
    r = doc["results"][0]
    failed = [x for x in r["run_details"] if not x["ok"]]
    assert len(failed) == 2 and all(x["cost_usd"] and x["cost_usd"] > 0 for x in failed)
    answered = [x for x in r["run_details"] if x["ok"]]
    assert r["cost_usd"] == pytest.approx(sum(x["cost_usd"] for x in r["run_details"]))
    assert r["cost_usd"] > answered[0]["cost_usd"] and doc["cost_usd"] == pytest.approx(r["cost_usd"])
    assert r["cost_per_run_usd"] == pytest.approx(answered[0]["cost_usd"])


def test_benchmark_exit_code_is_1_when_a_sent_run_failed(tmp_path, monkeypatch):
    import json as _json

    from knollm.cli import main
    from tests.support.client_fixtures import catalog, model
    from tests.support.provider_servers import ProviderServer

    (tmp_path / "cat.json").write_text(_json.dumps(catalog(model("groq", "llama-3.1-8b-instant",
                                                                 canonical="llama-3.1-8b-instruct"))))
    monkeypatch.setenv("KNOLLM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GROQ_API_KEY", "gsk-x")
    with ProviderServer("groq") as s:
        monkeypatch.setenv("KNOLLM_GROQ_BASE_URL", s.base_url)
        args = ["benchmark", "groq/llama-3.1-8b-instant", "--catalog", str(tmp_path / "cat.json"),
                "--out", str(tmp_path / "out"), "--json"]
        s.faults("500", "500", "ok")
        assert main([*args, "--runs", "3"]) == 1
        assert main([*args, "--runs", "2"]) == 0


def test_health_says_when_its_tokens_per_s_are_estimated(tmp_path):
    """Benchmark runs whose provider reported no usage: tokens/s from estimated counts, flagged
    in the benchmark and now in ``providers health`` too (it read as measured)."""
    def respond(b):
        return "stream", [(0.03, chunk("東京都")) for _ in range(6)] + [(0, chunk(finish="stop")), (0, "[DONE]")]

    with Srv(respond) as s:
        doc = benchmark([target()], runs=3, providers=s.providers(), out_dir=tmp_path)
    assert doc["results"][0]["tokens_per_s_estimated"] is True
    [f] = health(7 * 86400, by="provider", probes_dir=tmp_path, store=False)
    assert f.tokens_per_s_p50 and f.tokens_per_s_estimated is True
