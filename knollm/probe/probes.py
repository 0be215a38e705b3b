"""``knollm probe``: small real requests that find out what a model does.

Each probe is one request with a verdict rule:

==================  ==============================================  ===================
probe               request                                         catalog capability
==================  ==============================================  ===================
system_prompt       system says "reply with exactly one word: …"    –
tools               one function tool; the answer must call it      ``tools``
vision              a 16x16 red PNG; the answer must be "red"       ``vision``
json_mode           ``response_format: json_object``                ``json_mode``
structured_output   ``response_format: json_schema`` (strict)      ``structured_output``
stream_usage        ``stream=True``; usage must arrive in-stream    –
context_limit       (opt-in) a prompt beyond the context window;    ``context_window``
                    the limit is read from the provider's error
==================  ==============================================  ===================

Verdicts: ``yes``, ``no`` (rejected, or accepted but not done), ``partial`` (accepted
but the result was wrong: a tool not called, an image not seen, an answer cut at
``max_tokens``), ``error`` (the call failed for another reason: nothing learned),
``skipped`` (the cost cap refused it). Only ``yes`` / ``no`` reach the catalog (source ``probe``).

A rejection (a 4xx about the request) is a ``no`` only when the plain control request
(the ``system_prompt`` probe; sent on its own when that probe is not planned) to the same
deployment succeeded: a deployment that refuses everything (no credit, a retired model)
says nothing about one feature, so its rejections are ``error``. 402 is always ``error``.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import zlib
from pathlib import Path
from typing import Any, Callable

from knollm.probe.common import (DEFAULT_DIR, Target, announce, capped_client, check_cap, environment, error_info,
                                 now_iso, request_worst_case, write_result)

__all__ = ["PROBES", "OPT_IN", "plan_probes", "run_probes", "probe_target", "red_png", "validate_schema"]

#: probe name -> catalog capability it measures (None: shown, not a catalog field)
PROBES: dict[str, str | None] = {
    "system_prompt": None, "tools": "tools", "vision": "vision", "json_mode": "json_mode",
    "structured_output": "structured_output", "stream_usage": None,
}
#: probes that run only when asked for (expensive)
OPT_IN = ("context_limit",)

SYSTEM_WORD = "MANGO"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}},
                   "required": ["city"]}}}
CITY_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"},
                                                "population": {"type": "integer"}},
               "required": ["city", "country", "population"], "additionalProperties": False}


def red_png(size: int = 16) -> bytes:
    """A ``size`` x ``size`` solid red PNG (standard library only)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * size for _ in range(size))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def validate_schema(value: Any, schema: dict) -> list[str]:
    """Problems of ``value`` against a simple JSON schema (object/array/string/integer/
    number/boolean, required, additionalProperties false); ``[]`` = valid."""
    t = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool}
    if t == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif t == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif t in types:
        ok = isinstance(value, types[t])
    else:
        ok = True
    if not ok:
        return [f"expected {t}, got {type(value).__name__}"]
    errs: list[str] = []
    if t == "object":
        props = schema.get("properties", {})
        errs += [f"missing {k!r}" for k in schema.get("required", []) if k not in value]
        if schema.get("additionalProperties") is False:
            errs += [f"extra {k!r}" for k in value if k not in props]
        for k, sub in props.items():
            if k in value:
                errs += [f"{k}: {e}" for e in validate_schema(value[k], sub)]
    elif t == "array" and "items" in schema:
        for i, x in enumerate(value):
            errs += [f"[{i}]: {e}" for e in validate_schema(x, schema["items"])]
    return errs


