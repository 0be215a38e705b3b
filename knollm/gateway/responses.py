"""The OpenAI Responses API (``POST /v1/responses``) over chat completions.

What ``client.responses.create(...)`` (the openai SDK, and frameworks built on it) sends,
as an OpenAI chat-completions request any provider can serve; the chat answer (or stream
of chunks) back as a ``response`` object (or Responses stream events, with
:class:`ResponsesStream`). Pure functions over JSON dicts, like :mod:`knollm.gateway.translate`.

Stateless: the gateway stores no response, so ``previous_response_id``, ``conversation``
and ``item_reference`` inputs are refused (send the whole input each time, as with
``store=False``), and so are built-in tools (web search, file search, code interpreter,
…): the gateway runs no tools, function tools go to the model as usual.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Iterator

from knollm.client.result import new_id
from knollm.errors import GatewayError
from knollm.gateway.translate import chunk_parts, validate_chat_request

__all__ = ["responses_to_chat", "chat_to_response", "response_skeleton", "ResponsesStream"]

# request fields echoed in the response object (as OpenAI does), when the caller gave them
_ECHO = ("instructions", "max_output_tokens", "metadata", "parallel_tool_calls", "temperature", "tool_choice",
         "tools", "top_p", "text", "reasoning", "user")
_STATELESS = ("previous_response_id", "conversation")


def _bad(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(message, status=400, type="invalid_request_error", code=param)


def _text_parts(content: Any, where: str, role: str) -> Any:
    """A Responses message's content as a chat message's content (a string, or parts
    with images)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or an array of content parts", where)
    parts: list[dict[str, Any]] = []
    for j, p in enumerate(content):
        pw = f"{where}.content[{j}]"
        kind = p.get("type") if isinstance(p, dict) else None
        if kind in ("input_text", "output_text", "text"):
            if not isinstance(p.get("text"), str):
                raise _bad(f"{pw}.text must be a string", pw)
            parts.append({"type": "text", "text": p["text"]})
        elif kind == "refusal":
            parts.append({"type": "text", "text": str(p.get("refusal") or "")})
        elif kind == "input_image" and role == "user":
            url = p.get("image_url")
            if not isinstance(url, str) or not url:
                raise _bad(f"{pw}: an input_image needs an image_url (a link or a data URL; stored files "
                           "are not available through the gateway)", pw)
            parts.append({"type": "image_url", "image_url": {"url": url, "detail": p.get("detail") or "auto"}})
        else:
            raise _bad(f"{pw}: unsupported content part type {kind!r}", pw)
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _bad("'instructions' must be a string", "instructions")
        if instructions:
            out.append({"role": "system", "content": instructions})
    items = body.get("input")
    if isinstance(items, str):
        if not items:
            raise _bad("'input' must not be empty", "input")
        return out + [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise _bad("'input' must be a string or a non-empty array of input items", "input")
    for i, it in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(it, dict):
            raise _bad(f"{where} must be an object", where)
        kind = it.get("type") or ("message" if "role" in it else None)
        if kind == "message":
            role = it.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise _bad(f"{where}.role must be user, assistant, system or developer", where)
            out.append({"role": "system" if role == "developer" else role,
                        "content": _text_parts(it.get("content"), where, role)})
        elif kind == "function_call":
            if not all(isinstance(it.get(k), str) for k in ("call_id", "name", "arguments")):
                raise _bad(f"{where}: a function_call needs call_id, name and arguments (strings)", where)
            call = {"id": it["call_id"], "type": "function", "function": {"name": it["name"], "arguments": it["arguments"]}}
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":  # one turn's text and calls: one message
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            if not isinstance(it.get("call_id"), str):
                raise _bad(f"{where}: a function_call_output needs its call_id", where)
            output = it.get("output")
            text = output if isinstance(output, str) else _text_parts(output, where, "tool")
            if not isinstance(text, str):
                raise _bad(f"{where}.output must be text", where)
            out.append({"role": "tool", "tool_call_id": it["call_id"], "content": text})
        elif kind == "reasoning":
            continue  # a model's own reasoning summary: not sent back to another provider
        elif kind == "item_reference":
            raise _bad(f"{where}: item_reference needs stored responses, and the gateway stores none: "
                       "send the item itself", where)
        else:
            raise _bad(f"{where}: unsupported input item type {kind!r}", where)
    return out


def responses_to_chat(body: Any) -> dict[str, Any]:
    """A Responses request as an OpenAI chat-completions request (validated)."""
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    for name in _STATELESS:
        if body.get(name):
            raise _bad(f"'{name}' needs stored responses, and the gateway stores none: send the whole "
                       "conversation in 'input'", name)
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise _bad("'stream' must be a boolean", "stream")
    if body.get("background"):
        raise _bad("background responses are not supported by the gateway", "background")
    req: dict[str, Any] = {"model": body.get("model"), "messages": _messages(body)}
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise _bad("'tools' must be an array", "tools")
    chat_tools = []
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or t.get("type") != "function":
            kind = t.get("type") if isinstance(t, dict) else None
            raise _bad(f"tools[{i}]: built-in tool {kind!r} is not supported: the gateway runs no tools "
                       "(function tools are passed to the model)", f"tools[{i}]")
        fn = {"name": t.get("name"), "description": t.get("description") or "",
              "parameters": t.get("parameters") or {"type": "object", "properties": {}}}
        if t.get("strict") is not None:
            fn["strict"] = t["strict"]
        chat_tools.append({"type": "function", "function": fn})
    if chat_tools:
        req["tools"] = chat_tools
    tc = body.get("tool_choice")
    if isinstance(tc, str):
        req["tool_choice"] = tc
    elif isinstance(tc, dict) and tc.get("type") == "function":
        req["tool_choice"] = {"type": "function", "function": {"name": tc.get("name")}}
    elif tc is not None:
        raise _bad("'tool_choice' must be auto, none, required or a function", "tool_choice")
    if body.get("max_output_tokens") is not None:
        req["max_tokens"] = body["max_output_tokens"]
    for name in ("temperature", "top_p", "parallel_tool_calls"):
        if body.get(name) is not None:
            req[name] = body[name]
    effort = (body.get("reasoning") or {}).get("effort") if isinstance(body.get("reasoning"), dict) else None
    if effort:
        req["reasoning_effort"] = effort
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        req["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        req["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
        raise _bad(f"text.format type {fmt.get('type')!r} is not supported", "text")
    if body.get("stream"):
        req["stream"] = True
        req["stream_options"] = {"include_usage": True}  # response.completed carries the usage
    return validate_chat_request(req)


def response_skeleton(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The ``response`` object before any output: id, time, the request's echoed settings."""
    r: dict[str, Any] = {"id": "resp_" + new_id(), "object": "response", "created_at": int(time.time()),
                         "status": "in_progress", "model": model, "output": [], "error": None,
                         "incomplete_details": None, "usage": None, "previous_response_id": None,
                         "truncation": "disabled", "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
                         "metadata": {}, "text": {"format": {"type": "text"}}}
    r.update({k: body[k] for k in _ECHO if body.get(k) is not None})
    return r


def _usage(u: dict[str, Any] | None) -> dict[str, Any] | None:
    if not u:
        return None
    inp, out = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
    reasoning = (u.get("completion_tokens_details") or {}).get("reasoning_tokens")
    return {"input_tokens": inp, "output_tokens": out, "total_tokens": inp + out,
            "input_tokens_details": {"cached_tokens": int((u.get("prompt_tokens_details") or {}).get("cached_tokens")
                                                          or 0)},
            # unknown unless the provider said: None, never a made-up 0
            "output_tokens_details": {"reasoning_tokens": reasoning}}


def _finished(r: dict[str, Any], finish: str | None) -> None:
    if finish == "length":
        r["status"], r["incomplete_details"] = "incomplete", {"reason": "max_output_tokens"}
    elif finish == "content_filter":
        r["status"], r["incomplete_details"] = "incomplete", {"reason": "content_filter"}
    else:
        r["status"] = "completed"


def chat_to_response(resp: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """A chat completion as a ``response`` object (``output``: a message, function calls)."""
    choice = (resp.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    r = response_skeleton(body, resp.get("model") or str(body.get("model")))
    if msg.get("content"):
        r["output"].append({"type": "message", "id": "msg_" + new_id(), "status": "completed", "role": "assistant",
                            "content": [{"type": "output_text", "text": msg["content"], "annotations": [],
                                         "logprobs": []}]})
    for call in msg.get("tool_calls") or []:
        fn = call.get("function") or {}
        r["output"].append({"type": "function_call", "id": "fc_" + new_id(), "call_id": call.get("id") or
                            "call_" + new_id(), "name": fn.get("name"), "arguments": fn.get("arguments") or "",
                            "status": "completed"})
    _finished(r, choice.get("finish_reason"))
    r["usage"] = _usage(resp.get("usage"))
    return r


class ResponsesStream:
    """OpenAI ``chat.completion.chunk`` dicts as Responses stream events.

    ``feed(chunk)`` yields ``(event_type, data)`` pairs, ``close(extra)`` the items' ends and
    ``response.completed`` (``response.incomplete`` when the output was cut at the token
    limit) with the whole response, ``extra`` merged into it. Every event carries its
    ``sequence_number``. The text message is closed when a function call starts. Function
    calls stay open together until the end: a provider may interleave the argument deltas of
    parallel calls, or send one after some text, so each one is closed
    (``function_call_arguments.done``, ``output_item.done``, with its whole arguments) only
    once no more can come, all of them in order. Text that arrives while calls are open
    waits for them and follows as its own message (sent whole, at the end). No delta
    follows an item's ``done``, and none is dropped."""

    def __init__(self, skeleton: dict[str, Any]) -> None:
        self.resp = skeleton
        self.seq = 0
        self.started = False
        self.open: int | None = None  # output index of the message being written
        self.calls: dict[int, int] = {}  # chat tool-call index -> output index
        self.open_calls: list[int] = []  # output indexes of the calls not closed yet, in order
        self.held: list[str] = []  # text that came while calls were open
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None

    def _ev(self, kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        ev = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return kind, ev

    def _start(self) -> Iterator[tuple[str, dict[str, Any]]]:
        if not self.started:
            self.started = True
            snap = copy.deepcopy(self.resp)
            yield self._ev("response.created", response=snap)
            yield self._ev("response.in_progress", response=snap)

    def _close_message(self) -> Iterator[tuple[str, dict[str, Any]]]:
        if self.open is not None:
            i, self.open = self.open, None
            yield from self._done(i)

    def _close_calls(self) -> Iterator[tuple[str, dict[str, Any]]]:
        opened, self.open_calls = self.open_calls, []
        for i in opened:
            yield from self._done(i)

    def _done(self, i: int) -> Iterator[tuple[str, dict[str, Any]]]:
        item = self.resp["output"][i]
        item["status"] = "completed"
        if item["type"] == "message":
            part = item["content"][0]
            yield self._ev("response.output_text.done", item_id=item["id"], output_index=i, content_index=0,
                           text=part["text"], logprobs=[])
            yield self._ev("response.content_part.done", item_id=item["id"], output_index=i, content_index=0,
                           part=copy.deepcopy(part))
        else:
            yield self._ev("response.function_call_arguments.done", item_id=item["id"], output_index=i,
                           arguments=item["arguments"])
        yield self._ev("response.output_item.done", output_index=i, item=copy.deepcopy(item))

    def _add_item(self, item: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        self.resp["output"].append(item)
        yield self._ev("response.output_item.added", output_index=len(self.resp["output"]) - 1,
                       item=copy.deepcopy(item))

    def _text(self, value: str) -> Iterator[tuple[str, dict[str, Any]]]:
        out = self.resp["output"]
        if self.open is None:
            yield from self._add_item({"type": "message", "id": "msg_" + new_id(), "status": "in_progress",
                                       "role": "assistant", "content": []})
            self.open = len(out) - 1
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out[self.open]["content"].append(part)
            yield self._ev("response.content_part.added", item_id=out[self.open]["id"],
                           output_index=self.open, content_index=0, part=copy.deepcopy(part))
        item = out[self.open]
        item["content"][0]["text"] += value
        yield self._ev("response.output_text.delta", item_id=item["id"], output_index=self.open,
                       content_index=0, delta=value, logprobs=[])

    def feed(self, chunk: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        if not self.started and chunk.get("model"):
            self.resp["model"] = chunk["model"]  # the model serving it, as a whole response says
        yield from self._start()
        out = self.resp["output"]
        for kind, value in chunk_parts(chunk):
            if kind == "text":
                if self.open_calls:  # a call's arguments may still come: the text waits for the end
                    self.held.append(value)
                    continue
                yield from self._text(value)
            elif kind == "call":
                ti, call_id, name, args = value
                i = self.calls.get(ti)
                if i is None:
                    yield from self._close_message()
                    yield from self._add_item({"type": "function_call", "id": "fc_" + new_id(),
                                               "call_id": call_id or "call_" + new_id(), "name": name or "",
                                               "arguments": "", "status": "in_progress"})
                    i = self.calls[ti] = len(out) - 1
                    self.open_calls.append(i)
                if args:
                    out[i]["arguments"] += args
                    yield self._ev("response.function_call_arguments.delta", item_id=out[i]["id"], output_index=i,
                                   delta=args)
            elif kind == "usage":
                self.usage = value
            else:
                self.finish = value

    def close(self, extra: dict[str, Any] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        yield from self._start()
        yield from self._close_message()
        yield from self._close_calls()
        if self.held:  # text that came after the calls, as one message after them
            held, self.held = "".join(self.held), []
            yield from self._text(held)
            yield from self._close_message()
        _finished(self.resp, self.finish)
        self.resp["usage"] = _usage(self.usage)
        if extra:
            self.resp.update(extra)
        kind = "response.completed" if self.resp["status"] == "completed" else "response.incomplete"
        yield self._ev(kind, response=copy.deepcopy(self.resp))

    def fail(self, err: dict[str, Any], extra: dict[str, Any] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """The end of a stream that broke (``err``: the gateway's ``type``, ``message``,
        ``code``): an ``error`` event, then ``response.failed`` with the output given so
        far, ``status: failed`` and the ``error`` (no ``response.completed``)."""
        yield from self._start()
        if self.held:  # what the provider sent is given: the text that waited for the calls
            held, self.held = "".join(self.held), []
            yield from self._text(held)
        code = err.get("code") or err.get("type")
        yield self._ev("error", code=code, message=err.get("message"), param=None)
        self.resp.update(status="failed", error={"code": code, "message": err.get("message")},
                         usage=_usage(self.usage), **(extra or {}))
        yield self._ev("response.failed", response=copy.deepcopy(self.resp))
