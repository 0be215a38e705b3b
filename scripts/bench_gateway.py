"""Benchmark ``knollm serve`` against the same loopback upstream called directly.

    python scripts/bench_gateway.py [--requests 10000] [--rss-requests 10000] [--workers 1]
                                    [--rounds 5] [--client aiohttp|openai]

One run: starts ``scripts/bench_upstream.py`` (a bare-ASGI OpenAI-compatible server) and
``knollm serve`` whose provider ``groq`` points at it (``KNOLLM_GROQ_BASE_URL``), then
sends the same chat requests directly to the upstream and through the gateway,
non-streamed and streamed, at concurrency 1 and 64, and prints:

* added latency p50/p99 (gateway minus direct, concurrency 1),
* time-to-first-token overhead p50 for streams (concurrency 1),
* throughput through the gateway as a ratio of direct (concurrency 64): ``--rounds``
  rounds (default 5) each measure every path in turn (the order reversed every other
  round, so a drift of the machine's speed within rounds favours no path), each round's
  ratio compares runs seconds apart, and the median is reported with every round's figure (on a shared
  machine the speed drifts between minutes: one pair measured minutes apart can be off
  by half),
* CPU time per request of each process (load generator, upstream, gateway) at
  concurrency 64 (median of the rounds), read from ``/proc``: the steadiest figure on a
  shared machine, and the one that explains the ratio (the gateway serves one request *and* makes one, so its
  CPU per request is at least the upstream's plus the load generator's),
* where the wall time of each process goes at concurrency 64 (median of the rounds), from
  ``/proc/<pid>/task/*/schedstat`` and ``/proc/stat``: the share spent on a CPU, the share
  spent *waiting* for one (runnable, not running), and the machine's idle CPU meanwhile.
  Three processes (load generator, gateway, upstream) share two cores: when the gateway
  waits for a CPU while the machine has idle time, the kernel's placement, not the
  gateway's work, is what caps the ratio,
* how many answers the load generator's event loop finds ready per wake-up (one
  ``select`` call of its selector) at concurrency 64, and its wake-ups per request:
  direct, the upstream's answers come in bursts; through a relay they arrive spread out,
* the share of a gateway worker's CPU spent in the garbage collector over the
  measurements (from its ``/metrics``),
* the gateway's RSS after ``--rss-requests`` requests,
* the interpreter every process ran on (version, and whether libpython is a shared
  library: the build moved every CPU figure by 10-25% here, not the ratios),
* the time of the first requests through the fresh gateway (what its workers load before
  serving keeps the first one near the rest),
* the same figures for the gateway app alone: ``create_app`` over a stub backend that
  answers from memory (no client, no upstream), which splits the overhead between the
  server side (uvicorn + Starlette + gateway code) and the client's call to the upstream,
* paced streams (``--paced-rounds``, default 3; 0 skips them): a second upstream writes
  each of a stream's 14 events ``--pace-ms`` apart (default 1), so each reaches the relay
  in its own read, as a provider's tokens do (the upstream above writes a whole stream at
  once: one read). The gateway reaches it as another provider (``--paced-target``).
  Printed, at concurrency 64, direct, through the floor and through the gateway: CPU per
  stream of each process, throughput against direct, and what each further read costs a
  relay (its CPU per paced stream less its CPU per stream in one read, measured above,
  over the 13 further reads): what it spends on each event a provider sends,
* and for the floor, ``scripts/bench_minproxy.py``: a bare ASGI app on the same stack
  (uvicorn serving, the ``h1`` driver calling) that relays the upstream's bytes with none
  of the gateway's work; what the gateway costs above it is routing, translation,
  accounting, the ledger and metrics.

The load generator is aiohttp (``--client aiohttp``, a lean and widely used Python
client: the stricter baseline) or the official openai SDK's ``AsyncOpenAI`` (``--client openai``,
what applications pointed at the gateway use).

Targets (issue 13): added latency p50 <= 2 ms, TTFT overhead p50 <= 2 ms, throughput
>= 50% of direct on a 2-core machine. The numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import selectors
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.gateway_proc import GatewayProcess, free_port  # noqa: E402
from tests.support.scratch import scratch_dir  # noqa: E402

MESSAGES = [{"role": "user", "content": "Say hello in ten words."}]


def _has_text(data: bytes) -> bool:
    obj = json.loads(data)
    return any((c.get("delta") or {}).get("content") for c in obj.get("choices") or [])


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


class _CountingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """The load generator's selector, counting its wake-ups (``select`` calls) and the
    ready sockets they return."""

    calls = 0
    ready = 0

    def select(self, timeout: float | None = None) -> list[Any]:
        got = super().select(timeout)
        _CountingSelector.calls += 1
        _CountingSelector.ready += len(got)
        return got


def _run(coro: Any) -> Any:
    """``asyncio.run`` on a selector loop whose wake-ups are counted (the default loop otherwise)."""
    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(_CountingSelector())) as runner:
        return runner.run(coro)


class _Failed(Exception):
    """A request that did not answer 200."""


async def _drive(one: Any, n: int, conc: int, stream: bool, errors_of: tuple[type[BaseException], ...]
                 ) -> tuple[list[float], list[float], float, int]:
    """Run ``one(t0)`` (returns the time to first token, or None) ``n`` times from ``conc``
    workers: (latencies s, ttfts s, wall s, errors)."""
    lat: list[float] = []
    ttft: list[float] = []
    errors = 0
    queue = iter(range(n))

    async def worker() -> None:
        nonlocal errors
        for _ in queue:
            t0 = time.perf_counter()
            try:
                first = await one(t0)
            except (_Failed, *errors_of):
                errors += 1
                continue
            lat.append(time.perf_counter() - t0)
            if stream:
                ttft.append(first if first is not None else float("nan"))

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    return lat, ttft, time.perf_counter() - t, errors


async def _load(url: str, model: str, n: int, conc: int, stream: bool, headers: dict[str, str],
                client: str = "aiohttp") -> tuple[list[float], list[float], float, int]:
    """(latencies s, ttfts s, wall s, errors) for ``n`` requests at concurrency ``conc``."""
    if client == "openai":
        return await _load_openai(url, model, n, conc, stream)
    import aiohttp

    body = {"model": model, "messages": MESSAGES, "max_tokens": 64}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    payload = json.dumps(body).encode()
    conn = aiohttp.TCPConnector(limit=conc, force_close=False)
    async with aiohttp.ClientSession(connector=conn, headers={"content-type": "application/json", **headers}) as s:
        async def one(t0: float) -> float | None:
            async with s.post(url + "/chat/completions", data=payload) as r:
                if r.status != 200:
                    await r.read()
                    raise _Failed
                if not stream:
                    await r.read()
                    return None
                first = None
                async for line in r.content:
                    if first is None and line.startswith(b"data: {") and _has_text(line[6:]):
                        first = time.perf_counter() - t0
                return first

        return await _drive(one, n, conc, stream, (aiohttp.ClientError,))


async def _load_openai(url: str, model: str, n: int, conc: int, stream: bool
                       ) -> tuple[list[float], list[float], float, int]:
    import httpx
    import openai

    c = openai.AsyncOpenAI(base_url=url, api_key="bench", max_retries=0,
                           http_client=httpx.AsyncClient(limits=httpx.Limits(max_connections=conc)))

    async def one(t0: float) -> float | None:
        if not stream:
            await c.chat.completions.create(model=model, messages=MESSAGES, max_tokens=64)
            return None
        first = None
        async for ch in await c.chat.completions.create(model=model, messages=MESSAGES, max_tokens=64, stream=True,
                                                        stream_options={"include_usage": True}):
            if first is None and ch.choices and ch.choices[0].delta.content:
                first = time.perf_counter() - t0
        return first

    try:
        return await _drive(one, n, conc, stream, (openai.OpenAIError,))
    finally:
        await c.close()


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` (all their threads), from /proc."""
    total = 0.0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _tasks(pids: list[int]) -> list[str]:
    """The /proc task directories (threads) of ``pids``."""
    out = []
    for pid in pids:
        try:
            out += [f"/proc/{pid}/task/{t}" for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            pass
    return out


def _sched(pids: list[int]) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of ``pids``' threads so far,
    from the kernel's ``schedstat``."""
    run = wait = 0
    for task in _tasks(pids):
        try:
            f = Path(f"{task}/schedstat").read_text().split()
        except OSError:
            continue
        run, wait = run + int(f[0]), wait + int(f[1])
    return run / 1e9, wait / 1e9


def _machine_idle() -> float:
    """Idle CPU seconds of the whole machine so far (all CPUs), from /proc/stat."""
    f = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return (int(f[4]) + int(f[5])) / os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's worker processes)."""
    out = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split():
                out += _tree(int(child))
    except OSError:
        pass
    return out


def _interpreter() -> str:
    """Which Python ran the run: its version and whether libpython is a shared library in
    this process. The build matters: Debian's ``python3.11`` (linked statically, built with
    PGO and LTO) runs the gateway's in-process path in about 10% fewer instructions than
    pyenv's default build (shared libpython, no PGO/LTO); see the gateway docs."""
    try:
        with open("/proc/self/maps") as f:
            shared = any("libpython" in line for line in f)
    except OSError:
        return f"{sys.implementation.name} {sys.version.split()[0]} ({sys.executable})"
    return (f"{sys.implementation.name} {sys.version.split()[0]} ({sys.executable}; libpython "
            f"{'a shared library' if shared else 'linked in'})")


class _StubStream:
    """The upstream's stream, from memory (for ``--stub-server``)."""

    def __init__(self, model: str) -> None:
        from knollm.gateway.backend import Outcome

        self.outcome = Outcome(provider="stub", model=model)
        self._chunks = [json.loads(c[6:]) for c in _upstream().split(b"\n\n") if c.startswith(b"data: {")]

    def __aiter__(self) -> "_StubStream":
        return self

    async def __anext__(self) -> list[dict]:
        if not self._chunks:
            raise StopAsyncIteration
        return [self._chunks.pop(0)]  # one chunk per batch: the gateway layer's worst case

    async def aclose(self) -> None:
        pass


def _upstream() -> bytes:
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_upstream

    return b"".join(bench_upstream._chunks("bench", True))


class _StubBackend:
    _answers: dict[str, dict] = {}

    async def complete(self, body: dict, *, targets: list, tag: str | None = None) -> tuple:
        import bench_upstream

        from knollm.gateway.backend import Outcome

        answer = self._answers.get(body["model"])
        if answer is None:
            answer = self._answers[body["model"]] = json.loads(bench_upstream._completion(body["model"]))
        # (a shallow copy: the gateway adds its own top-level ``knollm`` key)
        return dict(answer), Outcome(provider="stub", model=body["model"], cost_usd=0.0)

    def stream(self, body: dict, *, targets: list, tag: str | None = None) -> _StubStream:
        return _StubStream(body["model"])

    def worst_case_usd(self, body: dict, targets: list, op: str = "chat") -> float:
        return 0.0

    async def models(self) -> list:
        return []

    async def aclose(self) -> None:
        pass


def _stub_server(port: int) -> None:
    import uvicorn

    from knollm.gateway.app import create_app
    from knollm.gateway.server import GatewayHTTP

    _upstream()
    uvicorn.run(create_app(_StubBackend()), host="127.0.0.1", port=port, log_level="warning", access_log=False,
                http=GatewayHTTP, loop="uvloop", proxy_headers=False)


def _gc_share(base_url: str) -> tuple[float, float] | None:
    """(seconds in the garbage collector, CPU seconds) of a gateway worker, from its /metrics."""
    try:
        text = urllib.request.urlopen(base_url.rsplit("/v1", 1)[0] + "/metrics", timeout=10).read().decode()
    except OSError:
        return None
    gc_s = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("knollm_gateway_gc_seconds_total{"))
    cpu = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
           if line.startswith("knollm_gateway_cpu_seconds_total ")]
    return (gc_s, cpu[0]) if cpu else None


