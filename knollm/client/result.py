"""What a call returns: :class:`ChatResult`, :class:`EmbeddingResult` and the OpenAI-shaped
facade objects."""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Usage", "ChatResult", "EmbeddingResult", "OpenAIObject", "new_id", "vector_base64"]

_ID_PREFIX = os.urandom(8).hex()
_ID_COUNT = itertools.count()


def _reseed() -> None:
    global _ID_PREFIX, _ID_COUNT
    _ID_PREFIX, _ID_COUNT = os.urandom(8).hex(), itertools.count()


os.register_at_fork(after_in_child=_reseed)


def new_id() -> str:
    """32 hex digits, unique across processes and machines: 64 random bits drawn once per
    process (again in a forked child) and a 64-bit counter. Request and response ids on
    the hot path: ``uuid4`` asks the kernel for randomness on every id (~2 us)."""
    return f"{_ID_PREFIX}{next(_ID_COUNT):016x}"


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    estimated: bool = False
    #: the output tokens the model spent reasoning, when the provider says (OpenAI-compatible
    #: ``completion_tokens_details.reasoning_tokens``, Gemini's ``thoughtsTokenCount``), else
    #: None. Already part of ``output_tokens`` (as the providers bill them): never added to it.
    #: Priced at the catalog's ``reasoning_output`` price when it has one, else as output
    reasoning_tokens: int | None = None
    #: the cache writes at a 1-hour TTL (Anthropic's ``cache_creation.ephemeral_1h_input_tokens``),
    #: part of ``cache_write_tokens``; priced at the catalog's ``cache_write_1h`` price
    cache_write_1h_tokens: int = 0
    #: the web searches a provider-run search tool made (Anthropic's web_search server tool:
    #: ``usage.server_tool_use.web_search_requests``; Perplexity's ``num_search_queries``),
    #: billed apart from the tokens at the catalog's ``web_search`` price
    web_searches: int = 0


