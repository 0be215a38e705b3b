"""The one retry / fallback / accounting flow, shared by :class:`Client` and :class:`AsyncClient`.

:func:`flow` is a generator that *decides* and never does I/O: it yields effects
``("send", deployment)``, ``("sleep", seconds)``, ``("reserve", deployment)`` (the
budget hold before an attempt: ``Plan.reserve``) and, once a call is served,
``("settle", (reservation_id, ledger_row))``; a driver (sync or async) performs each and
sends back an :class:`Outcome` (for ``send``), the store's answer (``reserve``,
``settle``) or None.
It ends by returning a :class:`ChatResult` (an :class:`EmbeddingResult` for an
embeddings plan, ``plan.op == "embed"``) as ``StopIteration.value``, or raising a
:class:`ClientError`.

A stream cut after its output started (the upstream broke, or the caller stopped reading:
the driver then sends back the attempt's Outcome with an error of kind ``closed``) is
billed by the provider, so it is settled too, once, as an ``interrupted`` ledger row
(:func:`_interrupted_row`), before :class:`StreamInterrupted` is raised. An attempt billed
though the caller never saw it (an answer whose body was cut, a whole embeddings answer the
client rejected, a tool call cut before it was given out) is settled the same way, its hold
with it; a retry on that deployment then reserves its worst case again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Generator

from knollm.client.accounting import call_cost, estimate_tokens
from knollm.client.result import ChatResult, EmbeddingResult, Usage, new_id
from knollm.client.routing import Deployment, Plan
from knollm.client.transports import Embedded, Parsed, classify_error, get_shape
from knollm.errors import AllAttemptsFailed, BudgetExceeded, NoCandidates, ProviderError, StreamInterrupted
from knollm.retry import retry_after_of

__all__ = ["Outcome", "flow", "parse_answer"]


_new = object.__new__

@dataclass
class Outcome:
    parsed: Parsed | None = None
    error: ProviderError | None = None
    ttft_ms: float | None = None
    emitted: str = ""            # text already given to the caller (streams)
    tools_sent: bool = False     # tool-call deltas already given to the caller (ChatStream.events)
    status: int | None = None
    stream: Any = None           # the attempt's StreamState: what the provider sent so far (streams)
    cut: str | None = None       # what arrived of a 2xx answer whose body was cut (billed, never seen)
    connect_ms: float | None = None  # opening the attempt's connection (0.0 kept alive; None: not measured)


#: what a failed attempt's ``charged`` entry says (the provider billed it: a cut answer)
_CHARGED = ("request_id", "cost_usd", "price_source", "unpriced_reason", "input_tokens", "output_tokens",
            "usage_estimated")


def parse_answer(d: Deployment, status: int, headers: Any, text: str, embed: tuple | None = None) -> Parsed:
    """A whole (non-streamed) HTTP answer -> :class:`Parsed`, or the ProviderError it means;
    ``embed=(N, dimensions)``: an embeddings answer for N inputs, of ``dimensions`` when asked
    (an API that ignored it is a ``bad_response``) -> :class:`~knollm.client.transports.Embedded`."""
    if status >= 400:
        raise classify_error(d.provider, status, text, retry_after_of(headers))
    ctype = headers.get("content-type", "")
    if "html" in ctype or text.lstrip()[:1] == "<":
        raise ProviderError(f"HTML page instead of a JSON answer (HTTP {status})", provider=d.provider,
                            status=status, kind="bad_response")
    import orjson

    try:
        obj = orjson.loads(text)
    except ValueError:
        raise ProviderError(f"answer is not valid JSON ({len(text)} bytes, truncated?)", provider=d.provider,
                            status=status, kind="bad_response") from None
    if embed is not None:
        # a whole answer the client rejects was billed all the same: the error carries what it
        # reported (``answer``: its usage, else none and the flow estimates) for its ledger row
        try:
            got = get_shape(d.shape).parse_embeddings(obj, d.provider, embed[0])
        except ProviderError as e:
            if e.kind == "bad_response":  # vectors missing or malformed (not an error body)
                e.status, e.answer = status, Embedded([])
            raise
        size = len(got.vectors[0]) // 4 if isinstance(got.vectors[0], bytes) else len(got.vectors[0])
        if embed[1] and size != embed[1]:
            err = ProviderError(f"asked for {embed[1]} dimensions, got {size}: the API ignored 'dimensions'",
                                provider=d.provider, status=status, kind="bad_response")
            err.answer = got
            raise err
        return got  # type: ignore[return-value]
    return get_shape(d.shape).parse(obj, d.provider)


def _skip(plan: Plan, d: Deployment, reason: str) -> None:
    for c in plan.candidates:
        if c["deployment"] == d.label and c["status"] == "eligible":
            c["status"], c["reason"] = "skipped", reason
            return


def flow(plan: Plan, stream: bool) -> Generator[tuple[str, Any], Any, ChatResult]:
    s = plan.r.s
    store = plan.store
    skipped_budget = 0
    last: ProviderError | None = None
    order = plan.order
    stop = False
    for idx, d in enumerate(order):
        if stop:
            break
        why = plan.still_useful(d)
        if why:
            _skip(plan, d, why)
            continue
        rid, refused = yield "reserve", d
        if refused:
            skipped_budget += 1
            _skip(plan, d, refused)
            continue
        try:
            tries = 0
            while True:
                tries += 1
                wait = plan.rate_wait(d)
                if wait > 0:
                    if idx < len(order) - 1 or wait > s.max_retry_wait:
                        _skip(plan, d, f"client-side rate limit (free in {wait:.1f}s)")
                        break
                    yield "sleep", wait
                allowed = d.breaker.allow()  # True, or "trial": the half-open breaker's one trial
                if not allowed:
                    _skip(plan, d, "circuit open")
                    break
                ev = d.slot.limiter.acquire(plan.prompt + plan.out_tokens(d.offer))
                d.stats.inflight += 1
                t0 = time.perf_counter()
                try:
                    out: Outcome = yield "send", d
                except GeneratorExit:
                    # the caller stopped the call while this attempt was in flight (cancelled, Ctrl-C,
                    # a stream closed before its first token): its provider got the request, so the
                    # attempts say so (a 504's x-knollm-attempts, the metrics)
                    plan.record_attempt(d, None, ProviderError("no answer before the call was stopped",
                                                               provider=d.provider, kind="cancelled"), t0)
                    if allowed is not True:  # a half-open trial without a verdict: the next call tries
                        d.breaker.release()
                    raise
                finally:
                    d.stats.inflight -= 1
                if out.error is None:
                    plan.record_attempt(d, out.status or 200, None, t0)
                    result, row = _finish(plan, d, out, t0, stream, ev)
                    if store is not None:
                        yield "settle", (rid, row)
                    rid = None  # settled
                    return result
                e = out.error
                last = e
                attempt = plan.record_attempt(d, e.status or out.status, e, t0)
                if out.emitted or out.tools_sent:  # after the first token: no fallback, never duplicate output
                    if e.kind != "closed":  # the caller stopping is no fault of the deployment
                        d.breaker.record(False)
                        d.stats.observe(False)
                    else:  # the provider was answering (ends a half-open trial)
                        d.breaker.record(True)
                    # the provider bills what it generated before the cut: charged once, never released
                    row = _interrupted_row(plan, d, out, t0, stream, ev)
                    if store is not None:
                        yield "settle", (rid, row)
                    rid = None
                    err = StreamInterrupted(plan.redact(str(e.args[0] if e.args else e)), out.emitted, d.provider,
                                            plan.attempts)
                    err.row = row
                    raise err
                charged = False
                if (out.cut is not None or getattr(e, "answer", None) is not None
                        or (out.stream is not None and out.stream.tool_calls)) and store is not None:
                    # output the caller never saw is billed all the same: a whole answer whose body
                    # was cut, a whole embeddings answer the client rejected, a tool call cut mid-way
                    # (not forwarded). Its own row, named on the attempt (``charged``); the hold
                    # becomes that charge (settled with it), so a retry holds its worst case anew
                    row = _interrupted_row(plan, d, out, t0, stream, ev)
                    yield "settle", (rid, row)
                    rid, charged = None, True
                    attempt["charged"] = {k: row[k] for k in _CHARGED}
                action, delay = plan.on_failure(d, e, tries)
                if getattr(e, "maybe_billed", False):
                    # the request was sent and the answer lost (no answer in time, the connection
                    # failed after the request was written): the provider may have processed and
                    # billed it; a resend may run (and bill) it twice
                    attempt["maybe_billed"] = True
                    if not s.retry_after_send:
                        stop = True
                        break
                if action != "retry":
                    break
                yield "sleep", delay
                if charged:  # the budgets now count the charge: a refusal ends this deployment's tries
                    rid, refused = yield "reserve", d
                    if refused:
                        skipped_budget += 1
                        _skip(plan, d, refused)
                        break
        finally:
            if rid is not None and store is not None:
                store.release(rid)
    if not plan.attempts:
        excluded = [c for c in plan.candidates if c["status"] != "eligible"]
        if skipped_budget and skipped_budget == len([c for c in plan.candidates if c["status"] == "skipped"]):
            raise BudgetExceeded(plan.target, excluded, f"every candidate for {plan.target!r} would exceed a budget: "
                                 + "; ".join(c["reason"] for c in excluded if c.get("reason"))[:500])
        raise NoCandidates(plan.target, excluded)
    err = AllAttemptsFailed(plan.target, plan.attempts, last)
    err.args = (plan.redact(err.args[0]),)
    raise err


def _finish(plan: Plan, d: Deployment, out: Outcome, t0: float, stream: bool, ev: Any
            ) -> tuple[ChatResult, dict[str, Any]]:
    """The result of a served call and its ledger row."""
    if plan.op == "embed":
        return _finish_embed(plan, d, out, t0, ev)  # type: ignore[return-value]
    p = out.parsed
    dur = (time.perf_counter() - t0) * 1000
    if p.usage:
        u = Usage(**p.usage)
        if u.input_tokens <= 0 < plan.prompt:
            # a usage without the input (an Anthropic-compatible stream whose message_start has
            # no usage, and no input count in message_delta): the prompt was sent and is billed,
            # so its estimate stands in, flagged, rather than a free prompt
            u.input_tokens, u.estimated = plan.prompt, True
    else:
        u = Usage(plan.prompt, _output_estimate(p), estimated=True)
    cost, source, unpriced = call_cost(d.offer, _cost_usage(u))
    gen_ms = dur - (out.ttft_ms or 0)
    d.stats.observe(True, out.ttft_ms if out.ttft_ms is not None else dur,
                    u.output_tokens / (gen_ms / 1000) if stream and gen_ms > 1 and u.output_tokens else None)
    d.breaker.record(True)
    d.slot.limiter.correct(ev, u.input_tokens + u.output_tokens)
    rq = new_id()
    res = _new(ChatResult)  # (__init__ called as a method takes its keywords without the dict a class call builds)
    res.__init__(  # type: ignore[misc]
        content=p.content, provider=d.provider, model=d.model, key=d.slot.label, target=plan.target,
        finish_reason=p.finish_reason, tool_calls=p.tool_calls, usage=u, cost_usd=cost, price_source=source,
        unpriced_reason=unpriced, ttft_ms=None if out.ttft_ms is None else round(out.ttft_ms, 2),
        duration_ms=round(dur, 2), attempts=plan.attempts, candidates=plan.candidates, strategy=plan.strategy,
        why=_why(plan, d),
        alias=plan.alias, request_id=rq, response_id=p.id, tag=plan.tag,
        connect_ms=None if out.connect_ms is None else round(out.connect_ms, 2), blocks=p.blocks,
    )
    row = {
        "request_id": rq, "ts": time.time(), "target": _target_str(plan.target), "alias": plan.alias,
        "provider": d.provider, "model": d.model, "key_label": d.slot.label, "stream": int(stream),
        "input_tokens": u.input_tokens, "output_tokens": u.output_tokens, "cached_tokens": u.cached_tokens,
        "cache_write_tokens": u.cache_write_tokens, "usage_estimated": int(u.estimated), "cost_usd": cost,
        "price_source": source, "unpriced_reason": unpriced, "ttft_ms": res.ttft_ms, "duration_ms": res.duration_ms,
        "attempts": len(plan.attempts), "tag": plan.tag,
    }
    return res, row


def _cost_usage(u: Usage) -> dict[str, Any]:
    """What :func:`call_cost` prices of a :class:`Usage`."""
    return {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens, "cached_tokens": u.cached_tokens,
            "cache_write_tokens": u.cache_write_tokens, "cache_write_1h_tokens": u.cache_write_1h_tokens,
            "reasoning_tokens": u.reasoning_tokens or 0, "web_searches": u.web_searches}


def _finish_embed(plan: Plan, d: Deployment, out: Outcome, t0: float, ev: Any
                  ) -> tuple[EmbeddingResult, dict[str, Any]]:
    """An embeddings call's result and ledger row: input tokens only (the provider's count,
    else the estimate, flagged ``usage_estimated``)."""
    p = out.parsed
    dur = (time.perf_counter() - t0) * 1000
    u = Usage(p.usage["input_tokens"]) if p.usage else Usage(plan.prompt, estimated=True)
    cost, source, unpriced = call_cost(d.offer, {"input_tokens": u.input_tokens, "output_tokens": 0})
    d.stats.observe(True, dur)
    d.breaker.record(True)
    d.slot.limiter.correct(ev, u.input_tokens)
    rq = new_id()
    res = EmbeddingResult(
        raw=p.vectors, provider=d.provider, model=d.model, key=d.slot.label, target=plan.target, usage=u,
        cost_usd=cost, price_source=source, unpriced_reason=unpriced, duration_ms=round(dur, 2),
        attempts=plan.attempts, candidates=plan.candidates, strategy=plan.strategy, why=_why(plan, d),
        alias=plan.alias, request_id=rq, tag=plan.tag,
    )
    row = {
        "request_id": rq, "ts": time.time(), "target": _target_str(plan.target), "alias": plan.alias,
        "provider": d.provider, "model": d.model, "key_label": d.slot.label, "stream": 0,
        "input_tokens": u.input_tokens, "output_tokens": 0, "cached_tokens": 0, "cache_write_tokens": 0,
        "usage_estimated": int(u.estimated), "cost_usd": cost, "price_source": source, "unpriced_reason": unpriced,
        "ttft_ms": None, "duration_ms": res.duration_ms, "attempts": len(plan.attempts), "tag": plan.tag,
    }
    return res, row


def _output_estimate(p: Parsed) -> int:
    """Estimated output tokens of what the provider sent: text, tool-call names and arguments."""
    calls = "".join((fn.get("name") or "") + (fn.get("arguments") or "")
                    for fn in ((tc.get("function") or {}) for tc in p.tool_calls or []))
    return estimate_tokens((p.content or "") + calls)


def _interrupted_row(plan: Plan, d: Deployment, out: Outcome, t0: float, stream: bool, ev: Any) -> dict[str, Any]:
    """The ledger row of a stream cut after its output started (``outcome`` interrupted).

    The provider bills the prompt and every token it generated before the cut. Input (and
    cached) tokens are the provider's when it reported them before the cut (Anthropic's
    ``message_start``, Gemini's running ``usageMetadata``), else the prompt estimate;
    output tokens are estimated from the text and tool-call deltas received from the
    provider (given out or not), or the provider's running count when that is larger.
    ``usage_estimated``: 0 every count is the provider's, 1 all estimated, 2 the input is
    the provider's and the output estimated."""
    p = out.parsed or getattr(out.error, "answer", None) or (out.stream.result() if out.stream is not None else None)
    est = _output_estimate(p) if p is not None else 0
    u = p.usage if p is not None else None
    if u and u.get("input_tokens"):
        usage = dict(u)
        if est > usage["output_tokens"]:
            usage["output_tokens"], flag = est, 2
        else:
            flag = 0
    else:
        # no input count (none reported yet, or a reported 0): the prompt estimate; the output
        # the provider's running count when it gave one larger than the estimate (the reasoning
        # count with it, which is part of it)
        given = (u or {}).get("output_tokens") or 0
        usage = {"input_tokens": plan.prompt, "output_tokens": max(est, given), "cached_tokens": 0,
                 "cache_write_tokens": 0}
        if given >= est and (u or {}).get("reasoning_tokens"):
            usage["reasoning_tokens"] = u["reasoning_tokens"]
        if (u or {}).get("web_searches"):  # billed whatever became of the tokens
            usage["web_searches"] = u["web_searches"]
        flag = 1
    cost, source, unpriced = call_cost(d.offer, usage)
    d.slot.limiter.correct(ev, usage["input_tokens"] + usage["output_tokens"])
    return {
        "request_id": new_id(), "ts": time.time(), "target": _target_str(plan.target), "alias": plan.alias,
        "provider": d.provider, "model": d.model, "key_label": d.slot.label, "stream": int(stream),
        "input_tokens": usage["input_tokens"], "output_tokens": usage["output_tokens"],
        "cached_tokens": usage.get("cached_tokens") or 0, "cache_write_tokens": usage.get("cache_write_tokens") or 0,
        "usage_estimated": flag, "cost_usd": cost, "price_source": source, "unpriced_reason": unpriced,
        "ttft_ms": None if out.ttft_ms is None else round(out.ttft_ms, 2),
        "duration_ms": round((time.perf_counter() - t0) * 1000, 2), "attempts": len(plan.attempts), "tag": plan.tag,
        "outcome": "interrupted",
    }


def _why(plan: Plan, d: Deployment) -> str:
    failed = plan.attempts[:-1]
    if any((a["provider"], a["model"], a["key"]) != (d.provider, d.model, d.slot.label) for a in failed):
        return f"fallback after {len(failed)} failed attempt(s)"
    if failed:
        return f"{plan.why}; answered on retry {len(failed)}"
    if d is plan.order[0]:
        return plan.why
    skipped = [c["reason"] for c in plan.candidates if c["status"] == "skipped"]
    return f"{plan.why}; earlier candidates skipped: " + "; ".join(skipped)


def _target_str(t: Any) -> str:
    return ",".join(map(str, t)) if isinstance(t, (list, tuple)) else str(t)
