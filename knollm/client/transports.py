"""Wire formats of the chat APIs the client speaks, without any I/O.

Each API shape (``openai``, ``anthropic``, ``gemini``, ``ollama``) has a :class:`Shape`
that turns an OpenAI-style request (``messages``, ``tools``, ``response_format``, …)
into the provider's URL and JSON body, parses a whole answer, and parses a stream line
by line (:meth:`Shape.stream_parser`). The sync and async clients share this module and
do the HTTP themselves (httpx2), so a translation bug is fixed once.

Everything is normalized to OpenAI's shape: ``content``, ``tool_calls``
(``[{id, type: "function", function: {name, arguments: str}}]``), ``finish_reason``
(``stop``/``length``/``tool_calls``/``content_filter``) and a usage dict
``{input_tokens, output_tokens, cached_tokens, cache_write_tokens}`` where
``input_tokens`` counts every prompt token, cached ones and cache writes included, plus
``reasoning_tokens`` when the provider reports them (part of ``output_tokens``, not on top
of them) and ``cache_write_1h_tokens`` when some cache writes were at a 1-hour TTL
(Anthropic's ``cache_creation.ephemeral_1h_input_tokens``: part of ``cache_write_tokens``).
"""

from __future__ import annotations

import json
import operator
import re
from typing import Any

import orjson

from knollm.errors import ProviderError

__all__ = ["SHAPES", "Shape", "Parsed", "Embedded", "StreamState", "get_shape", "classify_error", "num_ctx_for",
           "cut_answer", "embed_params", "EMBED_PARAMS", "tool_args", "Finish", "finish_with", "ANTHROPIC_NATIVE",
           "Native"]

_CONTEXT_WORDS = ("context length", "context_length", "context window", "maximum context", "too many tokens",
                  "prompt is too long", "input is too long", "reduce the length", "exceeds the context")


class Finish(str):
    """A finish reason in OpenAI's words (``stop``, ``length``…, compares and serializes as
    that string) that carries what the provider said beside it, which OpenAI's word loses:
    ``native``, the provider's own reason (Anthropic's ``stop_sequence``, ``pause_turn``;
    Gemini's ``MALFORMED_FUNCTION_CALL``, ``OTHER``…), ``stop_sequence`` (the one that
    matched), ``refusal`` (an OpenAI-compatible answer's ``message.refusal``) and
    ``logprobs`` (its ``choices[0].logprobs``). Made only when there is one of them: a
    plain answer's finish reason is a plain ``str``."""

    native: str | None = None
    stop_sequence: str | None = None
    refusal: str | None = None
    logprobs: Any = None


def finish_with(reason: str | None, **extra: Any) -> str | None:
    """``reason`` (``stop`` when None) as a :class:`Finish` carrying ``extra`` (those not None)."""
    f = Finish(reason or "stop")
    for k, v in extra.items():
        if v is not None:
            setattr(f, k, v)
    return f


#: a request parameter holding what only Anthropic's API takes (filled by the gateway's
#: ``/v1/messages``: ``thinking``, the system blocks with their ``cache_control``, the ids of
#: tool results that were errors, ``turns``: the assistant turns holding a server tool's
#: blocks, as the caller sent them, one entry an assistant message, None for the others;
#: ``thought``: likewise the turns holding thinking blocks): the Anthropic shape rebuilds
#: them, every other shape leaves it out (routing gives a request with ``turns`` to
#: Anthropic's own API only; a turn of ``thought`` goes to the others without its thinking)
ANTHROPIC_NATIVE = "x_anthropic"


def _refused(field: str, why: str) -> ProviderError:
    """A request parameter this API cannot take: a 400 naming it, not a silent drop."""
    return ProviderError(f"'{field}': {why}", status=400, kind="bad_request")


class Parsed:
    """A provider answer in OpenAI terms. ``blocks``: an Anthropic answer that holds blocks
    OpenAI's terms have no word for (its thinking blocks, signed, which a tool loop must
    give back unmodified; its server tools': ``server_tool_use``, ``web_search_tool_result``;
    and the text blocks' ``citations``) also as its content blocks, in order, as the
    provider gave them; else None."""

    __slots__ = ("content", "tool_calls", "finish_reason", "usage", "model", "id", "blocks")

    def __init__(self, content: str | None = None, tool_calls: list[dict] | None = None,
                 finish_reason: str | None = None, usage: dict | None = None, model: str | None = None,
                 id: str | None = None, blocks: list[dict] | None = None) -> None:  # noqa: A002
        self.content = content
        self.tool_calls = tool_calls or None
        self.finish_reason = finish_reason
        self.usage = usage
        self.model = model
        self.id = id
        self.blocks = blocks


class Native(dict):
    """One content-block event of an Anthropic stream as the provider sent it
    (``content_block_start``/``_delta``/``_stop``, its ``index`` the provider's), given by
    :meth:`StreamState.feed_batch` among the tool-call deltas once the stream holds a block
    OpenAI's terms have no word for (a thinking block, a server tool's): from then on every
    block of the answer (text and tool_use too) is given this way, in order, its text also
    given as ``str`` and its tool calls as tool-call deltas (a caller forwarding these skips
    those copies; one that does not skips these)."""

    __slots__ = ()


class Embedded:
    """A provider's embeddings answer: one vector per input, in the inputs' order (floats,
    or float32 little-endian bytes as the provider sent them in base64)."""

    __slots__ = ("vectors", "usage", "model", "id", "content", "tool_calls")

    def __init__(self, vectors: list[list[float] | bytes], usage: dict | None = None, model: str | None = None
                 ) -> None:
        self.vectors, self.usage, self.model = vectors, usage, model
        self.id = self.content = self.tool_calls = None  # what a cut-answer row reads of any answer


#: what an embeddings call takes besides ``input`` (``strategy`` and ``tag`` are the call's)
EMBED_PARAMS = ("input", "dimensions")


def embed_params(p: dict) -> dict:
    """An embeddings call's params, checked (a :class:`ValueError` names what is wrong):
    ``input`` as a non-empty list of texts or of token-id lists (a single text or token
    list is wrapped), ``dimensions`` a positive int."""
    extra = sorted(set(p) - set(EMBED_PARAMS))
    if extra:
        raise ValueError(f"embeddings take input and dimensions (and strategy, tag), not {', '.join(extra)}")
    x = p.get("input")
    if isinstance(x, str) or (isinstance(x, list) and x and all(type(t) is int for t in x)):
        x = [x]
    if not isinstance(x, list) or not x:
        raise ValueError("input must be a text, a list of texts, or token ids (a list of ints, or of lists of ints)")
    for i, t in enumerate(x):
        if isinstance(t, str):
            if not t:
                raise ValueError(f"input[{i}] is an empty text")
        elif not (isinstance(t, list) and t and all(type(n) is int and n >= 0 for n in t)):
            raise ValueError(f"input[{i}] must be a non-empty text or a non-empty list of token ids")
    out: dict[str, Any] = {"input": x}
    dims = p.get("dimensions")
    if dims is not None:
        if type(dims) is not int or dims < 1:
            raise ValueError("dimensions must be a positive integer")
        out["dimensions"] = dims
    return out