def _one_request(base_url: str, model: str) -> float:
    """Milliseconds of one non-streamed chat request (urllib, a new connection)."""
    body = json.dumps({"model": model, "messages": MESSAGES, "max_tokens": 64}).encode()
    req = urllib.request.Request(base_url + "/chat/completions", data=body, headers={"content-type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()
    return (time.perf_counter() - t) * 1000


def _wait(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def _paced(args: Any, upstream_pid: int, paths: tuple[tuple[str, str, str, list[int]], ...],
           one_read: dict[tuple[str, bool], tuple[float, float, float]]) -> int:
    """The paced measurement (each of a stream's events in its own read): prints CPU per
    stream of each process, and what each further read costs the relays (against
    ``one_read``, the CPU per stream of the unpaced measurement, the whole stream in one
    read); returns the gateway requests it made."""
    if args.paced_rounds <= 0:
        return 0
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_upstream

    events = len(bench_upstream._chunks("bench", True))
    for _, url, model, _ in paths:
        _run(_load(url, model, 50, 4, True, {}, args.client))
    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    for _ in range(args.paced_rounds):
        for name, url, model, pids in paths:
            before = (time.process_time(), _cpu_s([upstream_pid]), _cpu_s(pids))
            lat, _, wall, err = _run(_load(url, model, args.paced_requests, 64, True, {}, args.client))
            after = (time.process_time(), _cpu_s([upstream_pid]), _cpu_s(pids))
            rows.setdefault(name, []).append((len(lat) / wall, *((b - a) / args.paced_requests * 1e6
                                                                 for a, b in zip(before, after))))
            if err:
                print(f"  paced {name}: {err} errors")
    print(f"paced streams: the upstream writes each of a stream's {events} events {args.pace_ms:g} ms apart "
          f"(concurrency 64, {args.paced_requests} streams a measurement, median of {args.paced_rounds} rounds)")
    print("  CPU per stream (us): load generator / upstream / proxy process; what each further read costs the "
          "proxy (against the whole stream in one read, above)")
    direct = rows["direct"]
    for name, rs in rows.items():
        lg, up, px = (statistics.median(r[i] for r in rs) for i in (1, 2, 3))
        ratio = statistics.median(g[0] / d[0] for d, g in zip(direct, rs))
        per_read = (px - one_read[(name, True)][2]) / (events - 1) if (name, True) in one_read else float("nan")
        extra = "" if name == "direct" else f"; {per_read:5.1f} us a read; throughput {ratio:.0%} of direct"
        print(f"  {name:>9}: {lg:6.0f} / {up:6.0f} / {px if name != 'direct' else 0:6.0f}{extra}")
    return 50 + args.paced_rounds * args.paced_requests


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=10000,
                    help="requests per measurement (default 10000: about a second or more each; with 2000, a "
                         "fifth of a second, the rounds of one run spread twice as wide)")
    ap.add_argument("--rss-requests", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=1, help="gateway worker processes")
    ap.add_argument("--rounds", type=int, default=5,
                    help="rounds at concurrency 64: each measures every path in turn, so each ratio compares "
                         "runs seconds apart; the median ratio is reported (default 5)")
    ap.add_argument("--target", default="groq/llama-3.3-70b-versatile",
                    help="the model the gateway is asked for (its provider points at the upstream)")
    ap.add_argument("--client-options", default=None,
                    help="JSON of AsyncClient options for the gateway ($KNOLLM_GATEWAY_CLIENT_OPTIONS)")
    ap.add_argument("--client", choices=("aiohttp", "openai"), default="aiohttp",
                    help="the load generator: aiohttp (strictest) or the openai SDK's AsyncOpenAI")
    ap.add_argument("--paced-rounds", type=int, default=3,
                    help="rounds of paced streams, each event its own read (0: none; default 3)")
    ap.add_argument("--paced-requests", type=int, default=2000, help="streams per paced measurement")
    ap.add_argument("--pace-ms", type=float, default=1.0, help="the paced upstream's pause between events")
    ap.add_argument("--paced-target", default="openai/gpt-4o-mini",
                    help="the model the gateway is asked for in the paced measurement (its provider points at the "
                         "paced upstream; it must differ from --target's)")
    ap.add_argument("--stub-server", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.paced_target.split("/", 1)[0] == args.target.split("/", 1)[0]:
        ap.error("--paced-target needs another provider than --target's (each provider has one base URL)")
    if args.stub_server:
        _stub_server(args.stub_server)
        return 0

    up_port = free_port()
    upstream = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "bench_upstream.py"), str(up_port)])
    mp_port = free_port()
    minproxy = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "bench_minproxy.py"), str(mp_port),
                                 f"http://127.0.0.1:{up_port}"])
    paced_port, pmp_port = free_port(), free_port()
    paced = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "bench_upstream.py"), str(paced_port)],
                             env={**os.environ, "BENCH_STREAM_PACE_MS": str(args.pace_ms)})
    paced_mp = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "bench_minproxy.py"), str(pmp_port),
                                 f"http://127.0.0.1:{paced_port}"])
    stub_port = free_port()
    stub = subprocess.Popen([sys.executable, __file__, "--stub-server", str(stub_port)],
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    home = str(scratch_dir("knollm-bench-"))
    env = {"KNOLLM_HOME": home, "KNOLLM_DATABASE_URL": f"sqlite:///{home}/knollm.db"}
    for target, port in ((args.paced_target, paced_port), (args.target, up_port)):
        provider = target.split("/", 1)[0]
        env_name = "KNOLLM_" + "".join(c if c.isalnum() else "_" for c in provider.upper()) + "_BASE_URL"
        env.update({env_name: f"http://127.0.0.1:{port}/v1", f"{provider.upper()}_API_KEY": "bench-key"})
    if args.client_options:
        env["KNOLLM_GATEWAY_CLIENT_OPTIONS"] = args.client_options
    direct = f"http://127.0.0.1:{up_port}/v1"
    try:
        _wait(direct + "/models")
        stub_url = f"http://127.0.0.1:{stub_port}/v1"
        _wait(stub_url.replace("/v1", "/health"))
        mp_url = f"http://127.0.0.1:{mp_port}/v1"
        _wait(f"http://127.0.0.1:{mp_port}/health")
        paced_direct = f"http://127.0.0.1:{paced_port}/v1"
        _wait(paced_direct + "/models")
        paced_mp_url = f"http://127.0.0.1:{pmp_port}/v1"
        _wait(f"http://127.0.0.1:{pmp_port}/health")
        with GatewayProcess(env, args=["--workers", str(args.workers)]) as gw:
            via = gw.base_url
            first = [_one_request(via, args.target) for _ in range(3)]  # a fresh worker's first requests
            # warm both paths (imports, catalog, connection pools)
            paths = (("direct", direct, "bench"), ("app-only", stub_url, "bench"), ("minproxy", mp_url, "bench"),
                     ("gateway", via, args.target))
            for _, url, model in paths:
                _run(_load(url, model, 50, 4, False, {}, args.client))
                _run(_load(url, model, 50, 4, True, {}, args.client))
            results: dict[tuple[str, bool, int], tuple] = {}
            cpu: dict[tuple[str, bool], tuple[float, float, float]] = {}
            procs = {"direct": [], "app-only": _tree(stub.pid), "minproxy": [minproxy.pid],
                     "gateway": _tree(gw.proc.pid)}
            rounds: dict[tuple[str, bool], list[tuple[float, tuple[float, float, float]]]] = {}
            sched: dict[tuple[str, bool], list[list[tuple[float, float]]]] = {}
            wakes: dict[tuple[str, bool], list[tuple[float, float]]] = {}
            gc0 = _gc_share(via)
            for conc in (1, 64):
                for rnd in range(args.rounds if conc == 64 else 1):
                    for stream in (False, True):
                        for name, url, model in (paths if rnd % 2 == 0 else paths[::-1]):
                            groups = ([os.getpid()], [upstream.pid], procs[name])
                            before = (time.process_time(), _cpu_s([upstream.pid]), _cpu_s(procs[name]))
                            s0, idle0, w0 = [_sched(g) for g in groups], _machine_idle(), time.perf_counter()
                            sel0 = (_CountingSelector.calls, _CountingSelector.ready)
                            res = _run(_load(url, model, args.requests, conc, stream, {}, args.client))
                            after = (time.process_time(), _cpu_s([upstream.pid]), _cpu_s(procs[name]))
                            s1, idle1, w1 = [_sched(g) for g in groups], _machine_idle(), time.perf_counter()
                            results[(name, stream, conc)] = res
                            if conc == 64:  # req/s and CPU per request of this round
                                rounds.setdefault((name, stream), []).append(
                                    (len(res[0]) / res[2],
                                     tuple((b - a) / args.requests * 1e6 for a, b in zip(before, after))))
                                wall = w1 - w0  # shares of the wall time: on a CPU, waiting for one; idle
                                sched.setdefault((name, stream), []).append(
                                    [((b[0] - a[0]) / wall, (b[1] - a[1]) / wall) for a, b in zip(s0, s1)]
                                    + [((idle1 - idle0) / wall, 0.0)])
                                calls = _CountingSelector.calls - sel0[0]
                                wakes.setdefault((name, stream), []).append(
                                    ((_CountingSelector.ready - sel0[1]) / max(1, calls), calls / args.requests))
            for key, rs in rounds.items():
                cpu[key] = tuple(statistics.median(r[1][i] for r in rs) for i in range(3))
            print(f"requests per measurement: {args.requests}; gateway workers: {args.workers}; "
                  f"cpus: {os.cpu_count()}; load generator: {args.client}")
            print(f"{'mode':<10}{'conc':>5}{'path':>9}{'p50 ms':>9}{'p99 ms':>9}{'ttft p50':>10}{'req/s':>9}"
                  f"{'errors':>8}")
            for (name, stream, conc), (lat, ttft, wall, err) in results.items():
                print(f"{'stream' if stream else 'json':<10}{conc:>5}{name:>9}{_pct(lat, 50) * 1e3:>9.2f}"
                      f"{_pct(lat, 99) * 1e3:>9.2f}{(_pct(ttft, 50) * 1e3 if ttft else float('nan')):>10.2f}"
                      f"{len(lat) / wall:>9.0f}{err:>8}")
            print("CPU per request at concurrency 64 (us): load generator / upstream / proxy process")
            for (name, stream), (lg, up, gwc) in cpu.items():
                print(f"  {'stream' if stream else 'json':<7}{name:>9}: {lg:6.0f} / {up:6.0f} / "
                      f"{gwc if name != 'direct' else 0:6.0f}")
            for via_name in ("gateway", "app-only", "minproxy"):
                for stream in (False, True):
                    d, g = results[("direct", stream, 1)], results[(via_name, stream, 1)]
                    label = f"{via_name} {'stream' if stream else 'json'}"
                    print(f"{label}: added latency p50 {(_pct(g[0], 50) - _pct(d[0], 50)) * 1e3:.2f} ms, "
                          f"p99 {(_pct(g[0], 99) - _pct(d[0], 99)) * 1e3:.2f} ms (concurrency 1)")
                    if stream:
                        print(f"{label}: TTFT overhead p50 {(_pct(g[1], 50) - _pct(d[1], 50)) * 1e3:.2f} ms "
                              "(concurrency 1)")
                    ratios = sorted(g[0] / d[0] for d, g in zip(rounds[("direct", stream)],
                                                              rounds[(via_name, stream)]))
                    print(f"{label}: throughput {statistics.median(ratios):.0%} of direct (concurrency 64; "
                          f"median of {len(ratios)} rounds, each against direct in the same round: "
                          f"{', '.join(f'{r:.0%}' for r in ratios)})")
            print(f"where the wall time goes at concurrency 64 (median of the rounds; {os.cpu_count()} CPUs = "
                  f"{100 * (os.cpu_count() or 1)}%): on a CPU / runnable, waiting for a CPU")
            for (name, stream), rs in sched.items():
                med = [(statistics.median(r[i][0] for r in rs), statistics.median(r[i][1] for r in rs))
                       for i in range(4)]
                proxy = "" if name == "direct" else f", {name} {med[2][0]:.0%} / {med[2][1]:.0%}"
                print(f"  {'stream' if stream else 'json':<7}{name:>9}: load generator {med[0][0]:.0%} / "
                      f"{med[0][1]:.0%}, upstream {med[1][0]:.0%} / {med[1][1]:.0%}{proxy}; "
                      f"machine idle {med[3][0]:.0%}")
            print("the load generator's event loop at concurrency 64 (median of the rounds): ready sockets per "
                  "wake-up (select call), wake-ups per request")
            for (name, stream), ws in wakes.items():
                print(f"  {'stream' if stream else 'json':<7}{name:>9}: {statistics.median(w[0] for w in ws):5.1f} "
                      f"ready per wake-up, {statistics.median(w[1] for w in ws):.2f} wake-ups per request")
            paced_done = _paced(args, paced.pid, (("direct", paced_direct, "bench", []),
                                                  ("minproxy", paced_mp_url, "bench", [paced_mp.pid]),
                                                  ("gateway", via, args.paced_target, procs["gateway"])), cpu)
            print(f"first request through the fresh gateway: {first[0]:.1f} ms (the next two: "
                  f"{first[1]:.1f}, {first[2]:.1f} ms; one urllib request each)")
            gc1 = _gc_share(via)
            if gc0 and gc1 and gc1[1] > gc0[1]:
                print(f"gateway garbage collection: {gc1[0] - gc0[0]:.3f} s of {gc1[1] - gc0[1]:.2f} s CPU "
                      f"({(gc1[0] - gc0[0]) / (gc1[1] - gc0[1]):.1%}; one worker's /metrics)")
            rss0 = gw.rss_kb()
            done = (2 + 2 * args.rounds) * args.requests + 103 + paced_done  # gateway requests so far (warm-ups, first three)
            left = args.rss_requests - done
            print(f"load average: {os.getloadavg()[0]:.2f} (the machine is shared; figures vary run to run)")
            print(f"interpreter (every process): {_interpreter()}")
            if left > 0:
                _run(_load(via, args.target, left, 64, False, {}, args.client))
            print(f"gateway RSS after {max(args.rss_requests, done)} requests: "
                  f"{gw.rss_kb() / 1024:.1f} MiB (after warm-up and the first measurements: {rss0 / 1024:.1f} MiB)")
    finally:
        for p in (upstream, stub, minproxy, paced, paced_mp):
            p.terminate()
            p.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
