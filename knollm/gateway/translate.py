"""Request validation for ``/v1/chat/completions`` and the Anthropic Messages <-> OpenAI
chat-completions translation used by ``/v1/messages``.

Pure functions over JSON dicts (no I/O): the gateway parses an Anthropic request into an
OpenAI one, runs it like any other chat request, and turns the OpenAI answer (or stream of
chunks) back into Anthropic's shape with :class:`AnthropicStream`.
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterator

from knollm.errors import GatewayError

__all__ = [
    "validate_chat_request",
    "validate_embeddings_request",
    "split_target",
    "anthropic_to_openai",
    "openai_to_anthropic",
    "AnthropicStream",
    "STOP_REASONS",
    "chunk_parts",
]

#: the request parameter for what only an Anthropic upstream takes
#: (:data:`knollm.client.transports.ANTHROPIC_NATIVE`)
ANTHROPIC_NATIVE = "x_anthropic"
_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
_PART_TYPES = {"text", "image_url", "input_audio", "file", "refusal"}
_RF_TYPES = {"text", "json_object", "json_schema"}


def _bad(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(message, status=400, type="invalid_request_error", code=param)


#: fields of an OpenAI embeddings request the gateway takes (``user`` is accepted, not passed on)
_EMBED_FIELDS = ("model", "input", "dimensions", "encoding_format", "user")


def validate_embeddings_request(body: Any) -> dict[str, Any]:
    """Check an OpenAI embeddings body; raise :class:`GatewayError` (400) naming the field.
    Returns ``{"model", "input" (a list), "encoding_format"}`` plus ``dimensions`` if given.
    A field the gateway cannot carry to every provider (``input_type``, ``task_type``…) is
    refused, not dropped: the vectors would silently differ from what was asked."""
    from knollm.client.transports import embed_params

    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    split_target(body.get("model"))
    extra = sorted(k for k in body if k not in _EMBED_FIELDS)
    if extra:
        raise _bad(f"unsupported field(s) for embeddings: {', '.join(extra)} (the gateway takes "
                   "model, input, dimensions, encoding_format, user)", extra[0])
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise _bad("'encoding_format' must be 'float' or 'base64'", "encoding_format")
    try:
        p = embed_params({k: body[k] for k in ("input", "dimensions") if body.get(k) is not None})
    except ValueError as e:
        raise _bad(str(e), "dimensions" if "dimensions" in str(e) else "input") from None
    return {"model": body["model"], "encoding_format": fmt, **p}


def split_target(model: Any) -> list[str]:
    """The ``model`` field as a fallback chain: ``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]``."""
    if isinstance(model, str):
        parts = [p.strip() for p in model.split(",")]
    elif isinstance(model, list) and all(isinstance(p, str) for p in model):
        parts = [p.strip() for p in model]
    else:
        raise _bad("'model' must be a string (a catalog key, canonical id, alias or 'a,b' chain)", "model")
    parts = [p for p in parts if p]
    if not parts:
        raise _bad("'model' is required", "model")
    return parts


def _check_tool_calls(calls: Any, where: str) -> None:
    """An assistant message's ``tool_calls``: ``[{"id", "type": "function", "function":
    {"name", "arguments"}}]``, the arguments a string (JSON as the model wrote it: one a
    model cut short is passed on as it is; see :func:`knollm.client.transports.tool_args`)."""
    if not isinstance(calls, list):
        raise _bad(f"{where} must be an array of tool calls", where)
    for j, call in enumerate(calls):
        cw = f"{where}[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(call, dict) or not isinstance(call.get("id"), str) or call.get("type") != "function" \
                or not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"] \
                or not isinstance(fn.get("arguments"), str):
            raise _bad(f"{cw} must be {{'id': str, 'type': 'function', 'function': {{'name': str, "
                       "'arguments': str}}", cw)


def validate_chat_request(body: Any) -> dict[str, Any]:
    """Check an OpenAI chat-completions body; raise :class:`GatewayError` (400) naming the
    offending field. Returns the body unchanged (it is passed on as is)."""
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    split_target(body.get("model"))
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty array", "messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise _bad(f"messages[{i}] must be an object", f"messages[{i}]")
        role = m.get("role")
        if role not in _ROLES:
            raise _bad(f"messages[{i}].role must be one of {sorted(_ROLES)}, got {role!r}", f"messages[{i}].role")
        content = m.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") not in _PART_TYPES:
                    raise _bad(f"messages[{i}].content[{j}] has an unknown type", f"messages[{i}].content[{j}]")
                if part["type"] == "text" and not isinstance(part.get("text"), str):
                    raise _bad(f"messages[{i}].content[{j}].text must be a string", f"messages[{i}].content[{j}].text")
                if part["type"] == "image_url":
                    url = (part.get("image_url") or {}).get("url") if isinstance(part.get("image_url"), dict) else None
                    if not isinstance(url, str) or not url:
                        raise _bad(f"messages[{i}].content[{j}].image_url.url is required",
                                   f"messages[{i}].content[{j}]")
        elif content is not None and not isinstance(content, str):
            raise _bad(f"messages[{i}].content must be a string or an array of parts", f"messages[{i}].content")
        elif content is None and role not in ("assistant",):
            raise _bad(f"messages[{i}].content is required for role {role!r}", f"messages[{i}].content")
        if role == "tool" and not isinstance(m.get("tool_call_id"), str):
            raise _bad(f"messages[{i}].tool_call_id is required for role 'tool'", f"messages[{i}].tool_call_id")
        if m.get("tool_calls") is not None:
            _check_tool_calls(m["tool_calls"], f"messages[{i}].tool_calls")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _bad("'stream' must be a boolean", "stream")
    so = body.get("stream_options")
    if so is not None and (not isinstance(so, dict) or not isinstance(so.get("include_usage", False), bool)):
        raise _bad("'stream_options' must be an object, its 'include_usage' a boolean", "stream_options")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad("'tools' must be an array", "tools")
        for i, t in enumerate(tools):
            fn = t.get("function") if isinstance(t, dict) else None
            if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(fn, dict) \
                    or not isinstance(fn.get("name"), str) or not fn["name"]:
                raise _bad(f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ...}}}}", f"tools[{i}]")
    rf = body.get("response_format")
    if rf is not None:
        if not isinstance(rf, dict) or rf.get("type") not in _RF_TYPES:
            raise _bad(f"'response_format.type' must be one of {sorted(_RF_TYPES)}", "response_format")
        if rf["type"] == "json_schema" and not isinstance(rf.get("json_schema"), dict):
            raise _bad("'response_format.json_schema' must be an object (with a 'schema' object)",
                       "response_format.json_schema")
        if rf["type"] == "json_schema" and not isinstance(rf["json_schema"].get("schema"), dict):
            raise _bad("'response_format.json_schema.schema' must be an object", "response_format")
    for key in ("max_tokens", "max_completion_tokens", "n"):
        v = body.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise _bad(f"'{key}' must be a positive integer", key)
    if (body.get("n") or 1) > 1:
        raise _bad("'n' > 1 is not supported by the gateway", "n")
    for key in ("temperature", "top_p"):
        v = body.get(key)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool)):
            raise _bad(f"'{key}' must be a number", key)
    if body.get("logprobs") and body.get("stream"):
        raise _bad("'logprobs' is not supported on a stream by the gateway (a whole answer carries them back "
                   "from an OpenAI-compatible provider)", "logprobs")
    return body


# --------------------------------------------------------------------------- Anthropic -> OpenAI
#: what joins text blocks that become one chat string (the client's Anthropic shape joins
#: system messages the same way)
_TEXT_SEP = "\n\n"


def _block_text(block: dict[str, Any], where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise _bad(f"{where}.text must be a string", f"{where}.text")
    return text


def _joined(texts: list[str]) -> str:
    return _TEXT_SEP.join(t for t in texts if t) if len(texts) > 1 else "".join(texts)


def _system_text(system: Any) -> str:
    """``system``: a string, or an array of text blocks (joined by a blank line)."""
    if isinstance(system, str):
        return system
    if not isinstance(system, list):
        raise _bad("'system' must be a string or an array of text blocks", "system")
    texts = []
    for j, b in enumerate(system):
        if not isinstance(b, dict) or b.get("type") != "text":
            raise _bad(f"system[{j}] must be a text block", f"system[{j}]")
        texts.append(_block_text(b, f"system[{j}]"))
    return _joined(texts)


def _tool_result(result: Any, where: str) -> tuple[str, list[dict[str, Any]]]:
    """A ``tool_result``'s content as a chat ``tool`` message's text, and its images (a
    screenshot, a file a tool read): a ``tool`` message carries text only, so they go on
    in a user message right after the tool messages, never dropped."""
    if result is None:
        return "", []
    if isinstance(result, str):
        return result, []
    if not isinstance(result, list):
        raise _bad(f"{where}.content must be a string or an array of blocks", f"{where}.content")
    texts, images = [], []
    for k, b in enumerate(result):
        bw = f"{where}.content[{k}]"
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "text":
            texts.append(_block_text(b, bw))
        elif kind == "image":
            images.append(_image_part(b, bw))
        else:
            raise _bad(f"{bw}: unsupported block type {kind!r} in a tool_result", bw)
    if images:
        texts.append(f"[{len(images)} image{'s' if len(images) > 1 else ''} in the next message]")
    return _joined(texts), images


def _image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    src = block.get("source")
    if not isinstance(src, dict):
        raise _bad(f"{where}.source must be an object (an image source: base64 or url)", f"{where}.source")
    if src.get("type") == "base64" and isinstance(src.get("data"), str) and src["data"]:
        media = src.get("media_type") or "image/png"
        if not isinstance(media, str):
            raise _bad(f"{where}.source.media_type must be a string", f"{where}.source")
        url = f"data:{media};base64,{src['data']}"
    elif src.get("type") == "url" and isinstance(src.get("url"), str) and src["url"]:
        url = src["url"]
    else:
        raise _bad(f"{where}: image source must be base64 or url", where)
    return {"type": "image_url", "image_url": {"url": url}}


def _user_content(parts: list[dict[str, Any]]) -> Any:
    """A user turn's parts as chat content: text alone as one string (several blocks
    joined by a blank line: string content is what every provider takes), parts when
    there is an image."""
    if all(p["type"] == "text" for p in parts):
        return _joined([p["text"] for p in parts])
    return parts


def _assistant_message(content: list[Any], where: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, b in enumerate(content):
        bw = f"{where}.content[{j}]"
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "text":
            texts.append(_block_text(b, bw))
        elif kind == "tool_use":
            if not isinstance(b.get("id"), str) or not b["id"] or not isinstance(b.get("name"), str) or not b["name"]:
                raise _bad(f"{bw}: a tool_use block needs an id and a name (strings)", bw)
            args = b.get("input")
            if args is not None and not isinstance(args, dict):
                raise _bad(f"{bw}.input must be an object", f"{bw}.input")
            calls.append({"id": b["id"], "type": "function",
                          "function": {"name": b["name"], "arguments": json.dumps(args or {})}})
    msg: dict[str, Any] = {"role": "assistant", "content": _joined(texts) or None}
    if calls:
        msg["tool_calls"] = calls
    return msg


#: an assistant turn's blocks that chat messages say (text, tool calls) or leave out (thinking)
_CHAT_BLOCKS = frozenset({"text", "tool_use", "thinking", "redacted_thinking"})


def _native_turn(content: list[Any]) -> bool:
    """Whether an assistant turn holds blocks a chat message has no word for: a server
    tool's (``server_tool_use``, ``web_search_tool_result``…) or text with ``citations``.
    Such a turn goes to an Anthropic upstream as the caller sent it (``turns`` of
    :data:`ANTHROPIC_NATIVE`), and only an Anthropic model can serve the request."""
    for b in content:
        kind = b.get("type") if isinstance(b, dict) else None
        if isinstance(kind, str) and (kind not in _CHAT_BLOCKS or (kind == "text" and b.get("citations"))):
            return True
    return False


#: Anthropic's server tools the gateway passes on (``web_search_20250305``, ``web_search_20260209``…):
#: Anthropic runs them, and its answer's blocks come back as they were (an Anthropic model only)
SERVER_TOOLS = ("web_search_",)


def _tools(tools: Any) -> tuple[list[dict[str, Any]], bool]:
    """The tools as chat tools, Anthropic's web_search server tools among them as they came;
    and whether there was one."""
    if not isinstance(tools, list):
        raise _bad("'tools' must be an array", "tools")
    out = []
    server = False
    for i, t in enumerate(tools):
        tw = f"tools[{i}]"
        if not isinstance(t, dict):
            raise _bad(f"{tw} must be an object", tw)
        kind = t.get("type")
        if kind is not None and kind != "custom":
            if isinstance(kind, str) and kind.startswith(SERVER_TOOLS):
                out.append(t)  # Anthropic runs it: to an Anthropic model, unchanged
                server = True
                continue
            raise _bad(f"{tw}: built-in tool {kind!r} is not supported: the gateway runs no tools and passes on "
                       "only Anthropic's web_search server tool (custom tools are passed to the model)", tw)
        if not isinstance(t.get("name"), str) or not t["name"]:
            raise _bad(f"{tw}.name is required", tw)
        schema = t.get("input_schema")
        if schema is not None and not isinstance(schema, dict):
            raise _bad(f"{tw}.input_schema must be an object", f"{tw}.input_schema")
        desc = t.get("description")
        if desc is not None and not isinstance(desc, str):
            raise _bad(f"{tw}.description must be a string", f"{tw}.description")
        out.append({"type": "function", "function": {
            "name": t["name"], "description": desc or "",
            "parameters": schema or {"type": "object", "properties": {}}}})
    return out, server


def anthropic_to_openai(body: Any) -> dict[str, Any]:
    """An Anthropic Messages request as an OpenAI chat-completions request."""
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _bad("'model' is required", "model")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _bad("'max_tokens' is required and must be a positive integer", "max_tokens")
    messages_in = body.get("messages")
    if not isinstance(messages_in, list) or not messages_in:
        raise _bad("'messages' must be a non-empty array", "messages")
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise _bad("'stream' must be a boolean", "stream")
    out: list[dict[str, Any]] = []
    native: dict[str, Any] = {}  # what only an Anthropic upstream takes (ANTHROPIC_NATIVE)
    errors: list[str] = []  # the tool results that were errors
    # each assistant turn's blocks as the caller sent them when they hold a server tool's
    # (a web search's, from an earlier answer), else None: one entry an assistant message
    turns: list[list[Any] | None] = []
    # likewise the turns holding thinking blocks (signed: a tool loop with thinking on must
    # give them back to Anthropic unmodified); the other APIs get such a turn without them
    thought: list[list[Any] | None] = []
    system = body.get("system")
    if system is not None:
        text = _system_text(system)
        if text:
            out.append({"role": "system", "content": text})
            if isinstance(system, list) and any("cache_control" in b for b in system):
                native["system"] = system  # the blocks, their cache_control kept for an Anthropic upstream
    for i, m in enumerate(messages_in):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise _bad(f"{where}.role must be 'user' or 'assistant'", where)
        content = m.get("content")
        if m["role"] == "assistant":
            turns.append(content if isinstance(content, list) and _native_turn(content) else None)
            thought.append(content if isinstance(content, list) and turns[-1] is None and any(
                isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking") for b in content) else None)
        if isinstance(content, str):
            out.append({"role": m["role"], "content": content})
            continue
        if not isinstance(content, list):
            raise _bad(f"{where}.content must be a string or an array of blocks", where)
        if m["role"] == "assistant":
            out.append(_assistant_message(content, where))  # (its text and calls: what the estimates count)
            continue
        parts: list[dict[str, Any]] = []
        shown: list[dict[str, Any]] = []  # the images of this turn's tool results, after them
        for j, b in enumerate(content):
            bw = f"{where}.content[{j}]"
            kind = b.get("type") if isinstance(b, dict) else None
            if kind != "tool_result" and shown:
                parts[:0] = [{"type": "text", "text": "The tool results' images:"}, *shown]
                shown = []
            if kind == "text":
                parts.append({"type": "text", "text": _block_text(b, bw)})
            elif kind == "image":
                parts.append(_image_part(b, bw))
            elif kind == "tool_result":
                if parts:  # keep order: text before the result goes first
                    out.append({"role": "user", "content": _user_content(parts)})
                    parts = []
                if not isinstance(b.get("tool_use_id"), str) or not b["tool_use_id"]:
                    raise _bad(f"{bw}.tool_use_id is required", f"{bw}.tool_use_id")
                text, images = _tool_result(b.get("content"), bw)
                if b.get("is_error"):
                    text = "Error: " + text  # (said in the text to the other APIs; is_error to Anthropic's)
                    errors.append(b["tool_use_id"])
                out.append({"role": "tool", "tool_call_id": b.get("tool_use_id"), "content": text})
                shown += images
            elif kind in ("thinking", "redacted_thinking"):
                continue
            else:
                raise _bad(f"{bw}: unsupported block type {kind!r}", bw)
        if shown:
            parts[:0] = [{"type": "text", "text": "The tool results' images:"}, *shown]
        if parts:
            out.append({"role": "user", "content": _user_content(parts)})
    req: dict[str, Any] = {"model": body["model"], "messages": out, "max_tokens": max_tokens}
    for a, o in (("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k")):
        if body.get(a) is not None:
            req[o] = body[a]
    top_k = body.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise _bad("'top_k' must be a positive integer", "top_k")
    thinking = body.get("thinking")
    if thinking is not None:
        if not isinstance(thinking, dict) or not isinstance(thinking.get("type"), str):
            raise _bad("'thinking' must be an object with a 'type'", "thinking")
        native["thinking"] = thinking  # to an Anthropic upstream; the other APIs have no such setting
    if errors:
        native["tool_errors"] = errors
    if any(t is not None for t in turns):  # passed on whole, never dropped: an Anthropic model only
        native["turns"] = turns
    if any(t is not None for t in thought):  # passed on whole to an Anthropic-shaped API; dropped for the others
        native["thought"] = thought
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad("'stop_sequences' must be an array of strings", "stop_sequences")
        if stops:
            req["stop"] = list(stops)
    if isinstance(body.get("metadata"), dict) and body["metadata"].get("user_id"):
        req["user"] = str(body["metadata"]["user_id"])
    server = False
    if body.get("tools") is not None:
        tools, server = _tools(body["tools"])
        if tools:
            req["tools"] = tools
    tc = body.get("tool_choice")
    if isinstance(tc, dict):
        kind = tc.get("type")
        if kind == "auto":
            req["tool_choice"] = "auto"
        elif kind == "any":
            req["tool_choice"] = "required"
        elif kind == "none":
            req["tool_choice"] = "none"
        elif kind == "tool":
            req["tool_choice"] = {"type": "function", "function": {"name": tc.get("name")}}
        if tc.get("disable_parallel_tool_use"):
            req["parallel_tool_calls"] = False
    if body.get("stream"):
        req["stream"] = True
        req["stream_options"] = {"include_usage": True}
    # (always, empty or not: it also says the caller speaks Anthropic's Messages, which alone
    # gets an Anthropic answer's own blocks back: thinking, a server tool's)
    req[ANTHROPIC_NATIVE] = native
    if server:  # (checked as chat completions without them: those take function tools only)
        validate_chat_request({**req, "tools": [t for t in req["tools"] if t.get("type") == "function"] or None})
        return req
    return validate_chat_request(req)


# --------------------------------------------------------------------------- OpenAI -> Anthropic
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "function_call": "tool_use", "content_filter": "refusal"}
#: Anthropic's own reasons, given back as they came when an Anthropic upstream said one
#: (carried by :class:`knollm.client.transports.Finish`)
_NATIVE_STOPS = frozenset({"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal",
                           "model_context_window_exceeded"})


def _stop(reason: Any) -> tuple[str, str | None]:
    """An OpenAI finish reason as Anthropic's ``(stop_reason, stop_sequence)``: the
    provider's own when it was Anthropic's (``stop_sequence`` with the sequence, ``pause_turn``)."""
    native = getattr(reason, "native", None)
    if native in _NATIVE_STOPS:
        return native, getattr(reason, "stop_sequence", None)
    return STOP_REASONS.get(reason or "stop", "end_turn"), None


def _anthropic_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    usage = usage or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    cached = int(((usage.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0)
    return {"input_tokens": max(0, prompt - cached), "output_tokens": int(usage.get("completion_tokens") or 0),
            "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0}


def _json_or_raw(text: str) -> Any:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"_value": value}


def openai_to_anthropic(resp: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI chat completion as an Anthropic ``message`` object. An Anthropic answer
    with a server tool's blocks carries them (``resp[ANTHROPIC_NATIVE]``: ``content``, the
    blocks as Anthropic gave them, and ``server_tool_use``, its usage's): given as they came."""
    choice = (resp.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    native = resp.get(ANTHROPIC_NATIVE)
    content: list[dict[str, Any]] = []
    if native is not None:
        content = native["content"]
    else:
        if msg.get("content"):
            content.append({"type": "text", "text": msg["content"]})
        for call in msg.get("tool_calls") or []:
            fn = call.get("function") or {}
            content.append({"type": "tool_use", "id": call.get("id"), "name": fn.get("name"),
                            "input": _json_or_raw(fn.get("arguments") or "{}")})
    stop, sequence = _stop(choice.get("finish_reason"))
    usage = _anthropic_usage(resp.get("usage"))
    if native is not None and native.get("server_tool_use"):
        usage["server_tool_use"] = native["server_tool_use"]
    return {"id": "msg_" + str(resp.get("id") or int(time.time() * 1000)), "type": "message", "role": "assistant",
            "model": model, "content": content, "stop_reason": stop, "stop_sequence": sequence, "usage": usage}


def chunk_parts(chunk: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """What one OpenAI ``chat.completion.chunk`` says, in order, for the stream translators:
    ``("usage", dict)``, then per choice ``("text", str)``, ``("call", (index, id, name,
    arguments))`` for each tool-call delta and ``("finish", reason)``. A chunk without
    choices may carry what an Anthropic answer with a server tool's blocks said
    (``ANTHROPIC_NATIVE``: ``events``, its content-block events as they came;
    ``server_tool_use``, its usage's): ``("native", dict)`` (only ``/v1/messages`` asks
    for server tools, so only :class:`AnthropicStream` gets one)."""
    if chunk.get("usage"):
        yield "usage", chunk["usage"]
    choices = chunk.get("choices")
    if not choices:
        native = chunk.get(ANTHROPIC_NATIVE)
        if native:
            yield "native", native
        return
    for choice in choices:
        delta = choice.get("delta") or {}
        if delta.get("content"):
            yield "text", delta["content"]
        for call in delta.get("tool_calls") or []:
            fn = call.get("function") or {}
            yield "call", (call.get("index", 0), call.get("id"), fn.get("name"), fn.get("arguments"))
        if choice.get("finish_reason"):
            yield "finish", choice["finish_reason"]


class AnthropicStream:
    """Turns OpenAI ``chat.completion.chunk`` dicts into Anthropic stream events.

    ``feed(chunk)`` yields ``(event_name, data)`` pairs; ``close()`` yields the closing
    ``content_block_stop``/``message_delta``/``message_stop``. A text block stops when a
    tool call starts. ``tool_use`` blocks stay open together until the end: a provider may
    interleave the argument deltas of parallel calls, or send one after some text, so each
    is stopped only once no more can come, all of them in order. Text that arrives while
    they are open waits for them and follows as its own block (sent whole, at the end). No
    delta follows a block's ``content_block_stop``, and none is dropped."""

    def __init__(self, model: str, message_id: str) -> None:
        self.model = model
        self.id = message_id
        self.started = False
        self.index = -1  # the block started last
        self.open: str | None = None  # "text" while a text block (the last one) is open
        self.tool_blocks: dict[int, int] = {}  # OpenAI tool index -> block index
        self.open_tools: list[int] = []  # tool_use blocks not stopped yet, in order
        self.held: list[str] = []  # text that came while tool_use blocks were open
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None
        self.native: dict[int, int] | None = None  # an Anthropic upstream's block index -> block index
        self.server_tool_use: dict[str, Any] | None = None

    def _start(self) -> Iterator[tuple[str, dict[str, Any]]]:
        if not self.started:
            self.started = True
            yield "message_start", {"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
                "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}

    def _close_text(self) -> Iterator[tuple[str, dict[str, Any]]]:
        if self.open is not None:
            yield "content_block_stop", {"type": "content_block_stop", "index": self.index}
            self.open = None

    def _close_tools(self) -> Iterator[tuple[str, dict[str, Any]]]:
        opened, self.open_tools = self.open_tools, []
        for i in opened:
            yield "content_block_stop", {"type": "content_block_stop", "index": i}

    def _open_block(self, block: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        self.index += 1
        yield "content_block_start", {"type": "content_block_start", "index": self.index, "content_block": block}

    def feed(self, chunk: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        yield from self._start()
        for kind, value in chunk_parts(chunk):
            if kind == "text":
                if self.open_tools:  # a call's arguments may still come: the text waits for the end
                    self.held.append(value)
                    continue
                if self.open is None:
                    yield from self._open_block({"type": "text", "text": ""})
                    self.open = "text"
                yield "content_block_delta", {"type": "content_block_delta", "index": self.index,
                                              "delta": {"type": "text_delta", "text": value}}
            elif kind == "call":
                ti, call_id, name, args = value
                i = self.tool_blocks.get(ti)
                if i is None:
                    yield from self._close_text()
                    yield from self._open_block({"type": "tool_use", "id": call_id or f"toolu_{ti}",
                                                 "name": name or "", "input": {}})
                    i = self.tool_blocks[ti] = self.index
                    self.open_tools.append(i)
                if args:
                    yield "content_block_delta", {"type": "content_block_delta", "index": i,
                                                  "delta": {"type": "input_json_delta", "partial_json": args}}
            elif kind == "usage":
                self.usage = value
            elif kind == "native":
                if value.get("events"):
                    yield from self._native(value["events"])
                if value.get("server_tool_use"):
                    self.server_tool_use = value["server_tool_use"]
            else:
                self.finish = value

    def _native(self, events: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
        """An Anthropic upstream's content-block events as they came (its server tools'
        blocks, and every block after the first of them), numbered after the blocks before
        them: a block starting stops the ones still open (the upstream's blocks come one
        after the other)."""
        at = self.native
        if at is None:
            at = self.native = {}
        for ev in events:
            kind = ev.get("type")
            if kind == "content_block_start":
                yield from self.flush()
                self.index += 1
                at[ev.get("index", 0)] = self.index
                yield kind, {**ev, "index": self.index}
            else:
                i = at.get(ev.get("index", 0))
                if i is not None:
                    yield kind, {**ev, "index": i}

    def flush(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Stop the open blocks; then the text that came after the calls, as one block after
        them. (``close`` does it; so does a broken stream before its error event: what the
        provider sent is given.)"""
        yield from self._start()
        yield from self._close_text()
        yield from self._close_tools()
        if self.held:
            yield from self._open_block({"type": "text", "text": ""})
            yield "content_block_delta", {"type": "content_block_delta", "index": self.index,
                                          "delta": {"type": "text_delta", "text": "".join(self.held)}}
            yield "content_block_stop", {"type": "content_block_stop", "index": self.index}
            self.held = []

    def close(self) -> Iterator[tuple[str, dict[str, Any]]]:
        yield from self.flush()
        usage = _anthropic_usage(self.usage)
        if self.server_tool_use:
            usage["server_tool_use"] = self.server_tool_use
        stop, sequence = _stop(self.finish)
        yield "message_delta", {"type": "message_delta",
                                "delta": {"stop_reason": stop, "stop_sequence": sequence},
                                # as a whole answer counts them (cache reads, cache writes)
                                "usage": usage}
        yield "message_stop", {"type": "message_stop"}
