"""Call any catalog model through one API: routing, fallback, streaming, real cost.

    from knollm import Client
    client = Client()
    r = client.chat("groq/llama-3.3-70b-versatile", [{"role": "user", "content": "Hi"}])
    r.content, r.provider, r.usage, r.cost_usd, r.attempts, r.why
    for x in client.stream("llama-3.3-70b-instruct", messages):   # a canonical id: any provider
        print(x if isinstance(x, str) else "", end="")
    client.chat.completions.create(model=..., messages=...)       # OpenAI-shaped
    client.embed("openai/text-embedding-3-small", ["a", "b"]).vectors  # embeddings, routed the same way

Modules: :mod:`~knollm.client.transports` (wire formats), :mod:`~knollm.client.routing`
(targets, deployments, filters, strategies, circuit breaker, rate limits),
:mod:`~knollm.client.engine` (retry/fallback/accounting flow), :mod:`~knollm.client.store`
(ledger + budgets), :mod:`~knollm.client.spool` (rows the ledger could not take yet),
:mod:`~knollm.client.accounting` (tokens and cost),
:mod:`~knollm.client.http` (the HTTP drivers: httpx2, and aiohttp for ``AsyncClient`` when
installed), imported on the first call, not on import.
"""

from __future__ import annotations

from knollm.client.core import AsyncClient, Client
from knollm.client.result import ChatResult, EmbeddingResult, Usage
from knollm.client.routing import STRATEGIES
from knollm.client.spool import LedgerWarning
from knollm.client.store import Budget, SQLiteStore, Store

__all__ = ["Client", "AsyncClient", "ChatResult", "EmbeddingResult", "Usage", "Budget", "Store", "SQLiteStore", "STRATEGIES",
           "LedgerWarning"]