@dataclass
class ChatResult:
    """One answered call.

    ``candidates`` lists every deployment considered (``status`` eligible/excluded, with
    ``reason`` or ``rank``); ``why`` says why the one that answered was picked;
    ``attempts`` has one entry per HTTP attempt (provider, model, key label, status,
    error class, duration_ms). ``cost_usd`` is None when a price is unknown, and then
    ``unpriced_reason`` says why (never a silent $0). ``tag`` is the call's ``tag=`` (who
    made it), as written to the ledger row.

    ``ttft_ms`` and ``duration_ms`` run from the start of the answering attempt, so they
    include opening its connection when it opened one; ``connect_ms`` is that part (TCP
    connect with the name lookup, and the TLS handshake), 0.0 when the attempt reused a
    kept-alive connection, None when the HTTP driver does not measure it (only the sync
    :class:`~knollm.client.Client`'s does).
    """

    content: str | None
    provider: str
    model: str
    key: str | None
    target: Any
    finish_reason: str | None = None
    tool_calls: list[dict] | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None
    price_source: str | None = None
    unpriced_reason: str | None = None
    ttft_ms: float | None = None
    duration_ms: float = 0.0
    attempts: list[dict] = field(default_factory=list)
    candidates: list[dict] = field(default_factory=list)
    strategy: str = "priority"
    why: str = ""
    alias: str | None = None
    request_id: str = ""
    response_id: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    tag: str | None = None
    connect_ms: float | None = None
    #: an Anthropic answer holding a server tool's blocks (its web_search tool's
    #: ``server_tool_use`` and ``web_search_tool_result``, text with ``citations``): all its
    #: content blocks, in order, as the provider gave them (thinking left out); else None
    #: (``content`` and ``tool_calls`` say the answer). The gateway's ``/v1/messages`` gives these.
    blocks: list[dict] | None = None

    @property
    def text(self) -> str:
        return self.content or ""

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape (``knollm chat --json``). Never holds key values."""
        return {
            "content": self.content,
            "tool_calls": self.tool_calls,
            "finish_reason": self.finish_reason,
            "provider": self.provider,
            "model": self.model,
            "key": self.key,
            "usage": {"input_tokens": self.usage.input_tokens, "output_tokens": self.usage.output_tokens,
                      "cached_tokens": self.usage.cached_tokens, "cache_write_tokens": self.usage.cache_write_tokens,
                      "web_searches": self.usage.web_searches, "estimated": self.usage.estimated},
            "cost_usd": self.cost_usd,
            "price_source": self.price_source,
            "unpriced_reason": self.unpriced_reason,
            "ttft_ms": self.ttft_ms,
            "duration_ms": self.duration_ms,
            "strategy": self.strategy,
            "why": self.why,
            "alias": self.alias,
            "tag": self.tag,
            "attempts": self.attempts,
            "candidates": self.candidates,
            **({"blocks": self.blocks} if self.blocks is not None else {}),  # (an Anthropic server tool's answer)
        }

    @property
    def refusal(self) -> str | None:
        """An OpenAI-compatible provider's ``message.refusal`` (carried by the finish reason,
        a :class:`knollm.client.transports.Finish`), else None."""
        return getattr(self.finish_reason, "refusal", None)

    @property
    def logprobs(self) -> Any:
        """An OpenAI-compatible provider's ``choices[0].logprobs`` when asked for, else None."""
        return getattr(self.finish_reason, "logprobs", None)

    @property
    def stop_sequence(self) -> str | None:
        """The stop sequence that ended the answer, when the provider says (Anthropic's API)."""
        return getattr(self.finish_reason, "stop_sequence", None)

    def message(self) -> dict[str, Any]:
        m: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            m["tool_calls"] = self.tool_calls
        f = self.finish_reason
        if type(f) is not str and f is not None and getattr(f, "refusal", None) is not None:
            m["refusal"] = f.refusal
        return m

    def openai_usage(self) -> dict[str, Any]:
        """The ``usage`` of :meth:`model_dump` (OpenAI's words)."""
        u = self.usage
        usage: dict[str, Any] = {"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens,
                                 "total_tokens": u.input_tokens + u.output_tokens,
                                 "prompt_tokens_details": {"cached_tokens": u.cached_tokens}}
        if u.reasoning_tokens is not None:  # (counted in completion_tokens already, as OpenAI's are)
            usage["completion_tokens_details"] = {"reasoning_tokens": u.reasoning_tokens}
        return usage

    def model_dump(self, *, knollm: bool = True) -> dict[str, Any]:
        """This result as an OpenAI ``ChatCompletion`` dict, plus a ``knollm`` extra (all of
        :meth:`to_dict` but the message) unless ``knollm=False``."""
        usage = self.openai_usage()
        d = {
            "id": self.response_id or f"chatcmpl-{self.request_id}",
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": self.message(), "finish_reason": self.finish_reason or "stop",
                         "logprobs": None if type(self.finish_reason) is str else self.logprobs}],
            "usage": usage,
        }
        if knollm:
            d["knollm"] = {k: v for k, v in self.to_dict().items() if k not in ("content", "tool_calls")}
        return d


def vector_base64(v: list[float] | bytes) -> str:
    """One embedding as OpenAI's ``encoding_format: base64`` gives it: little-endian
    float32, base64 (what the openai SDK asks for by default, and decodes)."""
    import base64
    import struct

    if isinstance(v, bytes):
        return getattr(v, "b64", None) or base64.b64encode(v).decode("ascii")
    return base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode("ascii")


def _floats(v: list[float] | bytes) -> list[float]:
    if isinstance(v, bytes):
        import struct

        return list(struct.unpack(f"<{len(v) // 4}f", v))
    return v