def _vector(v: Any, provider: str, i: int) -> list[float] | bytes:
    """One embedding, checked: a JSON array of numbers as is, or base64 of little-endian
    float32 (what OpenAI-compatible APIs send for ``encoding_format: base64``) as its bytes,
    turned into Python floats only when read (:attr:`EmbeddingResult.vectors`): 1,536 float
    objects cost ~40 us, and a gateway passing base64 on never needs them."""
    if isinstance(v, str):
        import base64
        import binascii

        try:
            raw = base64.b64decode(v, validate=True)
        except binascii.Error:
            raw = b""
        if not raw or len(raw) % 4:
            raise ProviderError(f"embedding {i} is neither numbers nor base64 float32", provider=provider,
                                kind="bad_response")
        # a float32's last byte holds its sign and top 7 exponent bits: 0x7f / 0xff there is NaN,
        # infinity or above 1.7e38, never a coordinate of an embedding (checked in C, ~1 us)
        top = raw[3::4]
        if b"\x7f" in top or b"\xff" in top:
            raise ProviderError(f"embedding {i} has NaN, infinite or absurdly large values", provider=provider,
                                kind="bad_response")
        out = _F32(raw)
        out.b64 = v  # passed on as it came when base64 is asked for again (knollm serve)
        return out
    if isinstance(v, list) and v:
        import math

        try:  # every item a number, and none NaN, infinite or beyond float32: three C loops (~25 us for 1,536)
            ok = math.isfinite(sum(v)) and max(v) < _F32_MAX and min(v) > -_F32_MAX
        except TypeError:
            pass
        else:
            if not ok:
                raise ProviderError(f"embedding {i} has NaN, infinite or absurdly large values", provider=provider,
                                    kind="bad_response")
            return v
    raise ProviderError(f"embedding {i} is not a list of numbers", provider=provider, kind="bad_response")


_F32_MAX = 2.0 ** 127  # the float32 values the base64 byte test refuses start here


class _F32(bytes):
    """An embedding as little-endian float32 bytes, with ``b64``: the base64 it came as."""

    b64: str


