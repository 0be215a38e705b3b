"""One process of the two-process cache test: N chats over 6 prompts (each twice per 12),
through a CachedClient sharing CACHE_DB; prints {"hits", "misses", "errors"} as JSON."""

from __future__ import annotations

import json
import os
import sys

from knollm.client import Client, SQLiteStore
from knollm.client_cache import CachedClient, ResponseCache
from knollm.query.api import Catalog


def main(n: int) -> int:
    env = {**json.loads(os.environ["SERVERS"])}
    c = Client(catalog=Catalog(json.loads(os.environ["CATALOG"])), env=env, store=SQLiteStore(os.environ["LEDGER_DB"]),
               backoff_base=0.01)
    hits = misses = errors = 0
    with CachedClient(c, ResponseCache(os.environ["CACHE_DB"]), enabled=True) as cc:
        for i in range(n):
            try:
                r = cc.chat(os.environ["TARGET"], [{"role": "user", "content": f"prompt {i % 6}"}])
            except Exception as e:  # noqa: BLE001 - counted and reported
                print(repr(e), file=sys.stderr)
                errors += 1
                continue
            if getattr(r, "cached", False):
                hits += 1
            else:
                misses += 1
    print(json.dumps({"hits": hits, "misses": misses, "errors": errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
