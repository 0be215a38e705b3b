"""One process of the cross-process budget test: N concurrent calls under one budget.

    python -m tests.support.budget_worker DB BASE_URL LIMIT N
prints ``{"ok": n, "refused": n, "other": [...]}``.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor

from knollm import BudgetExceeded, Client
from knollm.client import Budget, SQLiteStore
from knollm.query.api import Catalog
from tests.support.client_fixtures import catalog, model


def main() -> None:
    db, base, limit, n = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    c = Client(catalog=Catalog(catalog(model("groq", "llama-3.3-70b-versatile"))), store=SQLiteStore(db),
               env={"KNOLLM_GROQ_BASE_URL": base, "GROQ_API_KEY": "gsk_worker_SECRET_9999"},
               budgets=[Budget(limit, "total", provider="groq")], retries=0)
    out = {"ok": 0, "refused": 0, "other": []}

    def one(_: int) -> str:
        try:
            c.chat("groq/llama-3.3-70b-versatile", [{"role": "user", "content": "hi there"}], max_tokens=30)
            return "ok"
        except BudgetExceeded:
            return "refused"
        except Exception as e:  # noqa: BLE001 - reported to the test
            return f"{type(e).__name__}: {e}"

    with ThreadPoolExecutor(n) as ex:
        for r in ex.map(one, range(n)):
            if r in ("ok", "refused"):
                out[r] += 1
            else:
                out["other"].append(r)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
