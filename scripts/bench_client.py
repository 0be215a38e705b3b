"""Benchmark knollm.Client on loopback (not a test: it prints figures and ratios).

1. added latency: the same request, interleaved, N times against one loopback
   OpenAI-compatible server: a direct ``httpx2.Client.post`` + JSON parse (baseline)
   vs ``Client.chat`` routed (catalog lookup, routing, accounting), without and with
   the SQLite ledger. Reports p50/p99 of each and the difference to the baseline.
2. 500 concurrent streaming calls with ``AsyncClient`` (server in its own process):
   errors, wall time, client RSS before/after.
3. ``knollm chat`` as a whole process to the last token (default cached index) vs
   ``python -c pass``: medians of R runs and their ratio.
4. the ledger under concurrency: 64 concurrent ``AsyncClient`` calls over a canned
   transport (no I/O, so only the client's own work counts), without a ledger (baseline),
   with the SQLite ledger as the client writes it (group commit: calls that finish
   together share one transaction), and with one transaction per call (``settle``).
5. the HTTP drivers: 64 concurrent ``AsyncClient.chat`` calls (no ledger) against one
   loopback upstream in its own process (``scripts/bench_upstream.py``), over each
   driver (``h1``, ``aiohttp``, ``httpx2``), beside the baseline measured in the same
   run: a bare ``aiohttp.ClientSession.post`` + read of the same request. CPU of this
   process per call (``time.process_time``) and calls per second.

    python scripts/bench_client.py [--n 300] [--concurrent 500] [--runs 9]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.scratch import scratch_dir  # noqa: E402
MSG = [{"role": "user", "content": "hi there"}]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def start_server(name: str, chunk_delay: float = 0.0) -> tuple[subprocess.Popen, str]:
    p = subprocess.Popen([sys.executable, "-m", "tests.support.provider_servers", name, str(chunk_delay)], cwd=ROOT,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    return p, p.stdout.readline().strip()


def bench_overhead(n: int) -> None:
    import httpx2

    from knollm import Client
    from knollm.client import SQLiteStore
    from knollm.query.api import Catalog
    from tests.support.client_fixtures import catalog, model

    proc, root = start_server("groq")
    try:
        cat = Catalog(catalog(model("groq", "llama-3.3-70b-versatile")))
        env = {"KNOLLM_GROQ_BASE_URL": root + "/v1", "GROQ_API_KEY": "gsk_bench"}
        tmp = scratch_dir()
        routed = Client(catalog=cat, env=env, store=False)
        ledger = Client(catalog=cat, env=env, store=SQLiteStore(Path(tmp) / "k.db"))
        direct = httpx2.Client()
        url = root + "/v1/chat/completions"
        hdr = {"authorization": "Bearer gsk_bench", "content-type": "application/json"}

        def d() -> None:
            r = direct.post(url, json={"model": "llama-3.3-70b-versatile", "messages": MSG}, headers=hdr)
            json.loads(r.text)["choices"][0]["message"]["content"]

        def r1() -> None:
            routed.chat("groq/llama-3.3-70b-versatile", MSG).content

        def r2() -> None:
            ledger.chat("groq/llama-3.3-70b-versatile", MSG).content

        fns = {"direct httpx2": d, "routed (no ledger)": r1, "routed + SQLite ledger": r2}
        for f in fns.values():  # warm up connections and caches
            for _ in range(20):
                f()
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(n):
            for k, f in fns.items():
                t = time.perf_counter()
                f()
                times[k].append((time.perf_counter() - t) * 1000)
        base50, base99 = pct(times["direct httpx2"], 50), pct(times["direct httpx2"], 99)
        print(f"\n1. added latency, {n} interleaved calls each, loopback OpenAI-compatible server")
        print(f"   {'':24} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8}")
        for k, xs in times.items():
            p50, p99 = pct(xs, 50), pct(xs, 99)
            print(f"   {k:24} {p50:8.3f} {p99:8.3f} {p50 - base50:8.3f} {p99 - base99:8.3f}")
        # pure client-side work per call: routing + parsing + accounting with the HTTP answer canned
        from knollm.client.engine import Outcome, flow
        from knollm.client.transports import get_shape

        body = json.loads(direct.post(url, json={"model": "m", "messages": MSG}, headers=hdr).text)
        t = time.perf_counter()
        for _ in range(2000):
            plan = routed.plan("groq/llama-3.3-70b-versatile", MSG, {})
            g = flow(plan, False)
            op, dep = next(g)
            while op != "send":  # the budget hold (no budget here: no store call)
                op, dep = g.send(routed._ledger(plan, op, dep))
            plan.request(dep, False)
            try:
                g.send(Outcome(get_shape("openai").parse(body, "groq"), status=200))
            except StopIteration:
                pass
        print(f"   client-side work alone (plan + request + parse + cost, no I/O): "
              f"{(time.perf_counter() - t) / 2000 * 1000:.3f} ms/call")
        routed.close()
        ledger.close()
    finally:
        proc.stdin.close()
        proc.wait()


def bench_concurrent(n: int) -> None:
    from knollm import AsyncClient
    from knollm.query.api import Catalog
    from tests.support.client_fixtures import catalog, model

    proc, root = start_server("groq", chunk_delay=0.002)
    try:
        cat = Catalog(catalog(model("groq", "llama-3.3-70b-versatile")))
        env = {"KNOLLM_GROQ_BASE_URL": root + "/v1", "GROQ_API_KEY": "gsk_bench"}

        async def main() -> tuple[int, list[str], float, float]:
            async with AsyncClient(catalog=cat, env=env, store=False, retries=0, timeout=60, stall_timeout=60) as c:
                async def one() -> str | None:
                    try:
                        parts = [x async for x in c.stream("groq/llama-3.3-70b-versatile", MSG)]
                        return None if parts[-1].content == "".join(parts[:-1]) else "content mismatch"
                    except Exception as e:  # noqa: BLE001 - counted
                        return f"{type(e).__name__}: {e}"

                await one()
                before = rss_mb()
                t = time.perf_counter()
                res = await asyncio.gather(*(one() for _ in range(n)))
                wall = time.perf_counter() - t
                return sum(r is None for r in res), [r for r in res if r], wall, before

        ok, errs, wall, before = asyncio.run(main())
        print(f"\n2. {n} concurrent streaming calls (AsyncClient, server in its own process, 7 chunks each)")
        print(f"   ok {ok}/{n}, errors {len(errs)}{' e.g. ' + errs[0] if errs else ''}")
        print(f"   wall {wall:.2f} s; client RSS {before:.1f} MB before -> {rss_mb():.1f} MB after")
    finally:
        proc.stdin.close()
        proc.wait()


def bench_process(runs: int) -> None:
    from knollm.query.cache import load_query_index

    dumps = os.environ.get("KNOLLM_DUMPS") or (str(ROOT.parent / "shared" / "model_catalog")
                                               if (ROOT.parent / "shared" / "model_catalog").is_dir()
                                               else str(ROOT / "tests" / "fixtures" / "dumps"))
    idx = load_query_index(dumps)  # builds the cache once, like a user's first command
    from knollm.client._providers import provider_facts

    target = "groq/llama-3.3-70b-versatile"
    if target not in idx.by_key:
        target = next(r[0] for r in idx.rows if (provider_facts(r[1]) or (None,))[0] == "openai")
    pid = target.split("/")[0]
    facts = provider_facts(pid)
    proc, root = start_server(pid)
    try:
        import re

        home = str(scratch_dir())
        # bytecode cached like an installed package (outside the worktree); the first run writes it
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update({"PYTHONPYCACHEPREFIX": str(scratch_dir("knollm-pyc-"))})
        env = {**env, "PYTHONPATH": str(ROOT), "KNOLLM_DUMPS": dumps, "KNOLLM_HOME": home,
               f"KNOLLM_{re.sub(r'[^A-Za-z0-9]', '_', pid).upper()}_BASE_URL": root + "/v1"}
        for k in facts.key_env[:1]:
            env[k] = "bench-key"

        def run(cmd: list[str]) -> float:
            t = time.perf_counter()
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            dt = (time.perf_counter() - t) * 1000
            if out.returncode != 0:
                raise SystemExit(f"{cmd} failed: {out.stderr}")
            return dt

        chat = [sys.executable, "-m", "knollm", "chat", target, "hi"]
        run(chat)
        base = [run([sys.executable, "-c", "pass"]) for _ in range(runs)]
        whole = [run(chat) for _ in range(runs)]
        imp = [run([sys.executable, "-c", "import knollm.client.core, httpx2"]) for _ in range(runs)]
        b, w, i = statistics.median(base), statistics.median(whole), statistics.median(imp)
        print(f"\n3. `knollm chat {target} hi` as a whole process to the last token (cached index of {dumps})")
        print(f"   python -c pass        {b:7.1f} ms (median of {runs})")
        print(f"   import client+httpx2  {i:7.1f} ms  (+{i - b:.1f} ms)")
        print(f"   knollm chat           {w:7.1f} ms  ratio {w / b:.1f}x, +{w - b:.1f} ms over the interpreter")
    finally:
        proc.stdin.close()
        proc.wait()


def bench_cache(n: int) -> None:
    """The response cache beside the live call (knollm.client_cache; scripts/bench_cache.py)."""
    print("\n== response cache: uncached call, miss, hit; live vs replayed stream (same loopback server)")
    subprocess.run([sys.executable, str(Path(__file__).with_name("bench_cache.py")), "--n", str(n)], check=False)


def bench_ledger(n: int = 4000, conc: int = 64) -> None:
    from knollm import AsyncClient
    from knollm.client import SQLiteStore
    from knollm.client.http import Reply
    from knollm.query.api import Catalog
    from tests.support.client_fixtures import catalog, model

    answer = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                                      "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 12, "completion_tokens": 5}})

    class Canned:  # an HTTP driver that answers at once (one loop turn, as a socket read would)
        name = "canned"

        async def post(self, url, headers, body, read, connect):  # noqa: ANN001
            await asyncio.sleep(0)
            return Reply(200, {"content-type": "application/json"}, answer)

        async def aclose(self) -> None:
            pass

        @staticmethod
        def classify(e: BaseException) -> None:
            return None

    class OneByOne:  # the same ledger, seen without settle_many: one transaction per call
        def __init__(self, store: SQLiteStore) -> None:
            self._store = store

        def __getattr__(self, name: str):  # noqa: ANN204
            if name == "settle_many":
                raise AttributeError(name)
            return getattr(self._store, name)

    cat = Catalog(catalog(model("groq", "llama-3.3-70b-versatile")))
    env = {"KNOLLM_GROQ_BASE_URL": "http://127.0.0.1:9/v1", "GROQ_API_KEY": "gsk_bench"}
    tmp = scratch_dir()

    async def per_call(store) -> float:  # noqa: ANN001
        c = AsyncClient(catalog=cat, env=env, store=store)
        c._driver = Canned()
        it = iter(range(n))

        async def worker() -> None:
            for _ in it:
                await c.chat("groq/llama-3.3-70b-versatile", MSG)

        await asyncio.gather(*(c.chat("groq/llama-3.3-70b-versatile", MSG) for _ in range(conc)))  # warm
        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        return (time.perf_counter() - t) / n * 1e6

    base = asyncio.run(per_call(False))
    group = asyncio.run(per_call(SQLiteStore(tmp / "group.db")))
    single = asyncio.run(per_call(OneByOne(SQLiteStore(tmp / "single.db"))))
    print(f"\n4. the ledger at concurrency {conc} ({n} AsyncClient calls, canned transport)")
    print(f"   no ledger (baseline)        {base:7.1f} us/call")
    print(f"   SQLite, group commit        {group:7.1f} us/call  (+{group - base:.1f})")
    print(f"   SQLite, one transaction/call {single:6.1f} us/call  (+{single - base:.1f})")


def bench_drivers(n: int = 4000, conc: int = 64) -> None:
    import aiohttp

    from knollm import AsyncClient
    from knollm.query.api import Catalog
    from tests.support.client_fixtures import catalog, model
    from tests.support.gateway_proc import free_port

    port = free_port()
    up = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "bench_upstream.py"), str(port)])
    root = f"http://127.0.0.1:{port}/v1"
    cat = Catalog(catalog(model("groq", "llama-3.3-70b-versatile")))
    env = {"KNOLLM_GROQ_BASE_URL": root, "GROQ_API_KEY": "gsk_bench"}
    body = json.dumps({"model": "llama-3.3-70b-versatile", "messages": MSG}).encode()

    async def drive(one) -> tuple[float, float]:  # noqa: ANN001
        it = iter(range(n))

        async def worker() -> None:
            for _ in it:
                await one()

        await asyncio.gather(*(one() for _ in range(conc)))  # warm: the pool is open
        c0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        return (time.process_time() - c0) / n * 1e6, n / (time.perf_counter() - t0)

    async def bare() -> tuple[float, float]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as s:
            async def one() -> None:
                async with s.post(root + "/chat/completions", data=body,
                                  headers={"content-type": "application/json", "authorization": "Bearer gsk_bench"}) as r:
                    json.loads(await r.read())
            return await drive(one)

    async def client(http: str) -> tuple[float, float]:
        c = AsyncClient(catalog=cat, env=env, store=False, http=http)
        try:
            return await drive(lambda: c.chat("groq/llama-3.3-70b-versatile", MSG))
        finally:
            await c.aclose()

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(root + "/models", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        base = asyncio.run(bare())
        rows = [(h, asyncio.run(client(h))) for h in ("h1", "aiohttp", "httpx2")]
    finally:
        up.kill()
    print(f"\n5. HTTP drivers at concurrency {conc} ({n} calls each, loopback upstream in its own process)")
    print(f"   bare aiohttp post (baseline)   {base[0]:6.0f} us CPU/call  {base[1]:7.0f} calls/s")
    for h, (cpu, rate) in rows:
        label = f"AsyncClient(http={h!r})"
        print(f"   {label:<31}{cpu:6.0f} us CPU/call  {rate:7.0f} calls/s  "
              f"({cpu / base[0]:.2f}x the baseline's CPU)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--concurrent", type=int, default=500)
    ap.add_argument("--runs", type=int, default=9)
    a = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores shared)")
    bench_overhead(a.n)
    bench_concurrent(a.concurrent)
    bench_process(a.runs)
    bench_ledger()
    bench_drivers()
    bench_cache(max(20, a.n // 3))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
