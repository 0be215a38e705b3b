"""Stopping ``knollm serve`` (SIGTERM, as a deploy, ``docker stop`` or Kubernetes sends;
or Ctrl-C) with calls in flight: the calls finish within ``KNOLLM_GATEWAY_SHUTDOWN_S`` and
no new connection is taken; a call still waiting for its provider after it gets an
OpenAI-shaped 503 ``shutting_down`` (a stream: its error event and its ledger row), never
uvicorn's plain-text 500 and a traceback. A real gateway process, real loopback providers,
the official openai SDK and httpx as clients."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

import pytest

from tests.support.gateway_proc import GatewayProcess, ledger_rows
from tests.support.provider_servers import ProviderServer
from tests.test_gateway import COST, GROQ, TOGETHER, gateway_env

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture
def servers():
    srvs = {"groq": ProviderServer("groq").start(), "togetherai": ProviderServer("together").start()}
    yield srvs
    for s in srvs.values():
        s.stop()


def _wait_for(pred, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def _in_thread(fn) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - the test reads it
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_a_stopped_gateway_finishes_the_calls_in_flight_and_takes_no_new_connection(servers, tmp_path):
    """SIGTERM while a non-streamed call waits for its provider (1.5 s) and a stream is
    half written (its provider sends a chunk every 0.3 s): the listening socket closes at
    once, both calls finish whole (content, usage, a ledger row each at the exact cost),
    and the process exits as soon as they have, not after the 20 s it would allow them."""
    servers["togetherai"].latency = 1.5
    servers["groq"].chunk_delay = 0.3
    env = gateway_env(tmp_path, servers, KNOLLM_GATEWAY_SHUTDOWN_S="20")
    with GatewayProcess(env) as gw:
        oai = openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0)
        whole, got_whole = _in_thread(lambda: oai.chat.completions.create(model=TOGETHER, messages=MSG))
        first = threading.Event()

        def stream() -> list:
            chunks = []
            for c in oai.chat.completions.create(model=GROQ, messages=MSG, stream=True,
                                                 stream_options={"include_usage": True}):
                chunks.append(c)
                first.set()
            return chunks

        streamed, got_stream = _in_thread(stream)
        _wait_for(lambda: first.is_set() and len(servers["togetherai"].requests) == 1)
        t = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        _wait_for(lambda: _refused(gw.port), timeout=2)  # no new connection once stopping
        code = gw.proc.wait(15)
        took = time.monotonic() - t
        whole.join(10), streamed.join(10)
        err = gw.stderr()
    assert code in (0, -signal.SIGTERM), err
    assert took < 8, f"exited {took:.1f} s after SIGTERM: waited out the shutdown time, not the calls"
    assert "error" not in got_whole and "error" not in got_stream, (got_whole, got_stream)
    assert got_whole["value"].choices[0].message.content == "Hello from together! You said: hi"
    chunks = got_stream["value"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from groq! You said: hi"
    assert chunks[-1].usage.total_tokens == 150
    rows = ledger_rows(tmp_path)
    assert sorted((r["provider"], r["outcome"], r["cost_usd"]) for r in rows) == [
        ("groq", "ok", pytest.approx(COST["groq"])), ("togetherai", "ok", pytest.approx(COST["togetherai"]))]
    assert "Traceback" not in err


def test_calls_still_waiting_when_the_shutdown_time_is_up_get_an_answer_and_streams_their_row(servers, tmp_path):
    """With ``KNOLLM_GATEWAY_SHUTDOWN_S=1``, SIGTERM while a non-streamed call's provider
    hangs and two streams' providers stall after their first chunk (one asked in OpenAI's
    shape, one in Anthropic's): about a second later the call gets a 503 ``shutting_down``
    with ``retry-after`` (the SDKs retry it: another replica, or this one restarted, serves
    it) and the attempt its provider got counted, and each stream its error event in its
    caller's shape, then a whole end of its chunked body. Each stream is charged what its
    provider sent (an ``interrupted`` row); the process is gone within the backstop."""
    servers["groq"].hang_s = servers["togetherai"].hang_s = 30
    servers["groq"].faults("stall", "stall")
    servers["togetherai"].faults("hang")
    env = gateway_env(tmp_path, servers, KNOLLM_GATEWAY_SHUTDOWN_S="1")
    with GatewayProcess(env) as gw:
        h = httpx.Client(base_url=gw.url, timeout=30)

        def call() -> httpx.Response:
            return h.post("/v1/chat/completions", json={"model": TOGETHER, "messages": MSG})

        def stream(path: str, body: dict, started: threading.Event) -> list[str]:
            lines = []
            with h.stream("POST", path, json=body) as r:
                assert r.status_code == 200
                for line in r.iter_lines():  # (a chunked body cut short raises here)
                    lines.append(line)
                    if line.startswith("data: {"):
                        started.set()
            return lines

        started = [threading.Event(), threading.Event()]
        openai_stream, got_openai = _in_thread(lambda: stream(
            "/v1/chat/completions", {"model": GROQ, "messages": MSG, "stream": True}, started[0]))
        anthropic_stream, got_anthropic = _in_thread(lambda: stream(
            "/v1/messages", {"model": GROQ, "messages": MSG, "max_tokens": 64, "stream": True}, started[1]))
        _wait_for(lambda: all(e.is_set() for e in started))
        whole, got_whole = _in_thread(call)
        _wait_for(lambda: len(servers["togetherai"].requests) == 1)
        t = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        for th in (whole, openai_stream, anthropic_stream):
            th.join(15)
        answered = time.monotonic() - t
        code = gw.proc.wait(15)
        took = time.monotonic() - t
        err = gw.stderr()
    assert code in (0, -signal.SIGTERM), err
    assert 0.9 < answered < 4 and took < 6, (answered, took)
    r = got_whole["value"]
    assert r.status_code == 503 and r.headers["retry-after"] == "1" and r.headers["x-knollm-attempts"] == "1"
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"]["type"] == "server_error" and r.json()["error"]["code"] == "shutting_down"
    assert "KNOLLM_GATEWAY_SHUTDOWN_S" in r.json()["error"]["message"]
    assert "error" not in got_openai and "error" not in got_anthropic, (got_openai, got_anthropic)
    events = [json.loads(line[6:]) for line in got_openai["value"] if line.startswith("data: {")]
    assert events[0]["choices"][0]["delta"]["content"] == "Hello "
    assert events[-1]["error"]["code"] == "shutting_down"
    lines = got_anthropic["value"]
    assert "event: error" in lines
    last = json.loads(lines[lines.index("event: error") + 1][6:])
    assert last == {"type": "error", "error": {"type": "overloaded_error", "message": last["error"]["message"]}}
    assert "shutting down" in last["error"]["message"]
    rows = ledger_rows(tmp_path)
    assert [(r["provider"], r["outcome"], r["output_tokens"] > 0, r["cost_usd"] > 0) for r in rows] == \
        [("groq", "interrupted", True, True)] * 2
    assert "Traceback" not in err and "shutting down: 3 request(s) in flight" in err


def test_with_two_workers_each_worker_cuts_its_own_calls_at_the_shutdown_time(servers, tmp_path):
    """``--workers 2``: uvicorn's supervisor passes SIGTERM to each worker, and the worker
    serving a stalled stream gives it its error event and its ``interrupted`` row at the
    shutdown time, as one worker does; the supervisor exits once both have."""
    servers["groq"].hang_s = 30
    servers["groq"].faults("stall")
    env = gateway_env(tmp_path, servers, KNOLLM_GATEWAY_SHUTDOWN_S="1")
    with GatewayProcess(env, args=["--workers", "2"]) as gw:
        h = httpx.Client(base_url=gw.url, timeout=30)
        started = threading.Event()

        def stream() -> list[str]:
            lines = []
            with h.stream("POST", "/v1/chat/completions", json={"model": GROQ, "messages": MSG, "stream": True}) as r:
                for line in r.iter_lines():
                    lines.append(line)
                    started.set()
            return lines

        th, got = _in_thread(stream)
        _wait_for(started.is_set)
        t = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        th.join(15)
        code = gw.proc.wait(15)
        took = time.monotonic() - t
        err = gw.stderr()
    assert code in (0, -signal.SIGTERM), err
    assert took < 8 and "error" not in got, (took, got)
    events = [json.loads(line[6:]) for line in got["value"] if line.startswith("data: {")]
    assert events[0]["choices"][0]["delta"]["content"] == "Hello " and events[-1]["error"]["code"] == "shutting_down"
    assert [(r["provider"], r["outcome"]) for r in ledger_rows(tmp_path)] == [("groq", "interrupted")]
    assert "Traceback" not in err
