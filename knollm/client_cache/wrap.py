"""Caching around :class:`knollm.Client` / :class:`knollm.AsyncClient`, through their public API.

:class:`CachedClient` (and its twin :class:`AsyncCachedClient`) route with
``client.plan()`` (no call), look the request up for each deployment in the plan's order
(first live entry wins), and on a miss call the client and store the answer under the
provider and model that answered. Hits come back as :class:`CachedResult`: a
:class:`~knollm.client.result.ChatResult` with ``cached=True``, ``cost_usd=0``,
``saved_usd`` (the original call's cost), ``price_source="cache"``; streams replay the
stored text deltas as a stream. Each hit also writes a ledger row (cost 0) the way a
live call does (the client's settle: a ledger that cannot take the row now gets it
from the spool later, and the hit stands), and then the saving goes to the cache's
``hits`` table.

Policy: the cache is used when the call says ``cache=True``, or the wrapper's
``enabled=True`` (global), or the target is an alias listed in ``aliases`` or bound in
the active lockfile with ``cache = true`` / ``cache = <TTL seconds>``, unless the call
says ``cache=False``. A request with ``temperature > 0`` is not cached unless the
call (``cache_sampled=True``) or the wrapper (``sampled=True``) asks for it. TTL: the
call's ``cache_ttl``, else the alias's, else the provider's, else the cache's default.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from knollm.client.result import ChatResult, Usage
from knollm.client_cache.store import CacheEntry, ResponseCache

__all__ = ["CachedClient", "AsyncCachedClient", "CachedResult", "CachePolicy", "CacheHook", "CacheRequest"]


@dataclasses.dataclass
class CachedResult(ChatResult):
    """A :class:`ChatResult` answered from the cache."""

    cached: bool = True
    saved_usd: float | None = None
    cached_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "cached": True, "saved_usd": self.saved_usd, "cached_at": self.cached_at}


@dataclasses.dataclass
class CachePolicy:
    """When to use the cache (see the module docs)."""

    enabled: bool = False
    sampled: bool = False
    aliases: dict[str, float | None] = dataclasses.field(default_factory=dict)  # alias -> TTL (None: default)

    def decide(self, call: bool | None, alias: str | None, params: dict[str, Any],
               sampled: bool | None) -> tuple[bool, str]:
        """``(use the cache, why not)``."""
        if call is False:
            return False, "cache=False"
        if not (call or self.enabled or (alias is not None and alias in self.aliases)):
            return False, "not enabled for this call"
        t = params.get("temperature")
        if t is not None and t > 0 and not (sampled if sampled is not None else self.sampled):
            return False, f"temperature {t} > 0 (pass cache_sampled=True to cache it)"
        return True, ""


@dataclasses.dataclass
class CacheRequest:
    """One call's cache decision: its ``params`` without the cache arguments, whether the
    cache is used (``use``; ``why_not`` otherwise) and the TTL of a new entry."""

    params: dict[str, Any]
    use: bool
    ttl: float | None = None
    why_not: str = ""


class _Recorder:
    """Keeps a live stream's text deltas and its final result (for storing it)."""

    def __init__(self) -> None:
        self.deltas: list[str] = []
        self.result: ChatResult | None = None

    def see(self, x: Any) -> Any:
        if isinstance(x, str):
            self.deltas.append(x)
        else:
            self.result = x
        return x


