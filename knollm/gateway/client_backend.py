"""The production :class:`~knollm.gateway.backend.Backend`: :class:`knollm.AsyncClient`.

Also maps the client's errors (:class:`knollm.errors.ClientError` and its subclasses) to
HTTP statuses and OpenAI error types (:func:`map_client_error`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable
from typing import Any

from knollm.client.result import new_id
from knollm.client.transports import ANTHROPIC_NATIVE, Native
from knollm.errors import ClientError, GatewayError, KnollmError
from knollm.gateway.backend import Outcome

__all__ = ["ClientBackend", "map_client_error"]


def _names(exc: BaseException) -> set[str]:
    return {c.__name__ for c in type(exc).__mro__}


def _retry_after(err: Any) -> dict[str, str]:
    """A ``Retry-After`` header for the caller when the provider that failed last asked for
    one (its 429 or 503 said when to come back, later than the gateway waits itself): whole
    seconds, at least 1. The SDKs wait that long before their own retry (the openai SDK up
    to 60 s) instead of their shorter default backoff."""
    seconds = getattr(err, "retry_after", None)
    if not isinstance(seconds, (int, float)) or seconds != seconds or seconds <= 0:
        return {}
    return {"retry-after": str(max(1, math.ceil(min(seconds, 86400.0))))}


#: on a 504: the call timed out after the gateway's own retries and fallbacks, and a call
#: that timed out may still have run (and been billed) at the provider. The openai and
#: anthropic SDKs retry a 5xx twice by default; this header tells them not to, so one
#: caller's request is never paid for three times over.
NO_SDK_RETRY = {"x-should-retry": "false"}


def map_client_error(exc: KnollmError) -> GatewayError:
    """A client error as the gateway error sent back (status, ``error.type``, code)."""
    names = _names(exc)
    msg = str(exc)
    if "BudgetExceeded" in names:
        return GatewayError(msg, status=429, type="insufficient_quota", code="budget_exceeded")
    if "NotFoundError" in names:
        return GatewayError(msg, status=404, type="not_found_error", code="model_not_found")
    if "NoCandidates" in names:
        return GatewayError(msg, status=400, type="invalid_request_error", code="no_candidates")
    if "StreamInterrupted" in names:
        return GatewayError(msg, status=502, type="upstream_error", code="stream_interrupted")
    last = getattr(exc, "last", None) if "AllAttemptsFailed" in names else exc
    status = getattr(last, "status", None)
    kind = str(getattr(last, "kind", "") or "")
    if "AllAttemptsFailed" in names or "ProviderError" in names:
        if status in (400, 413, 422) or kind in ("bad_request", "context_length"):
            return GatewayError(msg, status=400, type="invalid_request_error", code=kind or "upstream_bad_request")
        wait = _retry_after(last)
        if status == 429:
            return GatewayError(msg, status=429, type="rate_limit_error", code="upstream_rate_limited", headers=wait)
        if kind == "timeout":
            return GatewayError(msg, status=504, type="timeout", code="upstream_timeout", headers=NO_SDK_RETRY)
        return GatewayError(msg, status=502, type="upstream_error", code=kind or "upstream_error", headers=wait)
    if "CatalogError" in names or "RegistryError" in names:
        return GatewayError(msg, status=503, type="server_error", code="catalog_unavailable")
    return GatewayError(msg, status=500, type="server_error", code=type(exc).__name__)


# not passed on as request parameters; ``tag`` (the ledger's caller tag) is set by the
# gateway from the caller's key, never taken from the request body
_NOT_PARAMS = ("model", "messages", "stream", "stream_options", "tag")


_new = object.__new__


def _outcome_of(res: Any) -> Outcome:
    u = res.usage
    o = _new(Outcome)  # (as engine._finish makes its result: no keyword dict)
    o.__init__(provider=res.provider, model=res.model, cost_usd=res.cost_usd, price_source=res.price_source,
                   unpriced_reason=res.unpriced_reason, input_tokens=u.input_tokens, output_tokens=u.output_tokens,
                   cached_tokens=u.cached_tokens, attempts=list(res.attempts),
                   ttft_s=None if getattr(res, "ttft_ms", None) is None else res.ttft_ms / 1000,
                   duration_s=res.duration_ms / 1000, request_id=res.request_id or None,
                   served=True)
    return o


def _charge(o: Outcome, interrupted: Any) -> None:
    """Fill ``o`` from an interrupted stream's ledger row: what the provider bills for it."""
    row = getattr(interrupted, "row", None)
    if not row:
        return
    o.provider, o.model = row["provider"], row["model"]
    o.cost_usd, o.price_source, o.unpriced_reason = row["cost_usd"], row["price_source"], row["unpriced_reason"]
    o.input_tokens, o.output_tokens, o.cached_tokens = row["input_tokens"], row["output_tokens"], row["cached_tokens"]
    o.ttft_s = None if row["ttft_ms"] is None else row["ttft_ms"] / 1000
    o.request_id = row.get("request_id")
    o.served = o.interrupted = True