# --------------------------------------------------------------------------- requests
def _requests(context_tokens: int | None) -> dict[str, tuple[list[dict], dict]]:
    img = "data:image/png;base64," + base64.b64encode(red_png()).decode()
    reqs: dict[str, tuple[list[dict], dict]] = {
        "system_prompt": ([{"role": "system", "content": f"Whatever the user writes, reply with exactly one word: "
                                                         f"{SYSTEM_WORD}"},
                           {"role": "user", "content": "Name a colour."}], {"max_tokens": 16}),
        "tools": ([{"role": "user", "content": "What is the weather in Paris right now? Use the get_weather tool."}],
                  {"max_tokens": 64, "tools": [WEATHER_TOOL]}),
        "vision": ([{"role": "user", "content": [
            {"type": "text", "text": "What colour is this image? Answer with one word."},
            {"type": "image_url", "image_url": {"url": img}}]}], {"max_tokens": 16}),
        "json_mode": ([{"role": "user", "content": "Reply with a JSON object with the keys city and country for "
                                                   "Paris. JSON only."}],
                      {"max_tokens": 64, "response_format": {"type": "json_object"}}),
        "structured_output": ([{"role": "user", "content": "Give the city, country and population of Paris."}],
                              {"max_tokens": 64, "response_format": {"type": "json_schema", "json_schema": {
                                  "name": "city_info", "strict": True, "schema": CITY_SCHEMA}}}),
        "stream_usage": ([{"role": "user", "content": "Count from 1 to 5."}], {"max_tokens": 32, "stream": True}),
    }
    if context_tokens:
        # ~4 characters per token: "word " is ~1 token, so this overflows a window of context_tokens
        n = int(context_tokens * 1.1) + 256
        reqs["context_limit"] = ([{"role": "user", "content": "word " * n + "\nReply OK."}], {"max_tokens": 1})
    return reqs


def plan_probes(target: Target, names: list[str] | None = None, context: bool = False,
                context_tokens: int | None = None) -> list[tuple[str, list[dict], dict, float | None]]:
    """(probe, messages, params, announced worst-case USD) for each probe to run on ``target``."""
    names = list(PROBES) if names is None else list(names)
    if context:
        ctx = context_tokens or target.record.get("context_window")
        if not ctx:
            raise ValueError(f"{target.key}: no context window in the catalog; give --context-tokens")
        names.append("context_limit")
    reqs = _requests((context_tokens or target.record.get("context_window")) if context else None)
    unknown = [n for n in names if n not in reqs]
    if unknown:
        raise ValueError(f"unknown probe(s): {', '.join(unknown)} (known: {', '.join([*PROBES, *OPT_IN])})")
    return [(n, *reqs[n], request_worst_case(target, *reqs[n])) for n in names]


# --------------------------------------------------------------------------- verdicts
def _rejected(err: dict | None) -> bool:
    """The provider refused the request itself (4xx that is not auth / rate / not-found /
    payment). Only a candidate ``no``: :func:`probe_target` keeps it only when the control
    request to the same deployment succeeded."""
    status = err.get("status") if err else None
    return bool(err) and err.get("kind") in ("bad_request", "context_length") \
        and isinstance(status, int) and 400 <= status < 500 and status != 402


#: phrasings that name the context LIMIT (not the prompt's size), most specific first
_LIMIT_RES = [re.compile(p, re.I) for p in (
    r">\s*(\d[\d,]*)\s*(?:tokens?\s*)?maximum",                                   # 9270 tokens > 8192 maximum
    r"(\d[\d,]*)\s*(?:tokens?\s*)?maximum context (?:length|window|size)",         # 8192 maximum context length
    r"maximum (?:context (?:length|window|size)|(?:input|prompt) (?:length|tokens))\D{0,12}?(?:is|of)\s*"
    r"(\d[\d,]*)",                                                                   # maximum context length is 8192
    r"context (?:window|length|size|limit)\D{0,12}?(?:is|of)\s*(\d[\d,]*)",          # context window of 8192
    r"(?:limit|maximum|max)\s*(?:is|of|:|=)\s*(\d[\d,]*)",                          # limit of 8192 / max: 8192
    r"(\d[\d,]*)[\s-]*tokens?[\s-]*(?:limit|maximum|max)\b",                        # 8192 token limit
)]