def _vectors(items: Any, n: int, provider: str, what: str) -> list[list[float] | bytes]:
    if not isinstance(items, list):
        raise ProviderError(f"answer has no {what}", provider=provider, kind="bad_response")
    if len(items) != n:
        raise ProviderError(f"answer has {len(items)} embeddings for {n} inputs", provider=provider,
                            kind="bad_response")
    out = [_vector(v, provider, i) for i, v in enumerate(items)]
    sizes = {len(v) // 4 if isinstance(v, bytes) else len(v) for v in out}
    if len(sizes) > 1:
        raise ProviderError(f"answer has vectors of different sizes ({', '.join(map(str, sorted(sizes)))})",
                            provider=provider, kind="bad_response")
    return out


def _count(obj: Any, *path: str) -> Any:
    """``obj[path[0]][path[1]]…`` where each level is a dict, else None (a provider's usage
    field in a shape it should not have is no usage, not a crash)."""
    for k in path:
        obj = obj.get(k) if isinstance(obj, dict) else None
    return obj


_MAX_COUNT = 2**53  # no call has more tokens; a ledger's INTEGER (SQLite's, PostgreSQL's BIGINT) holds it


def _plausible(v: Any) -> bool:
    """A token count a provider may report: None, or a whole number from 0 to :data:`_MAX_COUNT`."""
    if v is None:
        return True
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return 0 <= v < _MAX_COUNT and float(v).is_integer()


def _usage(inp: Any, out: Any, cached: Any = 0, write: Any = 0, reasoning: Any = None,
           write_1h: Any = 0, searches: Any = None) -> dict | None:
    """The normalized usage dict; ``reasoning_tokens`` only when the provider gave a count
    (already included in ``out``, as every provider bills them); ``cache_write_1h_tokens``
    only when some of the ``write`` cache writes were at a 1-hour TTL (part of ``write``);
    ``web_searches`` only when the provider counted searches its own search tool made (each
    billed apart: :func:`knollm.client.accounting.call_cost` prices them)."""
    if inp is None and out is None:
        return None
    for v in (inp, out, cached, write, searches):
        if v is not None and not (type(v) is int and 0 <= v < _MAX_COUNT) and not _plausible(v):
            return None  # not a count ("abc", -5, 1e20: beyond any ledger's integer): estimated instead, flagged
    u = {"input_tokens": int(inp or 0), "output_tokens": int(out or 0), "cached_tokens": int(cached or 0),
         "cache_write_tokens": int(write or 0)}
    if type(reasoning) is int and 0 <= reasoning < _MAX_COUNT:
        u["reasoning_tokens"] = reasoning
    if type(write_1h) is int and 0 < write_1h < _MAX_COUNT:
        u["cache_write_1h_tokens"] = min(write_1h, u["cache_write_tokens"])
    if searches:
        u["web_searches"] = int(searches)
    return u


def _int(v: Any) -> int:
    """A provider's count as an int: 0 when absent or not a number."""
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else 0


def _input_usage(n: Any) -> dict | None:
    """The usage of an embeddings call: input tokens only; None when the provider gave no
    (positive) count."""
    return _usage(n, 0) if type(n) is int and n > 0 else None


def _loads(text: str, provider: str, what: str) -> Any:
    try:
        return orjson.loads(text)
    except (ValueError, TypeError):
        head = text[:60].replace("\n", " ")
        raise ProviderError(f"{what} is not JSON: {head!r}", provider=provider, kind="bad_response") from None


def _event(st: StreamState, data: str, what: str = "stream event") -> dict:
    """One stream event's JSON object; a provider error event raises (retryable)."""
    obj = _loads(data, st.provider, what)
    if not isinstance(obj, dict):
        raise ProviderError(f"{what} is not an object", provider=st.provider, kind="bad_response")
    if obj.get("error"):
        raise ProviderError(str(obj["error"])[:300], provider=st.provider, kind="server", retryable=True)
    return obj


def _text(content: Any) -> str:
    """The text of an OpenAI message ``content`` (a string or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")


def classify_error(provider: str, status: int, body: str, retry_after: float | None = None) -> ProviderError:
    """A :class:`ProviderError` for an HTTP error answer (its ``kind`` drives the router)."""
    msg = body[:300]
    try:
        obj = json.loads(body)
        err = obj.get("error", obj) if isinstance(obj, dict) else obj
        if isinstance(err, dict):
            msg = str(err.get("message") or err.get("type") or err)[:300]
        elif isinstance(err, str):
            msg = err[:300]
    except ValueError:
        pass
    low = (msg + " " + body[:500]).lower()
    if status == 429:
        kind, retry = "rate_limit", True
    elif status in (401, 403):
        kind, retry = "auth", False
    elif status in (408,) or status >= 500:
        kind, retry = "server", True
    elif status in (400, 413, 422) and any(w in low for w in _CONTEXT_WORDS):
        kind, retry = "context_length", False
    elif status == 404:
        kind, retry = "not_found", False
    else:
        kind, retry = "bad_request", False
    return ProviderError(msg, provider=provider, status=status, retryable=retry, kind=kind, retry_after=retry_after)


#: token counts as the shapes' answers name them: (input names, output names)
_USAGE_IN = ("prompt_tokens", "input_tokens", "promptTokenCount", "prompt_eval_count")
_USAGE_OUT = ("completion_tokens", "output_tokens", "candidatesTokenCount", "eval_count")
#: counts billed besides those: Anthropic's cache reads and writes (not in its ``input_tokens``),
#: Gemini's tool-use prompt and thinking tokens (not in ``promptTokenCount`` /
#: ``candidatesTokenCount``)
_USAGE_EXTRA = ("cache_read_input_tokens", "cache_creation_input_tokens", "toolUsePromptTokenCount",
                "thoughtsTokenCount")
_USAGE_RE = re.compile(r'"(' + "|".join(_USAGE_IN + _USAGE_OUT + _USAGE_EXTRA) + r')"\s*:\s*(\d+)')
_TEXT_RE = re.compile(r'"(?:content|text|response)"\s*:')


def cut_answer(text: str) -> Parsed:
    """What can be told of a whole answer whose body was cut after ``text``: the token counts
    it gave before the cut (usage comes first in some answers), and its text from the first
    ``content`` / ``text`` field on, JSON and all (the whole of ``text`` when there is none).
    The provider generated the whole answer before sending it, so the output counted from
    this is an estimate from below of what it bills."""
    counts: dict[str, int] = {}
    for name, n in _USAGE_RE.findall(text):
        counts.setdefault(name, int(n))
    inp = next((counts[k] for k in _USAGE_IN if k in counts), None)
    out = next((counts[k] for k in _USAGE_OUT if k in counts), None)
    cr, cw = counts.get("cache_read_input_tokens", 0), counts.get("cache_creation_input_tokens", 0)
    if inp is not None:  # Anthropic's input_tokens leaves its cache reads and writes out: added back
        inp += cr + cw + counts.get("toolUsePromptTokenCount", 0)
    if out is not None and "thoughtsTokenCount" in counts:
        out += counts["thoughtsTokenCount"]
    m = _TEXT_RE.search(text)
    return Parsed(text[m.end():] if m else text, None, None, _usage(inp, out, cr, cw) if inp else None)


def num_ctx_for(prompt_tokens: int, max_tokens: int | None, context_window: int | None) -> int:
    """Ollama's ``num_ctx``: room for the prompt plus the answer, rounded up to 1024, at
    least 4096 (Ollama's default silently truncates long prompts), at most the window."""
    need = prompt_tokens + (max_tokens or 1024) + 64
    n = max(4096, -(-need // 1024) * 1024)
    return min(n, context_window) if context_window else n



def tool_args(arguments: Any) -> dict:
    """A tool call's ``arguments`` (OpenAI's JSON string) as the object the Anthropic,
    Gemini and Ollama APIs take back. A string that is not a JSON object (a model's
    truncated output, sent back in a conversation's history, as agents do) is kept whole
    as ``{"_raw_arguments": s}`` rather than refused or dropped; empty means ``{}``."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        parsed = json.loads(arguments)
    except (TypeError, ValueError):
        parsed = None
    return parsed if isinstance(parsed, dict) else {"_raw_arguments": str(arguments)}

# --------------------------------------------------------------------------- stream state
_is_data = operator.methodcaller("startswith", "data: ")


class StreamState:
    """Accumulates a stream; ``feed(line)`` returns the text deltas the line carried.

    Tool calls accumulate in ``tool_calls``; their deltas, in OpenAI ``delta.tool_calls``
    form (``{"index", "id"?, "type"?, "function": {"name"?, "arguments"?}}``, ``index``
    counting tool calls from 0), are queued in ``tool_deltas`` for a caller that forwards
    them as they arrive (:meth:`take_tool_deltas`); so are an Anthropic answer's block
    events once it holds a server tool's block (:class:`Native`, instead of its tool-call
    deltas from then on)."""

    def __init__(self, shape: Shape, provider: str) -> None:
        self.shape = shape
        self.provider = provider
        self.content: list[str] = []
        self.tool_calls: dict[int, dict] = {}
        self.finish_reason: str | None = None
        self.usage: dict | None = None
        self.raw_usage: dict | None = None  # the provider's own usage fields so far (Anthropic's stream)
        self.model: str | None = None
        self.id: str | None = None
        self.done = False
        self.tool_deltas: list[dict] = []
        self._tool_index: dict[int, int] = {}  # provider's block index -> tool-call index
        self._event: str | None = None
        self._data: list[str] = []

    refusal: list[str] | None = None  # (an OpenAI-compatible stream's delta.refusal pieces, when any)
    # the model has sent reasoning (DeepSeek's ``reasoning_content``, OpenRouter's ``reasoning``,
    # Anthropic's thinking blocks, Gemini's thought parts, Ollama's ``thinking``): it is working,
    # so the wait for its first text is not a stall (the client's ``ttft_timeout`` no longer applies)
    thought = False
    searches = 0  # web_search server-tool blocks seen (Anthropic): billed even if the stream is cut before its count
    # an Anthropic stream that holds a server tool's block (None until then): the provider's
    # block index -> its place in ``blocks`` (the answer's blocks, as :attr:`Parsed.blocks`),
    # and the tool inputs' JSON arriving in pieces, by block index
    native: dict[int, int] | None = None
    blocks: list[dict] | None = None
    partial: dict[int, str] | None = None

    def take_tool_deltas(self) -> list[dict]:
        out, self.tool_deltas = self.tool_deltas, []
        return out

    def _whole_calls(self, before: int) -> None:
        """Queue whole tool calls (providers that send a call in one piece) added since ``before``."""
        for i in range(before, len(self.tool_calls)):
            c = self.tool_calls[i]
            self.tool_deltas.append({"index": i, "id": c.get("id"), "type": "function",
                                     "function": dict(c.get("function") or {})})

    def feed_batch(self, lines: list[str], tools: bool = False) -> list[Any]:
        """:meth:`feed` every line of one network read, up to the end marker: the text
        deltas in order, with (``tools``) the tool-call deltas among them (else they are
        dropped from ``tool_deltas``). The common lines of an SSE stream (``data: …`` and
        the blank line ending an event) are handled here without a call per line."""
        items: list[Any] = []
        data = self._data
        sse = not self.shape.ndjson
        n = len(lines)
        # the usual read, whole events of one ``data:`` line each (an OpenAI-compatible
        # stream), checked by C loops: each event dispatched without a pass per line
        whole = sse and not data and self._event is None and not n % 2 and lines[1::2].count("") == n // 2 \
            and all(map(_is_data, lines[0::2]))
        if whole and type(self.shape).on_event is Shape.on_event:  # (an OpenAI-compatible stream's events)
            self.shape.on_events(self, [line[6:] for line in lines[0::2]], items, tools)
            return items
        on_event = self.shape.on_event
        for line in lines[0::2] if whole else lines:
            if whole:
                payload = line[6:]
                if payload == "[DONE]" or ("[DONE]" in payload and payload.strip() == "[DONE]"):
                    self.done = True
                    break
                text = on_event(self, None, payload)
            elif sse and line[:6] == "data: ":
                data.append(line[6:])
                continue
            elif sse and not line and data:  # an event ends
                text = self._dispatch()
            else:
                text = self.feed(line)
            if text:
                items += text
            if self.tool_deltas:
                deltas = self.take_tool_deltas()
                if tools:
                    items += deltas
            if self.done:
                break
        return items

    def _dispatch(self) -> list[str]:
        """The event the blank line just ended: its data lines joined, then the end marker
        or the shape's ``on_event``."""
        data = self._data
        payload = data[0] if len(data) == 1 else "\n".join(data)
        data.clear()  # (the same list: feed_batch holds it)
        event, self._event = self._event, None
        if payload == "[DONE]" or ("[DONE]" in payload and payload.strip() == "[DONE]"):  # (no copy of each event)
            self.done = True
            return []
        return self.shape.on_event(self, event, payload)

    def feed(self, line: str) -> list[str]:
        if line.startswith("data:"):  # the common line first
            if self.shape.ndjson:
                raise ProviderError(f"malformed stream line {line[:60]!r}", provider=self.provider,
                                    kind="bad_response")
            self._data.append(line[6:] if line.startswith("data: ") else line[5:])
            return []
        if self.shape.ndjson:
            line = line.strip()
            return self.shape.on_event(self, None, line) if line else []
        if line == "" or line == "\r":
            if not self._data:
                self._event = None
                return []
            return self._dispatch()
        if line.startswith(":"):
            return []  # SSE comment / keep-alive
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field not in ("id", "retry"):
            raise ProviderError(f"malformed stream line {line[:60]!r}", provider=self.provider, kind="bad_response")
        return []

    def close(self) -> list[str]:
        """End of the byte stream: flush a last event without its blank line."""
        return self.feed("") if self._data else []

    def result(self) -> Parsed:
        calls = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        reason = self.finish_reason
        if self.refusal is not None:
            reason = finish_with(reason, native=getattr(reason, "native", None), refusal="".join(self.refusal))
        usage = self.usage
        if self.searches and usage is not None and usage.get("web_searches", 0) < self.searches:
            usage = {**usage, "web_searches": self.searches}  # the searches made before the count came
        return Parsed("".join(self.content) if self.content or not calls else None, calls, reason,
                      usage, self.model, self.id, self.blocks)


# --------------------------------------------------------------------------- shapes
class Shape:
    name = "openai"
    ndjson = False

    def url(self, base: str, model: str, stream: bool) -> str:
        return base.rstrip("/") + "/chat/completions"

    def body(self, model: str, messages: list[dict], params: dict, stream: bool, ctx: dict) -> dict:
        body = {"model": model, "messages": messages, **params}
        if ANTHROPIC_NATIVE in body:  # (what only Anthropic's API takes)
            del body[ANTHROPIC_NATIVE]
        if stream:
            body["stream"] = True
            so = dict(body.get("stream_options") or {})
            so.setdefault("include_usage", True)
            body["stream_options"] = so
        else:
            body.pop("stream", None)
            body.pop("stream_options", None)
        return body

    def parse(self, obj: Any, provider: str) -> Parsed:
        if not isinstance(obj, dict) or not isinstance(obj.get("choices"), list) or not obj["choices"]:
            if isinstance(obj, dict) and obj.get("error"):
                raise ProviderError(str(obj["error"])[:300], provider=provider, kind="server", retryable=True)
            raise ProviderError("answer has no choices", provider=provider, kind="bad_response")
        ch = obj["choices"][0]
        msg = ch.get("message") or {}
        u = obj.get("usage") or None
        reason = ch.get("finish_reason")
        refusal, logprobs = msg.get("refusal"), ch.get("logprobs")
        if refusal or logprobs:  # carried back (the caller's message.refusal, choices[0].logprobs)
            reason = finish_with(reason, refusal=refusal or None, logprobs=logprobs or None)
        return Parsed(msg.get("content"), msg.get("tool_calls"), reason, self._usage(u),
                      obj.get("model"), obj.get("id"))

    @staticmethod
    def _usage(u: dict | None) -> dict | None:
        """An OpenAI-compatible ``usage`` (whole answers and streams) normalized.

        ``prompt_tokens_details``: ``cached_tokens`` (cache reads) and ``cache_write_tokens``
        (OpenRouter, Moonshot) are both part of ``prompt_tokens``. Reasoning tokens are part
        of ``completion_tokens`` (OpenAI's rule), except where the provider reports them
        beside it (xAI: ``total_tokens = prompt + completion + reasoning``): when
        ``total_tokens`` covers all three, they are added to the output."""
        if not u:
            return None
        details = u.get("prompt_tokens_details")  # (read once: most usages have neither details object)
        if isinstance(details, dict):
            cached, write = details.get("cached_tokens") or 0, details.get("cache_write_tokens") or 0
        else:
            cached = write = 0
        details = u.get("completion_tokens_details")
        reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
        prompt, out = u.get("prompt_tokens"), u.get("completion_tokens")
        if type(reasoning) is int and reasoning > 0:
            total = u.get("total_tokens")
            if type(total) is int and total >= _int(prompt) + _int(out) + reasoning:
                out = _int(out) + reasoning  # reported beside completion_tokens, billed as output
        # Perplexity's chat completions count the searches they ran (each billed apart)
        return _usage(prompt, out, cached, write, reasoning, searches=u.get("num_search_queries"))

    def stream_parser(self, provider: str) -> StreamState:
        return StreamState(self, provider)

    # -- embeddings (``POST {base}/embeddings``)
    token_inputs = True  #: takes inputs given as token ids (lists of ints)
    max_inputs: int | None = None  #: the most inputs one request may carry, when the API says so

    def embed_url(self, base: str, model: str) -> str | None:
        """The embeddings endpoint; None when the API has none."""
        return base.rstrip("/") + "/embeddings"

    def embed_body(self, model: str, inputs: list, params: dict) -> dict:
        # base64 float32, as the openai SDK asks by default (so every API its users call takes
        # it; one that answers floats anyway is read as well): the model's exact float32 values
        # in a third of the bytes, and decoded in C instead of parsed number by number
        body = {"model": model, "input": inputs, "encoding_format": "base64"}
        if params.get("dimensions"):
            body["dimensions"] = params["dimensions"]
        return body

    def parse_embeddings(self, obj: Any, provider: str, n: int) -> Embedded:
        if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
            if isinstance(obj, dict) and obj.get("error"):
                raise ProviderError(str(obj["error"])[:300], provider=provider, kind="server", retryable=True)
            raise ProviderError("answer has no data", provider=provider, kind="bad_response")
        data = obj["data"]
        if all(isinstance(d, dict) and type(d.get("index")) is int for d in data):
            data = sorted(data, key=lambda d: d["index"])
        vecs = _vectors([d.get("embedding") if isinstance(d, dict) else None for d in data], n, provider, "data")
        return Embedded(vecs, _input_usage(_count(obj, "usage", "prompt_tokens")), obj.get("model"))

    def on_event(self, st: StreamState, event: str | None, data: str) -> list[str]:
        out: list[Any] = []
        self.on_events(st, (data,), out, None)
        return out

    def on_events(self, st: StreamState, payloads: Any, out: list[Any], tools: bool | None) -> None:
        """The events of ``payloads`` (each one ``data:`` payload) in order: their text
        deltas appended to ``out``; after each event its tool-call deltas too (``tools``),
        or dropped (False), or left in ``st.tool_deltas`` (None: :meth:`on_event`'s caller
        takes them). Stops at the end marker (``st.done``). One call for a network read's
        events (:meth:`StreamState.feed_batch`) instead of a call and a list each."""
        loads = orjson.loads
        for data in payloads:
            if data == "[DONE]" or ("[DONE]" in data and data.strip() == "[DONE]"):  # (no copy of each event)
                st.done = True
                return
            try:
                obj = loads(data)
            except ValueError:
                obj = None
            if type(obj) is not dict or obj.get("error"):
                obj = _event(st, data)  # raises the error it is
            if not st.model:
                st.model = obj.get("model")
            if not st.id:
                st.id = obj.get("id")
            u = obj.get("usage")
            if u:
                st.usage = self._usage(u)
            for ch in obj.get("choices") or ():
                d = ch.get("delta")
                if not d:
                    if ch.get("finish_reason"):
                        st.finish_reason = ch["finish_reason"]
                    continue
                c = d.get("content")
                if c:
                    st.content.append(c)
                    out.append(c)
                elif d.get("refusal"):  # given back whole, with the finish reason
                    if st.refusal is None:
                        st.refusal = []
                    st.refusal.append(d["refusal"])
                elif not st.thought and (d.get("reasoning_content") or d.get("reasoning")
                                         or d.get("reasoning_details")):
                    st.thought = True
                for tc in d.get("tool_calls") or ():
                    i = tc.get("index", 0)
                    slot = st.tool_calls.setdefault(i, {"id": None, "type": "function",
                                                        "function": {"name": "", "arguments": ""}})
                    if tc.get("id"):
                        slot["id"] = tc["id"]
                    fn = tc.get("function") or {}
                    slot["function"]["name"] += fn.get("name") or ""
                    slot["function"]["arguments"] += fn.get("arguments") or ""
                    delta: dict[str, Any] = {"index": i}
                    if tc.get("id"):
                        delta["id"], delta["type"] = tc["id"], "function"
                    delta["function"] = {k: fn[k] for k in ("name", "arguments") if fn.get(k) is not None}
                    st.tool_deltas.append(delta)
                if ch.get("finish_reason"):
                    st.finish_reason = ch["finish_reason"]
            if tools is not None and st.tool_deltas:
                deltas = st.take_tool_deltas()
                if tools:
                    out += deltas


def _data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64) of a ``data:`` URL, else None."""
    if url.startswith("data:") and ";base64," in url:
        head, b64 = url[5:].split(";base64,", 1)
        return head, b64
    return None


#: Anthropic's content blocks OpenAI's terms say (text, tool calls); any other (thinking, a
#: server tool's) makes the answer's blocks come as they came (:attr:`Parsed.blocks`, :class:`Native`)
_THINKING = frozenset({"thinking", "redacted_thinking"})
_PLAIN = frozenset({"text", "tool_use"})


class AnthropicShape(Shape):
    """Anthropic Messages API (native): system prompt apart, content blocks, tool_use. An
    answer holding a server tool's blocks (web_search's ``server_tool_use`` and
    ``web_search_tool_result``, the text's ``citations``) carries them as they came:
    :attr:`Parsed.blocks`, and in a stream :class:`Native` events."""

    name = "anthropic"
    _STOP = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
             "refusal": "content_filter", "pause_turn": "stop", "model_context_window_exceeded": "length"}
    #: the reasons OpenAI's word says whole; any other is carried beside it (:class:`Finish`)
    _PLAIN = frozenset({"end_turn", "max_tokens", "tool_use", "refusal"})

    def _reason(self, stop: Any, sequence: Any) -> Any:
        """Anthropic's ``stop_reason`` in OpenAI's words, carrying its own (``stop_sequence`` and
        the sequence, ``pause_turn``…) when OpenAI's loses it."""
        if stop is None or stop in self._PLAIN:
            return self._STOP.get(stop, stop)
        return finish_with(self._STOP.get(stop, "stop"), native=stop,
                           stop_sequence=sequence if isinstance(sequence, str) else None)

    def url(self, base: str, model: str, stream: bool) -> str:
        return base.rstrip("/") + "/messages"

    def embed_url(self, base: str, model: str) -> str | None:
        return None  # Anthropic's API has no embeddings (it points to Voyage AI)

    @staticmethod
    def _blocks(content: Any) -> list[dict]:
        if content is None:
            return []
        if isinstance(content, str):
            return [{"type": "text", "text": content}]
        out = []
        for p in content:
            t = p.get("type")
            if t == "text":
                out.append({"type": "text", "text": p.get("text", "")})
            elif t == "image_url":
                url = (p.get("image_url") or {}).get("url", "")
                d = _data_url(url)
                src = ({"type": "base64", "media_type": d[0], "data": d[1]} if d else {"type": "url", "url": url})
                out.append({"type": "image", "source": src})
            else:
                out.append(p)
        return out

    def body(self, model: str, messages: list[dict], params: dict, stream: bool, ctx: dict) -> dict:
        native = params.get(ANTHROPIC_NATIVE) or {}  # what the gateway's /v1/messages kept of the caller's request
        errors = native.get("tool_errors") or ()
        turns = native.get("turns") or ()  # (the caller's assistant turns holding a server tool's blocks)
        thought = native.get("thought") or ()  # (those holding thinking blocks)
        said = 0  # assistant messages so far
        system, msgs = [], []
        for m in messages:
            role = m.get("role")
            if role == "assistant":
                said += 1
                given = turns[said - 1] if said <= len(turns) else None
                if given is None and said <= len(thought):
                    given = thought[said - 1]
                if given is not None:  # its blocks as the caller sent them (thinking, search results, citations)
                    msgs.append({"role": "assistant", "content": list(given)})
                    continue
            if role in ("system", "developer"):
                system.append(_text(m.get("content")))
            elif role == "tool":
                text = _text(m.get("content"))
                block = {"type": "tool_result", "tool_use_id": m.get("tool_call_id"), "content": text}
                if m.get("tool_call_id") in errors:  # (its text was marked for the other APIs)
                    block["is_error"] = True
                    if text.startswith("Error: "):
                        block["content"] = text[7:]
                if msgs and msgs[-1]["role"] == "user" and msgs[-1]["content"] and \
                        msgs[-1]["content"][-1].get("type") == "tool_result":
                    msgs[-1]["content"].append(block)
                else:
                    msgs.append({"role": "user", "content": [block]})
            elif role == "assistant" and m.get("tool_calls"):
                blocks = self._blocks(m.get("content"))
                for tc in m["tool_calls"]:
                    fn = tc.get("function") or {}
                    blocks.append({"type": "tool_use", "id": tc.get("id"), "name": fn.get("name"),
                                   "input": tool_args(fn.get("arguments"))})
                msgs.append({"role": "assistant", "content": blocks})
            else:
                msgs.append({"role": role, "content": self._blocks(m.get("content"))})
        p = dict(params)
        p.pop(ANTHROPIC_NATIVE, None)
        body: dict[str, Any] = {"model": model, "messages": msgs,
                                "max_tokens": p.pop("max_tokens", None) or p.pop("max_completion_tokens", None)
                                or min(ctx.get("max_output") or 4096, 4096)}  # required by the API
        blocks = native.get("system")
        if blocks and len(system) == 1:  # the caller's own blocks, their cache_control kept
            body["system"] = blocks
        elif system:
            body["system"] = "\n\n".join(system)
        if native.get("thinking") is not None:
            body["thinking"] = native["thinking"]
        for k in ("temperature", "top_p", "top_k", "metadata"):
            if k in p:
                body[k] = p.pop(k)
        user = p.pop("user", None)
        if isinstance(user, str) and user and "metadata" not in body:
            body["metadata"] = {"user_id": user}
        if "stop" in p:
            stop = p.pop("stop")
            body["stop_sequences"] = [stop] if isinstance(stop, str) else stop
        if p.get("tools"):
            body["tools"] = [{"name": t["function"]["name"], "description": t["function"].get("description", ""),
                              "input_schema": t["function"].get("parameters") or {"type": "object"}}
                             if t.get("type") == "function" else t for t in p.pop("tools")]
            tc = p.pop("tool_choice", None)
            if tc == "required":
                body["tool_choice"] = {"type": "any"}
            elif tc in ("auto", "none"):
                body["tool_choice"] = {"type": tc}
            elif isinstance(tc, dict):
                body["tool_choice"] = {"type": "tool", "name": (tc.get("function") or {}).get("name")}
            if p.get("parallel_tool_calls") is False and body.get("tool_choice", {}).get("type") != "none":
                body["tool_choice"] = {**body.get("tool_choice", {"type": "auto"}), "disable_parallel_tool_use": True}
        if p.get("logprobs"):
            raise _refused("logprobs", "Anthropic's API gives no log probabilities")
        rf = p.pop("response_format", None)
        if rf and rf.get("type") == "json_schema":
            # structured outputs (GA): output_config.format, no beta header
            body["output_config"] = {"format": {"type": "json_schema",
                                                "schema": (rf.get("json_schema") or {}).get("schema")}}
        elif rf and rf.get("type") == "json_object":
            raise _refused("response_format", "Anthropic's API has no schema-less JSON mode: send "
                           "{'type': 'json_schema', 'json_schema': {'schema': ...}} (its structured outputs)")
        if stream:
            body["stream"] = True
        return body

    def _parsed_usage(self, u: dict | None, out_tokens: Any = None) -> dict | None:
        """Anthropic's usage normalized: its ``input_tokens`` leave the cache reads and writes
        out (added back); ``cache_creation.ephemeral_1h_input_tokens`` are the writes at a
        1-hour TTL (priced apart; ``ephemeral_5m_input_tokens`` the rest);
        ``server_tool_use.web_search_requests`` are the searches its web_search server tool
        made (``web_searches``, each billed: the catalog's ``web_search`` price). (Its
        ``web_fetch_requests`` are free: the fetched pages are billed as input tokens.)"""
        if not u:
            return None
        if not all(_plausible(u.get(k)) for k in ("input_tokens", "cache_read_input_tokens",
                                                  "cache_creation_input_tokens")):
            return None  # not counts: the call's tokens are estimated (flagged)
        cr, cw = u.get("cache_read_input_tokens") or 0, u.get("cache_creation_input_tokens") or 0
        inp = (u.get("input_tokens") or 0) + cr + cw
        return _usage(inp, out_tokens if out_tokens is not None else u.get("output_tokens"), cr, cw,
                      write_1h=_count(u, "cache_creation", "ephemeral_1h_input_tokens"),
                      searches=_count(u, "server_tool_use", "web_search_requests"))

    def parse(self, obj: Any, provider: str) -> Parsed:
        if not isinstance(obj, dict) or not isinstance(obj.get("content"), list):
            raise ProviderError("answer has no content blocks", provider=provider, kind="bad_response")
        texts, calls = [], []
        native = False
        for b in obj["content"]:
            kind = b.get("type")
            if kind == "text":
                texts.append(b.get("text", ""))
            elif kind == "tool_use":
                calls.append({"id": b.get("id"), "type": "function",
                              "function": {"name": b.get("name"), "arguments": json.dumps(b.get("input") or {})}})
            elif kind is not None:
                native = True  # a thinking block, a server tool's (server_tool_use, web_search_tool_result…)
        return Parsed("".join(texts) if texts or not calls else None, calls,
                      self._reason(obj.get("stop_reason"), obj.get("stop_sequence")),
                      self._parsed_usage(obj.get("usage")), obj.get("model"), obj.get("id"),
                      list(obj["content"]) if native else None)

    @staticmethod
    def _native_start(st: StreamState, obj: dict, b: dict, kind: Any) -> list[str]:
        """A block of a stream that holds a thinking or a server tool's block (this one is
        the first, or came after it): given as it came (:class:`Native`), and kept in ``st.blocks``."""
        if st.native is None:  # the first: the blocks before it were text and tool calls
            st.native, st.partial = {}, {}
            st.blocks = [{"type": "text", "text": "".join(st.content)}] if st.content else []
            st.blocks += [{"type": "tool_use", "id": c["id"], "name": c["function"]["name"],
                           "input": tool_args(c["function"]["arguments"])}
                          for c in (st.tool_calls[i] for i in sorted(st.tool_calls))]
        if kind in _THINKING:
            st.thought = True
        i = obj.get("index", 0)
        st.native[i] = len(st.blocks)
        st.blocks.append(dict(b))
        st.tool_deltas.append(Native(obj))
        if kind == "server_tool_use" and b.get("name") == "web_search":
            st.searches += 1
        elif kind == "tool_use":
            ti = st._tool_index[i] = len(st._tool_index)
            st.tool_calls[i] = {"id": b.get("id"), "type": "function",
                                "function": {"name": b.get("name"), "arguments": ""}}
            # (and as a tool-call delta, as without such blocks: a caller that does not forward
            # the blocks as they came gets its calls this way)
            st.tool_deltas.append({"index": ti, "id": b.get("id"), "type": "function",
                                   "function": {"name": b.get("name"), "arguments": ""}})
        elif kind == "text" and b.get("text"):
            st.content.append(b["text"])
            return [b["text"]]
        return []

    @staticmethod
    def _native_delta(st: StreamState, obj: dict) -> list[str]:
        i = obj.get("index", 0)
        at = st.native.get(i)  # type: ignore[union-attr]
        if at is None:
            return []  # (a block that never started)
        st.tool_deltas.append(Native(obj))
        d = obj.get("delta") or {}
        kind = d.get("type")
        block = st.blocks[at]  # type: ignore[index]
        if kind == "thinking_delta":
            block["thinking"] = (block.get("thinking") or "") + d.get("thinking", "")
        elif kind == "signature_delta":
            block["signature"] = d.get("signature", "")
        elif kind == "text_delta":
            text = d.get("text", "")
            block["text"] = (block.get("text") or "") + text
            st.content.append(text)
            return [text]
        if kind == "input_json_delta":
            piece = d.get("partial_json", "")
            st.partial[i] = st.partial.get(i, "") + piece  # type: ignore[union-attr]
            if i in st.tool_calls:
                st.tool_calls[i]["function"]["arguments"] += piece
                if piece and i in st._tool_index:  # (its tool-call delta too, as for the start)
                    st.tool_deltas.append({"index": st._tool_index[i], "function": {"arguments": piece}})
        elif kind == "citations_delta":
            block["citations"] = [*(block.get("citations") or ()), d.get("citation")]
        return []

    @staticmethod
    def _native_stop(st: StreamState, obj: dict) -> list[str]:
        i = obj.get("index", 0)
        at = st.native.get(i)  # type: ignore[union-attr]
        if at is not None:
            piece = st.partial.pop(i, None)  # type: ignore[union-attr]
            if piece:
                st.blocks[at]["input"] = tool_args(piece)  # type: ignore[index]
            st.tool_deltas.append(Native(obj))
        return []

    def on_event(self, st: StreamState, event: str | None, data: str) -> list[str]:
        obj = _loads(data, st.provider, "stream event")
        t = obj.get("type") or event
        if t == "message_start":
            m = obj.get("message") or {}
            st.model, st.id = m.get("model"), m.get("id")
            raw = m.get("usage")
            st.raw_usage = dict(raw) if isinstance(raw, dict) else None
            st.usage = self._parsed_usage(st.raw_usage)
        elif t == "content_block_start":
            b = obj.get("content_block") or {}
            kind = b.get("type")
            if st.native is not None or (kind not in _PLAIN and kind is not None):
                return self._native_start(st, obj, b, kind)
            if kind == "tool_use":
                ti = st._tool_index[obj.get("index", 0)] = len(st._tool_index)
                st.tool_calls[obj.get("index", 0)] = {"id": b.get("id"), "type": "function",
                                                      "function": {"name": b.get("name"), "arguments": ""}}
                st.tool_deltas.append({"index": ti, "id": b.get("id"), "type": "function",
                                       "function": {"name": b.get("name"), "arguments": ""}})
            elif kind == "text" and b.get("text"):
                st.content.append(b["text"])
                return [b["text"]]
        elif t == "content_block_delta":
            if st.native is not None:
                return self._native_delta(st, obj)
            d = obj.get("delta") or {}
            if d.get("type") == "text_delta":
                st.content.append(d.get("text", ""))
                return [d.get("text", "")]
            if d.get("type") == "input_json_delta" and obj.get("index", 0) in st.tool_calls:
                st.tool_calls[obj.get("index", 0)]["function"]["arguments"] += d.get("partial_json", "")
                if d.get("partial_json"):
                    st.tool_deltas.append({"index": st._tool_index[obj.get("index", 0)],
                                           "function": {"arguments": d["partial_json"]}})
        elif t == "message_delta":
            d = obj.get("delta") or {}
            if d.get("stop_reason"):
                st.finish_reason = self._reason(d["stop_reason"], d.get("stop_sequence"))
            u = obj.get("usage")
            if isinstance(u, dict) and u:
                # the counts in message_delta are cumulative, and may be any of them (input and
                # cache counts too: server tools, Anthropic-compatible APIs whose message_start
                # has none): each one present overrides message_start's (server_tool_use too)
                raw = dict(st.raw_usage or {})
                raw.update({k: v for k, v in u.items() if v is not None})
                st.raw_usage = raw
                st.usage = self._parsed_usage(raw)
        elif t == "message_stop":
            st.done = True
        elif t == "error":
            e = obj.get("error") or {}
            raise ProviderError(str(e.get("message") or e)[:300], provider=st.provider, kind="server",
                                retryable=e.get("type") in ("overloaded_error", "api_error"))
        elif t == "content_block_stop" and st.native is not None:
            return self._native_stop(st, obj)
        return []


class GeminiShape(Shape):
    """Google Gemini ``generateContent`` / ``streamGenerateContent?alt=sse``."""

    name = "gemini"
    _STOP = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
             "PROHIBITED_CONTENT": "content_filter", "BLOCKLIST": "content_filter", "SPII": "content_filter",
             "IMAGE_SAFETY": "content_filter"}
    #: tool_choice in Gemini's words (functionCallingConfig.mode)
    _MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}

    def _reason(self, reason: str) -> str:
        """``finishReason`` in OpenAI's words; one OpenAI has none for (``MALFORMED_FUNCTION_CALL``,
        ``OTHER``, ``LANGUAGE``…) is ``stop``, carrying Gemini's own (:class:`Finish`)."""
        mapped = self._STOP.get(reason)
        if mapped is not None and reason not in ("PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "IMAGE_SAFETY"):
            return mapped
        return finish_with(mapped or "stop", native=reason)

    def url(self, base: str, model: str, stream: bool) -> str:
        verb = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{base.rstrip('/')}/models/{model}:{verb}"

    token_inputs = False
    max_inputs = 100  # batchEmbedContents: "at most 100 requests can be in one batch"

    def embed_url(self, base: str, model: str) -> str | None:
        return f"{base.rstrip('/')}/models/{model}:batchEmbedContents"

    def embed_body(self, model: str, inputs: list, params: dict) -> dict:
        extra = {"outputDimensionality": params["dimensions"]} if params.get("dimensions") else {}
        return {"requests": [{"model": f"models/{model}", "content": {"parts": [{"text": t}]}, **extra}
                             for t in inputs]}

    def parse_embeddings(self, obj: Any, provider: str, n: int) -> Embedded:
        if not isinstance(obj, dict):
            raise ProviderError("answer has no embeddings", provider=provider, kind="bad_response")
        items = obj.get("embeddings")
        vecs = _vectors([e.get("values") if isinstance(e, dict) else None for e in items]
                        if isinstance(items, list) else None, n, provider, "embeddings")
        # not in every answer: then Knollm estimates (``usage.estimated``)
        return Embedded(vecs, _input_usage(_count(obj, "usageMetadata", "promptTokenCount")))

    @staticmethod
    def _parts(content: Any) -> list[dict]:
        if isinstance(content, str) or content is None:
            return [{"text": content or ""}]
        out = []
        for p in content:
            if p.get("type") == "text":
                out.append({"text": p.get("text", "")})
            elif p.get("type") == "image_url":
                url = (p.get("image_url") or {}).get("url", "")
                d = _data_url(url)
                out.append({"inlineData": {"mimeType": d[0], "data": d[1]}} if d
                           else {"fileData": {"fileUri": url}})
        return out

    def body(self, model: str, messages: list[dict], params: dict, stream: bool, ctx: dict) -> dict:
        system, contents = [], []
        names: dict[Any, str] = {}  # tool call id -> function name (a tool message has only the id)
        results: list[dict] | None = None  # the parts of the user turn the tool results go in
        for i, m in enumerate(messages):
            role = m.get("role")
            if role != "tool":
                results = None
            if role in ("system", "developer"):
                system.append({"text": _text(m.get("content"))})
            elif role == "tool":
                name = m.get("name") or names.get(m.get("tool_call_id"))
                if not name:
                    raise _refused(f"messages[{i}].tool_call_id", "answers no tool call of an earlier assistant "
                                   "message: Gemini needs the function's name")
                part = {"functionResponse": {"name": name, "response": {"content": _text(m.get("content"))}}}
                if results is None:  # consecutive results: one turn, as many responses as calls
                    results = []
                    contents.append({"role": "user", "parts": results})
                results.append(part)
            elif role == "assistant":
                parts = self._parts(m.get("content")) if m.get("content") else []
                for tc in m.get("tool_calls") or []:
                    fn = tc.get("function") or {}
                    names[tc.get("id")] = fn.get("name")
                    parts.append({"functionCall": {"name": fn.get("name"), "args": tool_args(fn.get("arguments"))}})
                contents.append({"role": "model", "parts": parts})
            else:
                contents.append({"role": "user", "parts": self._parts(m.get("content"))})
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": system}
        gc: dict[str, Any] = {}
        for src, dst in (("max_tokens", "maxOutputTokens"), ("max_completion_tokens", "maxOutputTokens"),
                         ("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK"), ("seed", "seed"),
                         ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty")):
            if params.get(src) is not None:
                gc[dst] = params[src]
        if params.get("stop"):
            gc["stopSequences"] = [params["stop"]] if isinstance(params["stop"], str) else params["stop"]
        rf = params.get("response_format") or {}
        if rf.get("type") in ("json_object", "json_schema"):
            gc["responseMimeType"] = "application/json"
            if rf.get("type") == "json_schema":
                gc["responseJsonSchema"] = (rf.get("json_schema") or {}).get("schema")
        if params.get("logprobs"):
            raise _refused("logprobs", "not carried to Gemini's API by the gateway")
        if gc:
            body["generationConfig"] = gc
        if params.get("tools"):
            body["tools"] = [{"functionDeclarations": [
                {"name": t["function"]["name"], "description": t["function"].get("description", ""),
                 "parameters": t["function"].get("parameters") or {"type": "object"}}
                for t in params["tools"] if t.get("type") == "function"]}]
            tc = params.get("tool_choice")
            if isinstance(tc, dict):
                fname = (tc.get("function") or {}).get("name")
                if not isinstance(fname, str) or not fname:
                    raise _refused("tool_choice", "must be 'auto', 'none', 'required' or "
                                   "{'type': 'function', 'function': {'name': ...}}")
                body["toolConfig"] = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [fname]}}
            elif tc is not None:
                mode = self._MODES.get(tc)
                if mode is None:
                    raise _refused("tool_choice", f"{tc!r} is not 'auto', 'none' or 'required'")
                body["toolConfig"] = {"functionCallingConfig": {"mode": mode}}
        return body

    def _apply(self, obj: dict, st_content: list[str], calls: dict[int, dict]) -> tuple[list[str], str | None, dict | None]:
        out = []
        finish = None
        for c in (obj.get("candidates") or [])[:1]:
            for p in (c.get("content") or {}).get("parts") or []:
                if "text" in p and not p.get("thought"):
                    st_content.append(p["text"])
                    out.append(p["text"])
                elif "functionCall" in p:
                    fc = p["functionCall"]
                    calls[len(calls)] = {"id": f"call_{len(calls)}", "type": "function",
                                         "function": {"name": fc.get("name"), "arguments": json.dumps(fc.get("args") or {})}}
            if c.get("finishReason"):
                finish = self._reason(c["finishReason"])
        um = obj.get("usageMetadata")
        if um:
            thoughts = um.get("thoughtsTokenCount")  # (billed as output: counted in it, and said apart)
            # the prompt of a built-in tool (Google Search grounding, code execution, URL context)
            # is billed as input, and is in totalTokenCount, not in promptTokenCount
            prompt, tool = um.get("promptTokenCount"), um.get("toolUsePromptTokenCount")
            usage = _usage(None if prompt is None and tool is None else _int(prompt) + _int(tool),
                           (um.get("candidatesTokenCount") or 0) + (thoughts or 0),
                           um.get("cachedContentTokenCount"), 0, thoughts)
        else:
            usage = None
        return out, finish, usage

    def parse(self, obj: Any, provider: str) -> Parsed:
        if not isinstance(obj, dict) or not obj.get("candidates"):
            raise ProviderError("answer has no candidates", provider=provider, kind="bad_response")
        content: list[str] = []
        calls: dict[int, dict] = {}
        _, finish, usage = self._apply(obj, content, calls)
        if calls and finish == "stop":
            finish = "tool_calls"
        return Parsed("".join(content) if content or not calls else None, [calls[i] for i in sorted(calls)], finish,
                      usage, obj.get("modelVersion"), obj.get("responseId"))

    def on_event(self, st: StreamState, event: str | None, data: str) -> list[str]:
        obj = _event(st, data)
        before = len(st.tool_calls)
        out, finish, usage = self._apply(obj, st.content, st.tool_calls)
        st._whole_calls(before)
        if not out and not st.thought:  # a thought summary (includeThoughts): the model is working
            st.thought = any(isinstance(p, dict) and p.get("thought")
                             for c in (obj.get("candidates") or [])[:1]
                             for p in (c.get("content") or {}).get("parts") or ())
        if finish:
            st.finish_reason = "tool_calls" if st.tool_calls and finish == "stop" else finish
        if usage:
            st.usage = usage
        st.model = st.model or obj.get("modelVersion")
        return out