@dataclass
class EmbeddingResult:
    """One answered embeddings call: :attr:`vectors`, one per input in the inputs' order, and
    the accounting fields of :class:`ChatResult`, meaning the same (input tokens only:
    ``usage.output_tokens`` is 0; ``cost_usd`` None with ``unpriced_reason`` when the input
    price is unknown). Its own fields, not a shared base: ``ChatResult`` keeps the
    positional order it was published with.

    ``raw`` holds each vector as the provider sent it: floats, or float32 little-endian
    bytes (from base64), which :attr:`vectors` turns into floats on first read."""

    raw: list = field(repr=False)
    provider: str
    model: str
    key: str | None
    target: Any
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None
    price_source: str | None = None
    unpriced_reason: str | None = None
    duration_ms: float = 0.0
    attempts: list[dict] = field(default_factory=list)
    candidates: list[dict] = field(default_factory=list)
    strategy: str = "priority"
    why: str = ""
    alias: str | None = None
    request_id: str = ""
    tag: str | None = None

    @property
    def vectors(self) -> list[list[float]]:
        got = self.__dict__.get("_vectors")
        if got is None:
            got = self.__dict__["_vectors"] = [_floats(v) for v in self.raw]
        return got

    @property
    def dimensions(self) -> int | None:
        if not self.raw:
            return None
        v = self.raw[0]
        return len(v) // 4 if isinstance(v, bytes) else len(v)

    def to_dict(self, *, vectors: bool = True) -> dict[str, Any]:
        """The stable JSON shape: the accounting, and the vectors (``embeddings``) unless
        ``vectors=False``. Never holds key values."""
        d: dict[str, Any] = {"embeddings": self.vectors} if vectors else {}
        d.update({
            "count": len(self.raw), "dimensions": self.dimensions, "provider": self.provider,
            "model": self.model, "key": self.key,
            "usage": {"input_tokens": self.usage.input_tokens, "estimated": self.usage.estimated},
            "cost_usd": self.cost_usd, "price_source": self.price_source, "unpriced_reason": self.unpriced_reason,
            "duration_ms": self.duration_ms, "strategy": self.strategy, "why": self.why, "alias": self.alias,
            "tag": self.tag, "attempts": self.attempts, "candidates": self.candidates,
        })
        return d

    def model_dump(self, *, knollm: bool = True, encoding_format: str = "float") -> dict[str, Any]:
        """This result as an OpenAI ``CreateEmbeddingResponse`` dict (vectors as floats, or
        base64 float32 with ``encoding_format="base64"``), plus a ``knollm`` extra (the
        accounting of :meth:`to_dict`) unless ``knollm=False``."""
        vecs = [vector_base64(v) for v in self.raw] if encoding_format == "base64" else self.vectors
        d: dict[str, Any] = {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vecs)],
            "model": self.model,
            "usage": {"prompt_tokens": self.usage.input_tokens, "total_tokens": self.usage.input_tokens},
        }
        if knollm:
            d["knollm"] = self.to_dict(vectors=False)
        return d


class OpenAIObject:
    """Attribute access over an OpenAI-shaped dict (``obj.choices[0].message.content``);
    ``model_dump()`` returns the dict."""

    __slots__ = ("_d",)

    def __init__(self, d: dict[str, Any]) -> None:
        object.__setattr__(self, "_d", d)

    def __getattr__(self, name: str) -> Any:
        try:
            v = self._d[name]
        except KeyError:
            raise AttributeError(name) from None
        return _wrap(v)

    def __getitem__(self, name: str) -> Any:
        return _wrap(self._d[name])

    def __repr__(self) -> str:
        return f"OpenAIObject({self._d!r})"

    def model_dump(self, **_: Any) -> dict[str, Any]:
        return self._d

    def to_dict(self) -> dict[str, Any]:
        return self._d


def _wrap(v: Any) -> Any:
    if isinstance(v, dict):
        return OpenAIObject(v)
    if isinstance(v, list):
        return [_wrap(x) for x in v]
    return v


def usage_dict(u: Usage) -> dict:
    return asdict(u)
