"""A real HTTP server on 127.0.0.1 that plays LLM providers' model-list endpoints,
including the ways they fail. Used by tests/test_fetch.py and scripts/fetch_simulation.py.

Paths are ``/<behaviour>/<name>[/anything]``; ``<name>`` keys the per-route request
counter (so ``/ratelimit/a`` and ``/ratelimit/b`` fail independently) and prefixes the
model ids. Query parameters tune a behaviour:

==============  ========================================================================
``ok``          OpenAI list of ``n`` models (default 3); 401 without a credential
                unless ``open=1``
``array``       bare array (Together AI); ``keyed``: keyed object (LiteLLM)
``anthropic``   ``has_more``/``last_id`` pages of ``ps`` (default 2) models, ``after_id``
``pagetoken``   ``{"models": [...], "nextPageToken"}`` pages, reads ``pageToken``
``pagenumber``  Featherless-style page-number pages: reads ``page`` (from 1) and
                ``per_page`` (default 2, capped at ``maxper``), answers ``{"data", "page", "per_page",
                "total_pages", "total"}``; no credential needed (a public list);
                ``nototal=1`` leaves out ``total_pages`` (the last page is short),
                ``ignorepage=1`` always answers page 1 (a server ignoring ``page``)
``cursorloop``  ``has_more`` forever with the same ``last_id``
``unauthorized`` 401 whose body echoes the key it received
``notfound``    404; ``gone``: 410 (a retired host or path)
``ratelimit``   ``fails`` (1) × 429 with ``Retry-After: ra`` (1), then ``ok``;
                ``radate=1`` sends an HTTP-date instead of seconds; ``rams=N`` sends
                ``retry-after-ms: N`` (and a 0-second ``Retry-After``) instead
``flaky``       ``fails`` (1) × 500, then ``ok``; ``down``: always 503
``hang``        accepts, never answers (until ``secs``, default 30, or server stop)
``stall``       sends headers and half a body, then stalls
``html``        an HTML error page with status 200
``truncated``   200, JSON cut in half (Content-Length matches the cut body)
``shortbody``   Content-Length larger than the body, connection closed early
``huge``        ``size`` bytes (default 8 MiB) of a JSON list, no Content-Length
``errorobj``    200 ``{"error": {...}}``; ``empty``: 200 empty list
``echokey``     200 list whose description contains the key received
==============  ========================================================================
"""

from __future__ import annotations

import email.utils
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeProviders", "write_registry", "toml_dumps"]