def _with_outcome(exc: BaseException, outcome: Outcome | None = None) -> BaseException:
    """Attach what is known (attempts) to a client error for the gateway's headers."""
    if outcome is None:
        outcome = Outcome(attempts=list(getattr(exc, "attempts", None) or []))
    exc.outcome = outcome  # type: ignore[attr-defined]
    return exc


def _cancelled(exc: asyncio.CancelledError) -> None:
    """Attach to a call's cancellation (the gateway's time limit passed, or its caller left)
    the attempts the client says it made (``exc.attempts``: the failed ones, and the one in
    flight, whose provider got the request), as :func:`_with_outcome` does for a client
    error: a 504 says how many requests the providers got, and the metrics count them."""
    attempts = getattr(exc, "attempts", None)
    if attempts is not None:
        exc.outcome = Outcome(attempts=list(attempts))  # type: ignore[attr-defined]


def _chunk(rid: str, created: int, model: str, delta: dict[str, Any] | None, finish: str | None = None,
           usage: dict[str, Any] | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                         "choices": [] if delta is None else
                         [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
    if usage is not None:
        d["usage"] = usage
    return d


class _ClientStream:
    """Batches of OpenAI ``chat.completion.chunk`` dicts from the client's stream: one batch
    per network read of the upstream (text merged into one chunk, tool-call deltas as they
    arrive), then the finish reason and the usage of the final :class:`ChatResult`."""

    def __init__(self, client: Any, target: Any, messages: list[dict], params: dict[str, Any]) -> None:
        self.outcome = Outcome()
        self._source = client.stream(target, messages, **params)
        # a Messages caller (``/v1/messages``) gets an Anthropic answer's own blocks as they
        # came (thinking, a server tool's); any other caller its text and tool calls only
        self._native = ANTHROPIC_NATIVE in params
        self._it = self._run()

    def __aiter__(self) -> _ClientStream:
        return self

    def __anext__(self) -> Awaitable[list[dict[str, Any]]]:
        return self._it.__anext__()  # (the generator's own awaitable: no coroutine layer per batch)

    async def aclose(self) -> None:
        await self._it.aclose()

    async def _run(self) -> Any:
        rid, created = f"chatcmpl-{new_id()}", int(time.time())
        src, o = self._source, self.outcome
        first = True
        res = None
        native: list[dict[str, Any]] | None = None  # the events of the last native chunk, once there is one
        native_chunk: dict[str, Any] | None = None
        events = src.events()
        # the output of a provider stream that has ended waits for the result (the call
        # settling: one loop turn) and leaves with the final chunks, in one write
        pending: list[dict[str, Any]] = []
        try:
            async for ev in events:
                if type(ev) is not list:
                    res = ev
                    continue
                if first:  # who serves it is known once output flows: the gateway's headers say so
                    o.provider, o.model, o.attempts = src.serving["provider"], src.serving["model"], src.attempts
                out, text = [], []
                for x in ev:
                    if type(x) is str:
                        if native is None:  # (once an answer's blocks come as they came, its text is in them)
                            text.append(x)
                        continue
                    if text:
                        out.append(_chunk(rid, created, o.model or "", _delta(first, content="".join(text))))
                        first, text = False, []
                    if type(x) is Native:  # an Anthropic answer's block events, as they came: one chunk a run
                        if not self._native:  # (not a Messages caller: its text and calls come as usual)
                            continue
                        if native is None or not out or out[-1] is not native_chunk:
                            native = []
                            native_chunk = _chunk(rid, created, o.model or "", None)
                            native_chunk[ANTHROPIC_NATIVE] = {"events": native}
                            out.append(native_chunk)
                        native.append(x)
                        continue
                    if native is not None:  # (a call's copy: its blocks came as they came)
                        continue
                    out.append(_chunk(rid, created, o.model or "", _delta(first, tool_calls=[x])))
                    first = False
                if text:
                    out.append(_chunk(rid, created, o.model or "", _delta(first, content="".join(text))))
                    first = False
                if src.ended:
                    pending += out
                    continue
                yield out
        except ClientError as e:
            o.attempts = src.attempts
            if src.serving and not o.provider:
                o.provider, o.model = src.serving["provider"], src.serving["model"]
            _charge(o, e)
            err = _with_outcome(e, o)
            if pending:  # what the provider gave still leaves before the error
                yield pending
            raise err from None
        except BaseException as e:  # the gateway's client left (closed, cancelled), or a failure: settled now
            await events.aclose()
            o.attempts = src.attempts
            _charge(o, src.interrupted)
            if pending and isinstance(e, Exception):  # (a client that left gets nothing more)
                yield pending
            raise
        if res is None:  # pragma: no cover - the client always ends with its result
            return
        self.outcome = _outcome_of(res)
        end = _chunk(rid, created, res.model, {"role": "assistant"} if first else {}, res.finish_reason or "stop")
        refusal = getattr(res.finish_reason, "refusal", None) if type(res.finish_reason) is not str else None
        if refusal is not None:  # an OpenAI-compatible provider's delta.refusal, given whole
            end["choices"][0]["delta"]["refusal"] = refusal
        last = _chunk(rid, created, res.model, None, usage=res.openai_usage())
        if res.blocks is not None and self._native:  # (an Anthropic answer's blocks: its usage counts the searches)
            last[ANTHROPIC_NATIVE] = {"server_tool_use": {"web_search_requests": res.usage.web_searches}}
        yield pending + [end, last]


# what Anthropic's count_tokens takes of a Messages request (model is the deployment's)
_COUNT_FIELDS = ("messages", "system", "tools", "tool_choice", "thinking")


def _input_tokens(text: str) -> int | None:
    """``input_tokens`` of a count_tokens answer, or None."""
    import json

    try:
        n = json.loads(text).get("input_tokens")
    except (ValueError, AttributeError):
        return None
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else None


def _delta(first: bool, **fields: Any) -> dict[str, Any]:
    """A chunk's delta; the first one names the role (and, opening with tool calls, no content)."""
    if not first:
        return fields
    head: dict[str, Any] = {"role": "assistant"}
    if "tool_calls" in fields:
        head["content"] = None
    return {**head, **fields}


class ClientBackend:
    """Routes gateway requests through a :class:`knollm.AsyncClient`."""

    def __init__(self, client: Any, *, lock: str | None = None) -> None:
        self.client = client
        self.lock = lock
        self._models: tuple[float, list[dict[str, Any]]] | None = None

    @classmethod
    def from_env(cls, **client_kwargs: Any) -> ClientBackend:
        """A client configured from the environment:

        * the store named by ``$KNOLLM_DATABASE_URL`` (PostgreSQL or SQLite),
        * the lockfile ``$KNOLLM_LOCK`` (aliases),
        * the catalog file ``$KNOLLM_CATALOG`` (a built catalog JSON; default: the cached
          catalog of ``$KNOLLM_DUMPS``),
        * ``$KNOLLM_GATEWAY_CLIENT_OPTIONS``: a JSON object of :class:`knollm.AsyncClient`
          keyword arguments (``retries``, ``timeout``, ``strategy``, ``breaker``, …;
          ``budgets`` as a list of :class:`knollm.client.Budget` fields)."""
        import json
        import os

        from knollm.client import AsyncClient, Budget
        from knollm.gateway.pgstore import open_store

        raw = os.environ.get("KNOLLM_GATEWAY_CLIENT_OPTIONS")
        try:
            opts = json.loads(raw) if raw else {}
        except ValueError as e:
            raise GatewayError(f"KNOLLM_GATEWAY_CLIENT_OPTIONS is not JSON: {e}", status=500,
                               type="server_error") from None
        if not isinstance(opts, dict):
            raise GatewayError("KNOLLM_GATEWAY_CLIENT_OPTIONS must be a JSON object", status=500, type="server_error")
        if "budgets" in opts:
            opts["budgets"] = [Budget(**b) for b in opts["budgets"]]
        catalog = os.environ.get("KNOLLM_CATALOG")
        if catalog:
            import orjson

            from knollm.errors import CatalogError

            try:
                opts["catalog"] = orjson.loads(open(catalog, "rb").read())
            except (OSError, orjson.JSONDecodeError) as e:
                raise CatalogError(f"{catalog}: cannot read the catalog: {e}") from None
        client = AsyncClient(store=open_store(), **{**opts, **client_kwargs})
        return cls(client, lock=os.environ.get("KNOLLM_LOCK"))

    def spooled(self) -> int | None:
        """Ledger rows waiting in the spool (calls answered while the ledger store failed;
        :mod:`knollm.client.spool`), or None without a ledger."""
        from knollm.client.spool import legacy_spool, spool_path, waiting

        store = self.client.store
        if store is None:
            return None
        legacy = legacy_spool(store)  # (the default ledger also replays the shared spool of earlier versions)
        return waiting(spool_path(store)) + (waiting(legacy) if legacy is not None else 0)

    @staticmethod
    def _split(body: dict[str, Any], targets: list[str]) -> tuple[Any, list[dict], dict[str, Any]]:
        target: Any = targets[0] if len(targets) == 1 else list(targets)
        return target, body["messages"], {k: v for k, v in body.items() if k not in _NOT_PARAMS}

    async def complete(self, body: dict[str, Any], *, targets: list[str], tag: str | None = None
                       ) -> tuple[dict[str, Any], Outcome]:
        target, messages, params = self._split(body, targets)
        try:
            res = await self.client.chat(target, messages, **params, tag=tag)
        except ClientError as e:
            raise _with_outcome(e) from None
        except asyncio.CancelledError as e:  # the cancellation goes on, with the attempts made
            _cancelled(e)
            raise
        resp = res.model_dump(knollm=False)  # the gateway adds its own knollm object
        if res.blocks is not None and ANTHROPIC_NATIVE in body:  # an Anthropic answer's own blocks: /v1/messages gives them
            resp[ANTHROPIC_NATIVE] = {"content": res.blocks,
                                      "server_tool_use": {"web_search_requests": res.usage.web_searches}}
        return resp, _outcome_of(res)

    async def embed(self, body: dict[str, Any], *, targets: list[str], tag: str | None = None
                    ) -> tuple[dict[str, Any], Outcome]:
        """An OpenAI ``CreateEmbeddingResponse`` for a checked embeddings body
        (:func:`~knollm.gateway.translate.validate_embeddings_request`): vectors as floats or
        base64 float32, as the caller's ``encoding_format`` asks."""

        target: Any = targets[0] if len(targets) == 1 else list(targets)
        params = {"dimensions": body["dimensions"]} if "dimensions" in body else {}
        try:
            res = await self.client.embed(target, body["input"], **params, tag=tag)
        except ClientError as e:
            raise _with_outcome(e) from None
        except asyncio.CancelledError as e:
            _cancelled(e)
            raise
        return res.model_dump(knollm=False, encoding_format=body["encoding_format"]), _outcome_of(res)

    def stream(self, body: dict[str, Any], *, targets: list[str], tag: str | None = None) -> _ClientStream:
        target, messages, params = self._split(body, targets)
        return _ClientStream(self.client, target, messages, {**params, "tag": tag})

    async def count_tokens(self, body: dict[str, Any], *, targets: list[str], native: dict[str, Any] | None = None
                           ) -> tuple[dict[str, Any], Outcome]:
        """The input tokens of a Messages request on the deployment that would serve it
        first, as Anthropic's ``{"input_tokens": N}`` plus a ``knollm`` object saying whose
        count it is (``source``: ``provider`` or ``estimate``, with the ``reason``).

        An Anthropic-API deployment counts them itself (``POST /v1/messages/count_tokens``,
        free): ``native``, the caller's own Anthropic body (system, messages, tools,
        tool_choice, thinking), goes there with the deployment's model id. Any other
        deployment, or a count that fails (429, 5xx, no such endpoint, the network), gets
        Knollm's estimate, the one its budgets use (about 4 characters a token, 85 an
        image, 4 a message, the tool schemas). A request the provider rejects as invalid
        (400, 413, 422) raises, as the call itself would. Nothing is billed or written to
        the ledger."""
        from knollm.client.accounting import prompt_tokens
        from knollm.client.transports import classify_error

        target, messages, params = self._split(body, targets)
        try:
            plan = self.client.plan(target, messages, params)
        except ClientError as e:
            raise _with_outcome(e) from None
        d = plan.order[0]
        o = Outcome(provider=d.provider, model=d.model, attempts=plan.attempts)
        reason = f"{d.provider}'s API has no token count: Knollm's estimate"
        if d.shape == "anthropic" and native is not None:
            payload = {k: native[k] for k in _COUNT_FIELDS if k in native}
            payload["model"] = d.model
            t0 = time.perf_counter()
            try:
                st = self.client.settings  # a count is quick: at most 30 s, less if calls get less
                r = await self.client.http.post(d.base_url.rstrip("/") + "/messages/count_tokens",
                                                d.request_headers(), payload, min(30.0, st.timeout),
                                                st.connect_timeout)
            except Exception as e:  # noqa: BLE001 - the network: the estimate instead
                plan.record_attempt(d, None, e, t0)
                reason = f"{d.provider}'s token count failed ({type(e).__name__}): Knollm's estimate"
            else:
                n = _input_tokens(r.text) if r.status == 200 else None
                if n is not None:
                    plan.record_attempt(d, 200, None, t0)
                    return {"input_tokens": n, "knollm": {"source": "provider", "provider": d.provider,
                                                          "model": d.model, "reason": None}}, o
                err = classify_error(d.provider, r.status, r.text) if r.status != 200 else \
                    ValueError("the answer has no input_tokens")
                plan.record_attempt(d, r.status, err, t0)
                if r.status in (400, 413, 422):
                    raise _with_outcome(err, o) from None
                reason = f"{d.provider}'s token count failed ({r.status}): Knollm's estimate"
        return {"input_tokens": prompt_tokens(plan.messages, plan.params),
                "knollm": {"source": "estimate", "provider": d.provider, "model": d.model, "reason": reason}}, o

    def deployments(self, target: str) -> tuple[bool, list[str]]:
        """What ``target`` routes to: whether it names a model (a lockfile alias, or a
        canonical id exactly as written: any of the model's deployments may serve it), and
        the catalog keys (``provider/model``) of the deployments it resolves to."""
        offers, meta = self.client.router.offers(target)
        named = meta.get("alias") is not None or any(o.canonical == target for o in offers)
        return named, [o.key for o in offers]

    def worst_case_usd(self, body: dict[str, Any], targets: list[str], op: str = "chat") -> float | None:
        """The most the call can cost on any candidate (None if one is unpriced); ``op="embed"``:
        an embeddings body."""
        from knollm.client.accounting import worst_case_cost

        plan = self._plan(body, targets, op)
        if plan is None:
            return 0.0  # nothing can serve it: the call fails without cost
        costs = [worst_case_cost(d.offer, plan.prompt, plan.out_tokens(d.offer), plan.searches) for d in plan.order]
        return None if any(c is None for c in costs) else max(costs, default=0.0)

    def estimate(self, body: dict[str, Any], targets: list[str], op: str = "chat") -> tuple[float | None, int, int]:
        """What a call of a gateway key with limits may use: ``(usd, prompt, output)``. The
        output tokens are the caller's ``max_tokens`` (or ``max_completion_tokens``), else
        the least of the candidates' defaults (the client's ``default_max_tokens``, or the
        model's output limit when lower), which the gateway then sends as ``max_tokens``:
        so ``usd``, the most the call can cost on any candidate with that output (None if
        one is unpriced), bounds what it is charged. ``prompt`` is the client's estimate
        of the input tokens. ``(0.0, 0, 0)`` when nothing can serve the call."""
        from knollm.client.accounting import worst_case_cost

        plan = self._plan(body, targets, op)
        if plan is None:
            return 0.0, 0, 0
        out = 0 if op == "embed" else min((plan.out_tokens(d.offer) for d in plan.order), default=0)
        costs = [worst_case_cost(d.offer, plan.prompt, out, plan.searches) for d in plan.order]
        return (None if any(c is None for c in costs) else max(costs, default=0.0)), int(plan.prompt), int(out)

    def _plan(self, body: dict[str, Any], targets: list[str], op: str) -> Any:
        """The client's plan of the call (None when nothing can serve it)."""
        if op == "embed":
            target: Any = targets[0] if len(targets) == 1 else list(targets)
            messages: list[dict] = []
            params = {k: body[k] for k in ("input", "dimensions") if k in body}
        else:
            target, messages, params = self._split(body, targets)
        try:
            return self.client.plan(target, messages, params, op)
        except ClientError:
            return None

    async def models(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        if self._models is not None and now - self._models[0] < 60:
            return self._models[1]
        from starlette.concurrency import run_in_threadpool

        data = await run_in_threadpool(self._list_models)
        self._models = (now, data)
        return data

    def _list_models(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{"id": a, "object": "model", "created": 0, "owned_by": "knollm-alias",
                                      "knollm": {"alias": True, "models": models}}
                                     for a, models in _lock_aliases(self.lock)]
        router = self.client.router
        src = router.source
        if src is None:
            return out
        from knollm.client._providers import provider_facts
        from knollm.client.routing import env_name

        keyed: dict[str, bool] = {}

        def has_key(pid: str) -> bool:
            if pid not in keyed:
                facts = provider_facts(pid)
                auth = (router.config.get(pid) or {}).get("auth", facts.auth if facts else "bearer")
                if auth == "none":  # local servers: only when pointed at one
                    keyed[pid] = bool(router.env.get(env_name(pid, "BASE_URL")) or
                                      (router.config.get(pid) or {}).get("base_url"))
                else:
                    keyed[pid] = any(s.label for s in router.slots(pid, facts))
            return keyed[pid]

        from knollm.query.index import CTX, KEY, KIND, MAXOUT, NAME, PROVIDER

        # (a full catalog's index has the same rows, in the same order, as its models)
        out += [{"id": r[KEY], "object": "model", "created": 0, "owned_by": r[PROVIDER],
                 "knollm": {"name": r[NAME], "kind": r[KIND], "context_window": r[CTX], "max_output": r[MAXOUT]}}
                for r in src.index.rows if has_key(r[PROVIDER])]
        return out

    def warm(self) -> None:
        """Load what the first call would: the catalog index behind the router, the ledger,
        the HTTP driver and the provider registry (their imports and files cost the first
        request about 110 ms otherwise)."""
        from knollm.providers import provider_registry

        self.client.router  # noqa: B018 - the property loads it
        self.client.store  # noqa: B018
        self.client.http  # noqa: B018
        provider_registry()

    async def aclose(self) -> None:
        await self.client.aclose()


def _lock_aliases(lock: str | None) -> list[tuple[str, list[str]]]:
    """Aliases of the active lockfile (none when ``knollm.lock`` or the file is absent)."""
    try:
        from knollm.lock import active_profile, find_lock, load_lock  # type: ignore[import-not-found]
    except ImportError:
        return []
    path = find_lock(lock)
    if path is None or not path.is_file():
        return []
    lf = load_lock(path)
    return [(a, list(b.models)) for a, b in sorted(lf.bindings(active_profile(lf)).items())]
