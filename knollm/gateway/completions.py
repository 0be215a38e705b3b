"""OpenAI's legacy text completions (``POST /v1/completions``) over chat completions.

What ``client.completions.create(...)`` sends, and what frameworks send by default through
an OpenAI-compatible base URL (LlamaIndex's ``OpenAILike`` unless ``is_chat_model=True``,
LangChain's ``OpenAI`` LLM class): the ``prompt`` goes to the model as one user message,
and the chat answer (or each chunk of a stream) comes back as a ``text_completion``. Pure
functions over JSON dicts, like :mod:`knollm.gateway.translate`.

A chat model answers the prompt as a message rather than continuing its text, and what
only a completions model can do is refused with a 400 naming the field rather than
ignored: several prompts in one request, token-id prompts, ``suffix``, ``echo``,
``logprobs``, ``best_of`` > 1, ``n`` > 1. ``max_tokens`` is passed on when given; unset,
the model's own limit applies (OpenAI's legacy endpoint would stop at 16 tokens).
"""

from __future__ import annotations

from typing import Any

from knollm.errors import GatewayError
from knollm.gateway.translate import validate_chat_request

__all__ = ["completions_to_chat", "chat_to_completion", "completion_chunk"]

#: fields passed on to the chat request as they are
_PASSED = ("model", "max_tokens", "temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty",
           "logit_bias", "user", "stream", "stream_options", "n")


def _bad(message: str, param: str) -> GatewayError:
    return GatewayError(message, status=400, type="invalid_request_error", code=param)


def completions_to_chat(body: Any) -> dict[str, Any]:
    """A completions request as a checked chat-completions request."""
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object", "body")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise _bad("'prompt' must be one string (several prompts, or token ids, need a completions model: "
                   "send one request per prompt)", "prompt")
    if body.get("suffix"):
        raise _bad("'suffix' (insertion) is not supported by the gateway: chat models do not take it", "suffix")
    if body.get("echo"):
        raise _bad("'echo' is not supported by the gateway: chat models do not return the prompt", "echo")
    if body.get("logprobs") is not None:
        raise _bad("'logprobs' is not supported by the gateway's completions", "logprobs")
    if (body.get("best_of") or 1) != 1:
        raise _bad("'best_of' > 1 is not supported by the gateway", "best_of")
    unknown = sorted(k for k in body if k not in _PASSED and k not in ("prompt", "suffix", "echo", "logprobs",
                                                                         "best_of"))
    if unknown:
        raise _bad(f"unsupported field(s) for completions: {', '.join(unknown)}", unknown[0])
    chat = {k: body[k] for k in _PASSED if body.get(k) is not None}
    chat["messages"] = [{"role": "user", "content": prompt}]
    return validate_chat_request(chat)


def _choice(text: str | None, finish: str | None) -> dict[str, Any]:
    return {"text": text or "", "index": 0, "logprobs": None, "finish_reason": finish}


def chat_to_completion(resp: dict[str, Any]) -> dict[str, Any]:
    """A chat completion as a ``text_completion`` (a tool call has no text form: the model
    was given no tools, so none is expected)."""
    ch = (resp.get("choices") or [{}])[0]
    out = {"id": "cmpl-" + str(resp.get("id") or "").removeprefix("chatcmpl-"), "object": "text_completion",
           "created": resp.get("created"), "model": resp.get("model"),
           "choices": [_choice((ch.get("message") or {}).get("content"), ch.get("finish_reason") or "stop")]}
    u = resp.get("usage")
    if u is not None:
        out["usage"] = {k: u.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    return out


def completion_chunk(chunk: dict[str, Any]) -> dict[str, Any]:
    """One chat-completion chunk as a ``text_completion`` chunk (the usage chunk keeps no
    choices, as OpenAI sends it with ``stream_options.include_usage``)."""
    out = {"id": "cmpl-" + str(chunk.get("id") or "").removeprefix("chatcmpl-"), "object": "text_completion",
           "created": chunk.get("created"), "model": chunk.get("model"),
           "choices": [_choice((c.get("delta") or {}).get("content"), c.get("finish_reason"))
                       for c in chunk.get("choices") or ()]}
    if chunk.get("usage") is not None:
        out["usage"] = chunk["usage"]
    return out
