"""Benchmark budget checks against the size of the ledger (not a test: it prints figures).

    python scripts/bench_budget.py [--sizes 10000,100000,1000000] [--checks 200] [--url URL]

A ledger (a new SQLite file, or the scratch PostgreSQL database ``--url`` names: the rows
stay there) is filled with
rows spread over 60 days, 4 providers, 3 aliases and 2 tags. At each size it times:

* a budget check as every call under a budget makes it: ``reserve`` (the period's spend
  from the ``spend`` running totals, plus the live holds, then the new hold) and
  ``release``, with a monthly budget on one provider;
* the baseline, on the same ledger in the same run: the query budgets ran before the
  running totals existed, ``SUM(cost_usd)`` over the period's rows of ``calls``;
* what the totals cost on the write path: ``settle_many`` of 16 rows (one group commit)
  per row, with the trigger that keeps the totals and without it (dropped on a copy of
  the same ledger, SQLite only);
* a gateway key's budget per call: ``KeyStore.reserve`` + ``settle`` (a hold row that
  expires, in a transaction locking the key's row) against the single conditional
  ``UPDATE`` pair it replaced (baseline: holds that never expire), SQLite only.

Prints the medians and the ratios. The numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from knollm.client.result import new_id  # noqa: E402
from knollm.client.store import Budget, SQLiteStore, period_start  # noqa: E402

PROVIDERS = ("groq", "openai", "anthropic", "cerebras")
ALIASES = ("fast", "smart", None)
TAGS = ("key:ci", None)


def _rows(n: int, now: float, start: int) -> list[tuple[None, dict]]:
    out = []
    for i in range(start, start + n):
        out.append((None, {"request_id": new_id(), "ts": now - (i % 60) * 86400 - (i % 997), "target": "t",
                           "provider": PROVIDERS[i % 4], "alias": ALIASES[i % 3], "model": "m",
                           "key_label": "K", "tag": TAGS[i % 2], "stream": 0, "input_tokens": 100,
                           "output_tokens": 20, "cost_usd": 1e-5 * (1 + i % 7), "price_source": "bench",
                           "attempts": 1}))
    return out


def _fill(store, n: int, now: float, start: int) -> None:  # noqa: ANN001
    rows = _rows(n, now, start)
    for i in range(0, n, 5000):
        store.settle_many(rows[i:i + 5000])


def _median_us(fn, n: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def _scan_sum(store, budget: Budget, now: float) -> float:  # noqa: ANN001
    """The query a budget check ran before the running totals: every row of the period."""
    sql = "SELECT COALESCE(SUM(cost_usd), 0) FROM calls WHERE ts >= ? AND provider = ?"
    args = (period_start(budget.period, now), budget.provider)
    if isinstance(store, SQLiteStore):
        return store._db.execute(sql, args).fetchone()[0]
    return store.db.execute(sql, args)[0][0]


def _settle_us(store, now: float, batches: int = 60) -> float:  # noqa: ANN001
    """CPU time per row of settle_many in batches of 16 (one group commit each)."""
    rows = _rows(16 * batches, now, 7)
    for _, r in rows:  # new calls: now, as the ledger gets them
        r["ts"] = time.time()
    t = time.process_time()
    for i in range(batches):
        store.settle_many(rows[16 * i:16 * (i + 1)])
    return (time.process_time() - t) / (16 * batches) * 1e6


def _interleaved(fa, fb, rounds: int) -> tuple[float, float]:  # noqa: ANN001
    """The medians of ``fa()`` and ``fb()`` measured in turn, ``rounds`` times each."""
    a, b = [], []
    for _ in range(rounds):
        a.append(fa())
        b.append(fb())
    return statistics.median(a), statistics.median(b)


def _key_holds(tmp: Path, n: int = 2000) -> None:
    from knollm.gateway.keys import KeyStore

    ks = KeyStore(f"sqlite:///{tmp / 'keys.db'}")
    key, _ = ks.create("bench", budget_usd=1e9)

    def holds() -> None:
        ks.settle(key.id, ks.reserve(key.id, 0.01, 660), 0.005)

    def update() -> None:  # what a key's budget ran before: one conditional UPDATE, one settle
        ks.db.rowcount("UPDATE gateway_keys SET reserved_usd = reserved_usd + ? WHERE id = ? AND "
                       "(budget_usd IS NULL OR spent_usd + reserved_usd + ? <= budget_usd + 1e-12)",
                       (0.01, key.id, 0.01))
        ks.db.execute("UPDATE gateway_keys SET reserved_usd = reserved_usd - ?, spent_usd = spent_usd + ? "
                      "WHERE id = ?", (0.01, 0.005, key.id))

    h, u = _interleaved(lambda: _median_us(holds, n), lambda: _median_us(update, n), 3)
    print(f"gateway key budget, reserve + settle per call: {h:.0f} us with expiring holds, "
          f"{u:.0f} us with the conditional UPDATE (baseline): ratio {h / u:.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000", help="ledger sizes (rows), comma-separated")
    ap.add_argument("--checks", type=int, default=200, help="budget checks timed at each size")
    ap.add_argument("--url", default=None,
                    help="a scratch postgresql:// database to fill and time (default: a new SQLite file)")
    args = ap.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="knollm-bench-budget-"))
    if args.url:
        from knollm.gateway.pgstore import PostgresStore

        store = PostgresStore(args.url)
        where = "PostgreSQL"
    else:
        store = SQLiteStore(tmp / "ledger.db")
        where = "SQLite (WAL)"
    now = time.time()
    budget = Budget(1e12, "month", provider="groq")
    scope = {"provider": "groq", "alias": "fast", "key_label": "K", "tag": None}

    def check() -> None:
        rid, refused = store.reserve([budget], scope, 0.01)
        assert rid and refused is None
        store.release(rid)

    print(f"budget checks on a {where} ledger: a monthly budget on one provider, {args.checks} checks per size")
    print(f"{'rows':>9} {'check (running totals)':>24} {'baseline (sum of rows)':>24} {'ratio':>8}")
    filled = 0
    try:
        for n in sizes:
            _fill(store, n - filled, now, filled)
            filled = n
            new = _median_us(check, args.checks)
            old = _median_us(lambda: _scan_sum(store, budget, now), max(5, min(args.checks, 2_000_000 // n)))
            assert abs(store.spent(budget) - _scan_sum(store, budget, now)) < 1e-6  # the same answer
            print(f"{n:9d} {new:21.0f} us {old:21.0f} us {new / old:8.4f}")
        if not args.url:
            store.close()
            bare = tmp / "no-trigger.db"
            shutil.copy(tmp / "ledger.db", bare)
            import sqlite3

            with sqlite3.connect(bare) as con:
                con.execute("DROP TRIGGER calls_spend")
            a, b = SQLiteStore(tmp / "ledger.db"), SQLiteStore(bare)
            w, wo = _interleaved(lambda: _settle_us(a, now), lambda: _settle_us(b, now), 5)
            print(f"settle_many, 16 rows a commit, CPU per row: {w:.1f} us with the totals' trigger, "
                  f"{wo:.1f} us without (baseline): ratio {w / wo:.2f}")
            _key_holds(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