def _context_limit(message: str, prompt_floor: int | None) -> int | None:
    """The context window a provider's error names; None when unclear. A number at or above
    ``prompt_floor`` (a lower bound of the rejected prompt's tokens) is the prompt's size,
    never the limit (the prompt was refused as too long)."""
    for rx in _LIMIT_RES:
        for m in rx.finditer(message or ""):
            n = int(m.group(1).replace(",", ""))
            if n >= 256 and (prompt_floor is None or n < prompt_floor):
                return n
    return None


def _cut(res: Any) -> bool:
    return (getattr(res, "finish_reason", None) or "").lower() in ("length", "max_tokens")


#: words that turn a vision answer naming "red" into a refusal or a denial
_NEGATIONS = frozenset({"not", "no", "cannot", "can't", "cant", "unable", "don't", "dont", "isn't", "isnt",
                        "doesn't", "doesnt", "without", "sorry"})


def _judge(name: str, res: Any, err: dict | None, prompt_floor: int | None = None) -> tuple[str, str, dict | None]:
    """(verdict, detail, extra) for probe ``name`` from the answer ``res`` or error ``err``.
    A rejection gives a candidate ``no`` (see :func:`_confirm`)."""
    if err is not None:
        if err.get("error") in ("BudgetExceeded",):
            return "skipped", "refused by the cost cap", None
        if name == "context_limit" and err.get("kind") == "context_length":
            n = _context_limit(err.get("message") or "", prompt_floor)
            return ("yes" if n else "partial"), (f"provider's error gives {n} tokens" if n else
                                                 "rejected as too long, but the error names no limit"), \
                {"context_window": n} if n else None
        if _rejected(err):
            return "no", f"rejected: {err.get('message', '')[:160]}", None
        return "error", f"{err.get('kind') or err.get('error')}: {err.get('message', '')[:160]}", None
    text = (res.content or "").strip()
    if name == "system_prompt":
        ok = SYSTEM_WORD.lower() in text.lower()
        return ("yes" if ok else "no"), ("followed the system prompt" if ok else
                                         f"answer ignored the system prompt: {text[:80]!r}"), None
    if name == "tools":
        calls = res.tool_calls or []
        if not calls:
            return "partial", f"accepted tools but answered in text: {text[:80]!r}", None
        fn = calls[0].get("function") or {}
        try:
            args = json.loads(fn.get("arguments") or "{}")
        except ValueError:
            return "partial", f"called {fn.get('name')} with arguments that are not JSON", None
        if fn.get("name") == "get_weather" and isinstance(args, dict) and args.get("city"):
            return "yes", f"called get_weather({json.dumps(args)[:60]})", None
        return "partial", f"called {fn.get('name')!r} with {str(args)[:60]}", None
    if name == "vision":
        # asked for one word: "red" as the answer (a sentence that says it, with no negation or
        # refusal), never any mention of the word ("I cannot see images, so I can't tell whether
        # it is red" mentions it, and is a text-only model's answer)
        words = re.findall(r"[a-z']+", text.lower())
        denies = any(w in _NEGATIONS for w in words)
        ok = bool(words) and not denies and (words == ["red"] or words[-1] == "red" or words[0] == "red")
        return ("yes" if ok else "partial"), ("named the image's colour" if ok else
                                              f"accepted the image but did not see it: {text[:80]!r}"), None
    if name in ("json_mode", "structured_output"):
        body = text.removeprefix("```json").removeprefix("```").removesuffix("```").strip()
        cut = _cut(res)  # cut at max_tokens (a reasoning model's thinking, half-written JSON): unclear
        why = f" (answer cut at max_tokens, finish_reason {res.finish_reason!r})" if cut else ""
        bad = "partial" if cut else "no"
        try:
            val = json.loads(body)
        except ValueError:
            return bad, f"accepted response_format but the answer is not JSON{why}: {text[:80]!r}", None
        if name == "json_mode":
            return ("yes", "answer is a JSON object", None) if isinstance(val, dict) else \
                (bad, f"answer is JSON but not an object{why}", None)
        errs = validate_schema(val, CITY_SCHEMA)
        return ("yes", "answer validates against the schema", None) if not errs else \
            (bad, f"answer does not match the schema{why}: " + "; ".join(errs[:3]), None)
    if name == "stream_usage":
        if res.usage.estimated:
            return "no", "streamed, but the stream carried no usage (tokens estimated)", None
        return "yes", f"usage in stream: {res.usage.input_tokens} in / {res.usage.output_tokens} out", None
    if name == "context_limit":
        return "partial", "accepted the oversized prompt: the limit is above the catalog's window", None
    raise ValueError(name)