class OllamaShape(Shape):
    """Ollama's native ``/api/chat`` (NDJSON stream); sets ``options.num_ctx``."""

    name = "ollama"
    ndjson = True

    def url(self, base: str, model: str, stream: bool) -> str:
        base = base.rstrip("/")
        return (base[:-3] if base.endswith("/v1") else base) + "/api/chat"

    token_inputs = False

    def embed_url(self, base: str, model: str) -> str | None:
        base = base.rstrip("/")
        return (base[:-3] if base.endswith("/v1") else base) + "/api/embed"

    def embed_body(self, model: str, inputs: list, params: dict) -> dict:
        # truncate: false: an input over the context window is an error (and a fallback), not a
        # vector of its first part only
        body = {"model": model, "input": inputs, "truncate": False}
        if params.get("dimensions"):
            body["dimensions"] = params["dimensions"]
        return body

    def parse_embeddings(self, obj: Any, provider: str, n: int) -> Embedded:
        if not isinstance(obj, dict):
            raise ProviderError("answer has no embeddings", provider=provider, kind="bad_response")
        return Embedded(_vectors(obj.get("embeddings"), n, provider, "embeddings"),
                        _input_usage(obj.get("prompt_eval_count")), obj.get("model"))

    def body(self, model: str, messages: list[dict], params: dict, stream: bool, ctx: dict) -> dict:
        msgs = []
        for i, m in enumerate(messages):
            c = m.get("content")
            role = m.get("role")
            out = {"role": "system" if role == "developer" else role, "content": _text(c)}
            imgs = []
            for j, p in enumerate(c if isinstance(c, list) else ()):
                if p.get("type") == "image_url":
                    d = _data_url((p.get("image_url") or {}).get("url", ""))
                    if d is None:  # Ollama fetches nothing: its images are base64
                        raise _refused(f"messages[{i}].content[{j}].image_url.url", "Ollama takes images as "
                                       "base64 data URLs (data:image/png;base64,...), not http(s) URLs")
                    imgs.append(d[1])
            if imgs:
                out["images"] = imgs
            if m.get("tool_calls"):
                out["tool_calls"] = [{"function": {"name": tc["function"]["name"],
                                                   "arguments": tool_args(tc["function"].get("arguments"))}}
                                     for tc in m["tool_calls"]]
            msgs.append(out)
        options: dict[str, Any] = {"num_ctx": ctx.get("num_ctx") or 4096}
        for src, dst in (("max_tokens", "num_predict"), ("max_completion_tokens", "num_predict"),
                         ("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k"), ("seed", "seed"),
                         ("stop", "stop"), ("presence_penalty", "presence_penalty"),
                         ("frequency_penalty", "frequency_penalty")):
            if params.get(src) is not None:
                options[dst] = params[src]
        if isinstance(options.get("stop"), str):  # (an array in Ollama's options)
            options["stop"] = [options["stop"]]
        if params.get("logprobs"):
            raise _refused("logprobs", "not carried to Ollama's API by the gateway")
        body: dict[str, Any] = {"model": model, "messages": msgs, "stream": stream, "options": options}
        if params.get("tools"):
            body["tools"] = params["tools"]
        rf = params.get("response_format") or {}
        if rf.get("type") == "json_schema":
            body["format"] = (rf.get("json_schema") or {}).get("schema")
        elif rf.get("type") == "json_object":
            body["format"] = "json"
        return body

    @staticmethod
    def _calls(msg: dict) -> list[dict]:
        return [{"id": f"call_{i}", "type": "function",
                 "function": {"name": (tc.get("function") or {}).get("name"),
                              "arguments": json.dumps((tc.get("function") or {}).get("arguments") or {})}}
                for i, tc in enumerate(msg.get("tool_calls") or [])]

    def _finish(self, obj: dict, calls: bool) -> str:
        r = obj.get("done_reason") or "stop"
        return "tool_calls" if calls else ("length" if r == "length" else r)

    def parse(self, obj: Any, provider: str) -> Parsed:
        if not isinstance(obj, dict) or not isinstance(obj.get("message"), dict):
            raise ProviderError("answer has no message", provider=provider, kind="bad_response")
        msg = obj["message"]
        calls = self._calls(msg)
        return Parsed(msg.get("content") if msg.get("content") or not calls else None, calls,
                      self._finish(obj, bool(calls)), _usage(obj.get("prompt_eval_count"), obj.get("eval_count")),
                      obj.get("model"))

    def on_event(self, st: StreamState, event: str | None, data: str) -> list[str]:
        obj = _event(st, data, "stream line")
        st.model = st.model or obj.get("model")
        msg = obj.get("message") or {}
        out = []
        if msg.get("content"):
            st.content.append(msg["content"])
            out.append(msg["content"])
        elif msg.get("thinking"):
            st.thought = True
        before = len(st.tool_calls)
        for c in self._calls(msg):
            st.tool_calls[len(st.tool_calls)] = c
        st._whole_calls(before)
        if obj.get("done"):
            st.done = True
            st.finish_reason = self._finish(obj, bool(st.tool_calls))
            st.usage = _usage(obj.get("prompt_eval_count"), obj.get("eval_count"))
        return out


SHAPES: dict[str, Shape] = {s.name: s for s in (Shape(), AnthropicShape(), GeminiShape(), OllamaShape())}


def get_shape(name: str | None) -> Shape | None:
    return SHAPES.get(name or "openai")