def _models(name: str, n: int, start: int = 0) -> list[dict]:
    return [
        {"id": f"{name}-m{i}", "object": "model", "created": 1_750_000_000 + i, "owned_by": name,
         "context_length": 8192 * (1 + i % 4)}
        for i in range(start, start + n)
    ]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence
        pass

    # helpers ------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str = "application/json", headers: dict | None = None,
              length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _json(self, status: int, obj: Any, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers=headers)

    def _credential(self, q: dict) -> str | None:
        auth = self.headers.get("Authorization")
        if auth and auth.lower().startswith("bearer "):
            return auth[7:]
        for h in ("x-api-key", "x-goog-api-key", "api-key"):
            if self.headers.get(h):
                return self.headers[h]
        return q.get("key")

    def do_GET(self) -> None:  # noqa: C901, N802 - one dispatcher
        st = self.server.state
        parts = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        segs = [s for s in parts.path.split("/") if s]
        behaviour = segs[0] if segs else ""
        name = segs[1] if len(segs) > 1 else behaviour
        route = "/".join(segs[:2])
        with st.lock:
            st.counts[route] = count = st.counts.get(route, 0) + 1
            st.requests.append({"path": parts.path, "query": dict(q), "headers": dict(self.headers.items())})
        n = int(q.get("n", 3))
        fails = int(q.get("fails", 1))
        cred = self._credential(q)

        def ok_list() -> None:
            if cred is None and q.get("open") != "1":
                return self._json(401, {"error": {"message": "missing API key", "type": "auth"}})
            self._json(200, {"object": "list", "data": _models(name, n)})

        if behaviour == "ok":
            return ok_list()
        if behaviour == "array":
            return self._json(200, _models(name, n))
        if behaviour == "keyed":
            # shaped like LiteLLM's real sample_spec: prose where models hold numbers
            d = {"sample_spec": {"max_tokens": "LEGACY parameter. set to max_output_tokens if provider specifies it.",
                                 "max_input_tokens": "max input tokens, if the provider specifies it.",
                                 "litellm_provider": "one of https://docs.litellm.ai/docs/providers",
                                 "input_cost_per_token": 0}}
            d.update({m["id"]: {"max_input_tokens": m["context_length"], "input_cost_per_token": 1e-6}
                      for m in _models(name, n)})
            return self._json(200, d)
        if behaviour == "anthropic":
            if self.headers.get("anthropic-version") is None or self.headers.get("x-api-key") is None:
                return self._json(400, {"type": "error", "error": {"message": "missing headers"}})
            ps = min(int(q.get("ps", 2)), int(q.get("limit", 1000)))
            allm = _models(name, n)
            start = 0
            if "after_id" in q:
                ids = [m["id"] for m in allm]
                start = ids.index(q["after_id"]) + 1 if q["after_id"] in ids else len(ids)
            page = allm[start:start + ps]
            more = start + ps < len(allm)
            return self._json(200, {"data": page, "has_more": more,
                                    "first_id": page[0]["id"] if page else None,
                                    "last_id": page[-1]["id"] if page else None})
        if behaviour == "pagetoken":
            ps = int(q.get("ps", 2))
            start = int(q.get("pageToken", "0") or 0)
            allm = _models(name, n)
            body: dict = {"models": [{"name": f"models/{m['id']}", **m} for m in allm[start:start + ps]]}
            if start + ps < len(allm):
                body["nextPageToken"] = str(start + ps)
            return self._json(200, body)
        if behaviour == "pagenumber":
            per = max(1, min(int(q.get("per_page", 2)), int(q.get("maxper", 10_000))))
            page = 1 if q.get("ignorepage") == "1" else max(1, int(q.get("page", 1)))
            allm = _models(name, n)
            total_pages = max(1, -(-len(allm) // per))
            body = {"data": allm[(page - 1) * per: page * per], "page": page, "per_page": per,
                    "total": len(allm)}
            if q.get("nototal") != "1":
                body["total_pages"] = total_pages
            return self._json(200, body)
        if behaviour == "gone":
            return self._json(410, {"error": {"message": "this endpoint has been retired"}})
        if behaviour == "cursorloop":
            return self._json(200, {"data": _models(name, 2), "has_more": True, "last_id": f"{name}-m1"})
        if behaviour == "unauthorized":
            return self._json(401, {"error": {"message": f"Incorrect API key provided: {cred}",
                                              "type": "invalid_request_error"}})
        if behaviour == "notfound":
            return self._json(404, {"error": "not found"})
        if behaviour == "ratelimit":
            if count <= fails:
                ra = q.get("ra", "1")
                if q.get("radate") == "1":
                    ra = email.utils.formatdate(time.time() + float(ra) + 1, usegmt=True)
                headers = {"Retry-After": ra}
                if q.get("rams"):
                    headers = {"Retry-After": "0", "retry-after-ms": q["rams"]}
                return self._json(429, {"error": {"message": "rate limited"}}, headers=headers)
            return ok_list()
        if behaviour == "flaky":
            if count <= fails:
                return self._send(500, b"Internal Server Error", ctype="text/plain")
            return ok_list()
        if behaviour == "down":
            return self._send(503, b"<html><body>Service Unavailable</body></html>", ctype="text/html")
        if behaviour == "hang":
            st.stop.wait(float(q.get("secs", 30)))
            self.close_connection = True
            return None
        if behaviour == "stall":
            body = json.dumps({"object": "list", "data": _models(name, n)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return None
            st.stop.wait(float(q.get("secs", 30)))
            self.close_connection = True
            return None
        if behaviour == "html":
            page = b"<!DOCTYPE html><html><head><title>Error</title></head><body><h1>Oops</h1></body></html>"
            return self._send(200, page, ctype="text/html")
        if behaviour == "truncated":
            body = json.dumps({"object": "list", "data": _models(name, max(n, 4))}).encode()
            return self._send(200, body[: len(body) // 2])
        if behaviour == "shortbody":
            body = json.dumps({"object": "list", "data": _models(name, n)}).encode()
            self._send(200, body[: len(body) // 3], length=len(body))
            self.close_connection = True
            return None
        if behaviour == "huge":
            size = int(q.get("size", 8 * 1024 * 1024))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            rec = json.dumps({"id": "x" * 200, "object": "model"}).encode() + b","
            chunk = rec * (65536 // len(rec))
            sent = 0
            try:
                self.wfile.write(b'{"object":"list","data":[')
                while sent < size:
                    self.wfile.write(chunk)
                    sent += len(chunk)
                self.wfile.write(b'{"id":"last"}]}')
            except (BrokenPipeError, ConnectionResetError):
                pass
            return None
        if behaviour == "errorobj":
            return self._json(200, {"error": {"message": "model listing is temporarily disabled", "code": 1}})
        if behaviour == "empty":
            return self._json(200, {"object": "list", "data": []})
        if behaviour == "echokey":
            data = _models(name, n)
            data[0]["description"] = f"listed for key {cred}"
            return self._json(200, {"object": "list", "data": data})
        return self._json(404, {"error": f"no such fake behaviour: {behaviour!r}"})


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.requests: list[dict] = []
        self.stop = threading.Event()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many providers connect at once
    state: _State


class FakeProviders:
    """``with FakeProviders() as fp: fp.url("/ok/acme/v1/models")``"""

    def __init__(self) -> None:
        self.state = _State()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def count(self, behaviour: str, name: str) -> int:
        with self.state.lock:
            return self.state.counts.get(f"{behaviour}/{name}", 0)

    @property
    def requests(self) -> list[dict]:
        with self.state.lock:
            return list(self.state.requests)

    def start(self) -> FakeProviders:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="fake-providers")
        self._thread.start()
        return self

    def stop(self) -> None:
        self.state.stop.set()  # releases hanging handlers
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeProviders:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- a tiny TOML writer for test registries ------------------------------------------------

def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # JSON string escapes are valid TOML basic strings
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def toml_dumps(settings: dict, providers: dict[str, dict]) -> str:
    """A provider registry (the format of knollm/data/providers.toml) from flat fetch specs:
    ``name`` and ``key_env`` go to the provider / ``api.*``, the rest to ``list.*``."""
    lines = ["[fetch]"] + [f"{k} = {_toml_value(v)}" for k, v in settings.items()] + [""]
    for pid, spec in providers.items():
        lines.append(f"[providers.{json.dumps(pid)}]")
        for k, v in spec.items():
            key = k if k == "name" else ("api.key_env" if k == "key_env" else f"list.{k}")
            lines.append(f"{key} = {_toml_value(v)}")
        lines.append("")
    return "\n".join(lines)


#: fast settings for tests: a hang costs well under a second
FAST_SETTINGS = {
    "concurrency": 8,
    "connect_timeout": 1.0,
    "read_timeout": 0.5,
    "total_timeout": 20.0,
    "retries": 2,
    "backoff_base": 0.05,
    "backoff_max": 0.2,
    "max_retry_after": 5.0,
    "max_bytes": 1024 * 1024,
    "max_pages": 20,
}


def write_registry(path: str | Path, providers: dict[str, dict], settings: dict | None = None) -> Path:
    path = Path(path)
    path.write_text(toml_dumps({**FAST_SETTINGS, **(settings or {})}, providers), encoding="utf-8")
    return path