def _attempt_log(attempts: Any) -> list[dict] | None:
    if not isinstance(attempts, list):
        return None
    return [{"status": a.get("status"), "error": a.get("error"), "kind": a.get("kind"),
             "duration_ms": a.get("duration_ms")} for a in attempts if isinstance(a, dict)]


def _evidence(messages: list[dict], params: dict, res: Any, err: dict | None) -> dict[str, Any]:
    def short(c: Any) -> Any:
        if isinstance(c, str):
            return c if len(c) <= 200 else f"{c[:120]}… ({len(c)} chars)"
        if isinstance(c, list):
            return [{**p, "image_url": {"url": p["image_url"]["url"][:40] + "…"}} if p.get("type") == "image_url"
                    else p for p in c]
        return c

    ev: dict[str, Any] = {"request": {"messages": [{**m, "content": short(m.get("content"))} for m in messages],
                                      "params": params}}
    if err is not None:
        ev["error"] = {k: v for k, v in err.items() if k != "attempts"}
    log = _attempt_log(res.attempts if res is not None else (err or {}).get("attempts"))
    if log is not None:
        ev["attempts"] = log  # every HTTP attempt (retries included): what health counts
    if res is not None:
        ev["response"] = {"content": (res.content or "")[:500], "tool_calls": res.tool_calls,
                          "finish_reason": res.finish_reason, "model": res.model,
                          "usage": {"input_tokens": res.usage.input_tokens, "output_tokens": res.usage.output_tokens,
                                    "estimated": res.usage.estimated},
                          "ttft_ms": res.ttft_ms, "duration_ms": res.duration_ms, "attempts": len(res.attempts)}
    return ev


def _call(client: Any, key: str, messages: list[dict], params: dict) -> tuple[Any, dict | None]:
    from knollm.errors import ClientError

    p = dict(params)
    stream = p.pop("stream", False)
    try:
        if stream:
            res = None
            for x in client.stream(key, messages, **p):
                if not isinstance(x, str):
                    res = x
            return res, None
        return client.chat(key, messages, **p), None
    except ClientError as e:
        info = error_info(e) or {}
        if isinstance(getattr(e, "attempts", None), list):
            info["attempts"] = e.attempts
        return None, info