class CacheHook:
    """What a client calls around its transport: the whole cache protocol in three calls.

    ::

        params, opts = CacheHook.split(params)            # before routing: drop cache=, cache_ttl=, …
        plan = client.plan(target, messages, params)
        req = hook.begin(plan, params, opts)               # policy: enabled? temperature? TTL?
        hit = hook.lookup(plan, messages, req, stream, ledger=client.store, settle=client._settle)
        if hit: return hit[0]          # streams: yield from hit[1]; yield hit[0]
        result = <route, send, account>                    # the client's own flow
        hook.store(req, messages, result, deltas)          # deltas: the stream's pieces, or None
    """

    CALL_ARGS = ("cache", "cache_ttl", "cache_sampled")

    def __init__(self, cache: ResponseCache | None = None, *, enabled: bool = False, sampled: bool = False,
                 aliases: dict[str, float | None] | None = None, lockfile: bool = True) -> None:
        self.cache = cache if cache is not None else ResponseCache()
        self.policy = CachePolicy(enabled, sampled, dict(aliases or {}))
        self.lockfile = lockfile  # an alias whose lockfile binding says ``cache = true | TTL``

    @classmethod
    def split(cls, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(request params, cache options)``: the cache's per-call arguments never reach a provider."""
        p = dict(params)
        return p, {k: p.pop(k) for k in cls.CALL_ARGS if k in p}

    def _lock_setting(self, alias: str | None) -> bool | float | None:
        """The ``cache`` setting of ``alias``'s binding in the active lockfile (None: not set)."""
        if not (self.lockfile and alias) or alias in self.policy.aliases:
            return None
        try:
            from knollm.lock import resolve_alias

            b = resolve_alias(alias)
        except Exception:  # noqa: BLE001 - a lockfile problem is reported by the client, not here
            return None
        return None if b is None else b.cache

    def begin(self, plan: Any, params: dict[str, Any], opts: dict[str, Any]) -> CacheRequest:
        lock = self._lock_setting(plan.alias)
        if lock is not None and opts.get("cache") is None:
            opts = {**opts, "cache": bool(lock)}
            if not isinstance(lock, bool) and opts.get("cache_ttl") is None:
                opts["cache_ttl"] = lock
        use, why = self.policy.decide(opts.get("cache"), plan.alias, params, opts.get("cache_sampled"))
        ttl = opts.get("cache_ttl")
        if not use:
            self.cache.count("bypassed")
        elif ttl is None and plan.alias in self.policy.aliases:
            ttl = self.policy.aliases[plan.alias]
        return CacheRequest(params, use, ttl, why)

    def lookup(self, plan: Any, messages: list[dict], req: CacheRequest, stream: bool,
               ledger: Any = None, settle: Callable[[Any, list], list[bool]] | None = None,
               ) -> tuple[CachedResult, list[str]] | None:
        """The hit (result, stored text deltas) for the first deployment in the plan's order
        that has a live entry, or None (a miss, or the cache is not used). A hit writes a
        ledger row (cost 0) to ``ledger`` (a :class:`knollm.client.store.Store`) through
        ``settle(ledger, [(None, row)])``: the client's own settle (``client._settle``),
        which spools a row the ledger cannot take now, as for a live call (without it:
        ``ledger.settle``). The hit is recorded in the cache only once the row is written
        or spooled."""
        if not req.use:
            return None
        t0 = time.perf_counter()
        seen = set()
        for d in plan.order:
            if (d.provider, d.model) in seen:
                continue
            seen.add((d.provider, d.model))
            e = self.cache.lookup(d.provider, d.model, messages, req.params)
            if e is not None:
                return self._hit(plan, e, stream, (time.perf_counter() - t0) * 1000, ledger, settle), e.deltas
        self.cache.count("misses")
        return None

    def _hit(self, plan: Any, e: CacheEntry, stream: bool, ms: float, ledger: Any,
             settle: Callable[[Any, list], list[bool]] | None = None) -> CachedResult:
        u = e.usage
        rid = uuid.uuid4().hex
        res = CachedResult(
            content=e.content, provider=e.provider, model=e.model, key=None, target=plan.target,
            finish_reason=e.finish_reason, tool_calls=e.tool_calls,
            usage=Usage(u.get("input_tokens", 0), u.get("output_tokens", 0), u.get("cached_tokens", 0),
                        u.get("cache_write_tokens", 0), bool(u.get("estimated"))),
            cost_usd=0.0, price_source="cache", ttft_ms=round(ms, 3), duration_ms=round(ms, 3), attempts=[],
            candidates=plan.candidates, strategy=plan.strategy,
            why=f"cache hit (stored {time.time() - e.created:.0f}s ago)", alias=plan.alias, request_id=rid,
            response_id=e.response_id, saved_usd=e.cost_usd, cached_at=e.created, tag=getattr(plan, "tag", None),
        )
        if ledger is not None:
            row = {
                "request_id": rid, "ts": time.time(), "target": str(plan.target), "alias": plan.alias,
                "provider": e.provider, "model": e.model, "key_label": None, "stream": int(stream),
                "input_tokens": res.usage.input_tokens, "output_tokens": res.usage.output_tokens,
                "cached_tokens": res.usage.cached_tokens, "cache_write_tokens": res.usage.cache_write_tokens,
                "usage_estimated": int(res.usage.estimated), "cost_usd": 0.0, "price_source": "cache",
                "unpriced_reason": None, "ttft_ms": res.ttft_ms, "duration_ms": res.duration_ms, "attempts": 0,
                "saved_usd": e.cost_usd, "tag": res.tag,
            }
            if settle is not None:
                settle(ledger, [(None, row)])
            else:
                ledger.settle(None, row)
        self.cache.record_hit(e.provider, e.model, e.cost_usd, rid)  # after the row is written or spooled
        return res

    def store(self, req: CacheRequest, messages: list[dict], res: ChatResult | None,
              deltas: list[str] | None = None) -> bool:
        """Store a live answer under the provider and model that gave it (when the cache is used)."""
        if not req.use or res is None:
            return False
        u = res.usage
        return self.cache.store(CacheEntry(
            res.provider, res.model, res.content, res.finish_reason, res.tool_calls,
            {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens, "cached_tokens": u.cached_tokens,
             "cache_write_tokens": u.cache_write_tokens, "estimated": u.estimated},
            deltas if deltas is not None else ([res.content] if res.content else []),
            res.cost_usd, res.price_source, res.response_id), messages, req.params, ttl=req.ttl)


def _why_not_stored(cache: ResponseCache, req: CacheRequest, res: ChatResult) -> str:
    life = cache.ttl_for(res.provider, req.ttl)
    if life is not None and life <= 0:
        return f"TTL {life:g} <= 0"
    return "the cache did not take it (see the CacheWarning)"


class _CacheBase:
    def __init__(self, client: Any, cache: ResponseCache | None = None, *, enabled: bool = False,
                 sampled: bool = False, aliases: dict[str, float | None] | None = None,
                 ledger: bool = True) -> None:
        self.client = client
        self.hook = CacheHook(cache, enabled=enabled, sampled=sampled, aliases=aliases)
        self.cache = self.hook.cache
        self.ledger = ledger

    def _begin(self, target: Any, messages: list[dict], params: dict,
               stream: bool) -> tuple[CacheRequest, tuple[CachedResult, list[str]] | None]:
        p, opts = CacheHook.split(params)
        plan = self.client.plan(target, messages, p)
        req = self.hook.begin(plan, p, opts)
        ledger = getattr(self.client, "store", None) if self.ledger else None
        return req, self.hook.lookup(plan, messages, req, stream, ledger, getattr(self.client, "_settle", None))


class CachedClient(_CacheBase):
    """``CachedClient(Client(...), ResponseCache(...), enabled=…, sampled=…, aliases=…)``:
    ``chat(target, messages, cache=None, cache_ttl=None, cache_sampled=None, **params)`` and
    ``stream(…)`` like the client's, with the cache in front."""

    def chat(self, target: Any, messages: list[dict], **params: Any) -> ChatResult:
        return self._chat(target, messages, params)[0]

    def _chat(self, target: Any, messages: list[dict], params: dict[str, Any]) -> tuple[ChatResult, str, str]:
        """``(result, what the cache did, why)``: ``hit``, ``stored``, ``bypassed`` (why:
        the policy's reason) or ``not stored`` (why: the store did not take it)."""
        req, hit = self._begin(target, messages, params, False)
        if hit is not None:
            return hit[0], "hit", ""
        res = self.client.chat(target, messages, **req.params)
        if not req.use:
            return res, "bypassed", req.why_not
        if self.hook.store(req, messages, res):
            return res, "stored", ""
        return res, "not stored", _why_not_stored(self.cache, req, res)

    def stream(self, target: Any, messages: list[dict], **params: Any) -> Iterator[str | ChatResult]:
        """Text deltas, then the result (a hit replays the stored deltas)."""
        req, hit = self._begin(target, messages, params, True)
        if hit is not None:
            yield from hit[1]
            yield hit[0]
            return
        rec = _Recorder()
        for x in self.client.stream(target, messages, **req.params):
            yield rec.see(x)
        self.hook.store(req, messages, rec.result, rec.deltas)

    def __enter__(self) -> CachedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.cache.close()


class AsyncCachedClient(_CacheBase):
    """The asyncio twin: ``await chat(…)``, ``async for x in stream(…)``."""

    async def chat(self, target: Any, messages: list[dict], **params: Any) -> ChatResult:
        req, hit = self._begin(target, messages, params, False)
        if hit is not None:
            return hit[0]
        res = await self.client.chat(target, messages, **req.params)
        self.hook.store(req, messages, res)
        return res

    async def stream(self, target: Any, messages: list[dict], **params: Any) -> AsyncIterator[str | ChatResult]:
        req, hit = self._begin(target, messages, params, True)
        if hit is not None:
            for d in hit[1]:
                yield d
            yield hit[0]
            return
        rec = _Recorder()
        async for x in self.client.stream(target, messages, **req.params):
            yield rec.see(x)
        self.hook.store(req, messages, rec.result, rec.deltas)

    async def __aenter__(self) -> AsyncCachedClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        self.cache.close()