def probe_target(target: Target, *, names: list[str] | None = None, context: bool = False,
                 context_tokens: int | None = None, max_cost: float | None = None, allow_unpriced: bool = False,
                 env: Any = None, providers: dict | None = None, out_dir: str | Path | None = DEFAULT_DIR,
                 on_announce: Callable[[str, float | None], None] | None = None, timeout: float = 60.0) -> dict:
    """Run the probes on one target; returns the result document (also written to
    ``out_dir`` unless None). The cost is announced (``on_announce``) before any request
    and the client's budget holds the run to it."""
    plan = plan_probes(target, names, context, context_tokens)
    # the control request a rejection is checked against: the system_prompt probe, or (when
    # it is not planned) the same request sent only if some probe is rejected
    control_plan = None
    if plan and not any(n == "system_prompt" for n, *_ in plan):
        cm, cp = _requests(None)["system_prompt"]
        control_plan = (cm, cp, request_worst_case(target, cm, cp))
    announced = announce([(target, m, p) for _, m, p, _ in plan]
                         + ([(target, control_plan[0], control_plan[1])] if control_plan else []))
    cap = check_cap(announced, max_cost, allow_unpriced)
    if on_announce:
        on_announce(target.key, announced)
    results = []
    spent = 0.0
    unknown_cost = False
    control: dict[str, Any] | None = None
    with capped_client([target], cap, env=env, providers=providers, retries=1, timeout=timeout) as client:
        for name, messages, params, worst in plan:
            res, err = _call(client, target.key, messages, params)
            floor = sum(len(str(m.get("content") or "").split()) for m in messages) if name == "context_limit" \
                else None
            verdict, detail, extra = _judge(name, res, err, floor)
            if name == "system_prompt":
                control = {"ok": res is not None, "detail": detail if res is not None else
                           f"{(err or {}).get('kind') or (err or {}).get('error')}: {(err or {}).get('message', '')[:120]}"}
            cost = res.cost_usd if res is not None else 0.0
            if res is not None and cost is None:
                unknown_cost = True
            spent += cost or 0.0
            row = {"probe": name, "capability": PROBES.get(name, "context_window" if name == "context_limit" else None),
                   "verdict": verdict, "detail": detail, "announced_usd": worst, "cost_usd": cost,
                   "evidence": _evidence(messages, params, res, err)}
            if extra:
                row.update(extra)
            row["_rejected"] = verdict == "no" and _rejected(err)  # a candidate no: checked below
            results.append(row)
        if control is None and control_plan and any(r["_rejected"] for r in results):
            cres, cerr = _call(client, target.key, control_plan[0], control_plan[1])
            control = {"ok": cres is not None, "sent": True, "detail": "answered" if cres is not None else
                       f"{(cerr or {}).get('kind') or (cerr or {}).get('error')}: {(cerr or {}).get('message', '')[:120]}",
                       "evidence": _evidence(control_plan[0], control_plan[1], cres, cerr)}
            ccost = cres.cost_usd if cres is not None else 0.0
            if cres is not None and ccost is None:
                unknown_cost = True
            spent += ccost or 0.0
    for r in results:
        if r.pop("_rejected") and not (control or {}).get("ok"):
            r["verdict"] = "error"
            r["detail"] = (f"{r['detail']}; not counted as a no: the plain control request to this deployment "
                           f"failed too ({(control or {}).get('detail', 'not sent')})")
            r.pop("context_window", None)
    doc = {"kind": "probe", "format": 1, "date": now_iso(), "key": target.key, "provider": target.provider,
           "model": target.model, "canonical_id": target.canonical, "announced_usd": announced, "cap_usd": cap,
           "cost_usd": None if unknown_cost else round(spent, 10), "environment": environment(),
           "catalog": {"capabilities": {k: v for k, v in (target.record.get("capabilities") or {}).items()
                                        if k in PROBES.values() and v is not None},
                       "context_window": target.record.get("context_window")},
           "results": results}
    if control is not None and control.get("sent"):
        doc["control"] = {k: v for k, v in control.items() if k != "sent"}
    doc["disagreements"] = disagreements(doc)
    if out_dir is not None:
        doc["file"] = str(write_result(out_dir, "probe", target.key, doc))
    return doc


def disagreements(doc: dict) -> list[dict[str, Any]]:
    """Where a probe's verdict contradicts what the catalog said before it ran."""
    said = doc.get("catalog") or {}
    out = []
    for r in doc.get("results", []):
        cap = r.get("capability")
        if r["verdict"] not in ("yes", "no") or not cap:
            continue
        if cap == "context_window":
            measured, claimed = r.get("context_window"), said.get("context_window")
        else:
            measured, claimed = r["verdict"] == "yes", (said.get("capabilities") or {}).get(cap)
        if claimed is not None and measured is not None and measured != claimed:
            out.append({"field": cap if cap == "context_window" else f"capabilities.{cap}", "catalog": claimed,
                        "probe": measured, "detail": r["detail"]})
    return out


def run_probes(targets: list[Target], **kw: Any) -> list[dict]:
    """:func:`probe_target` for each target (one announcement and cap each)."""
    return [probe_target(t, **kw) for t in targets]
