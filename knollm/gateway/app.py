"""The ``knollm serve`` ASGI app (Starlette): OpenAI- and Anthropic-compatible endpoints.

Routes: ``POST /v1/chat/completions``, ``POST /v1/responses``, ``POST /v1/completions``,
``POST /v1/embeddings``, ``POST /v1/messages``, ``POST /v1/messages/count_tokens``,
``GET /v1/models``, ``GET /v1/models/{id}``, ``GET /health``, ``GET /metrics``. Every answer carries ``x-knollm-provider``,
``x-knollm-model``, ``x-knollm-cost-usd`` and ``x-knollm-attempts``; errors are
``{"error": {"type", "message", "code"}}`` with the right status and never a traceback
or a key. For streams the headers are sent with the first token, when the provider is
known and the cost is not yet: ``x-knollm-cost-usd: pending``, and the last chunk (with
``stream_options.include_usage``) carries ``knollm.cost_usd``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, NamedTuple

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from knollm.client.result import new_id
from knollm.client.store import budget_slack
from knollm.client.ticker import Ticker
from knollm.errors import GatewayError, KnollmError
from knollm.gateway.backend import Backend, Outcome
from knollm.gateway.completions import chat_to_completion, completion_chunk, completions_to_chat
from knollm.gateway.keys import KEY_PREFIX, GatewayKey, KeyChanged, KeyRevoked, KeyStore
from knollm.gateway.metrics import CONTENT_TYPE, Metrics
from knollm.gateway.responses import ResponsesStream, chat_to_response, response_skeleton, responses_to_chat
from knollm.gateway.translate import (
    AnthropicStream,
    anthropic_to_openai,
    openai_to_anthropic,
    split_target,
    validate_chat_request,
    validate_embeddings_request,
)

__all__ = ["GatewayConfig", "create_app", "error_body"]

log = logging.getLogger("knollm.gateway")


@dataclass
class GatewayConfig:
    """Limits and policy. ``max_body_bytes`` bounds a request body (images included);
    ``timeout_s`` bounds a whole request (stream included); ``default_hold_usd`` is held
    against a key's budget when a call's worst-case cost is unknown. ``key_cache_s``: how
    long a key found by its token (and the answer to "are keys required?") is kept; a
    key's revocation and changes reach the gateway at its next request all the same."""

    max_body_bytes: int = 20 * 1024 * 1024
    timeout_s: float = 600.0
    default_hold_usd: float = 0.05
    key_cache_s: float = 5.0
    #: while a stream waits for its first piece, its answer starts after this many seconds
    #: and an SSE comment is sent as often, so a proxy's idle timeout does not cut a caller
    #: whose model is thinking (0: never; the headers then wait for the first piece)
    stream_keepalive_s: float = 15.0
    #: every request needs a gateway key, whether or not one is active (``knollm serve``
    #: sets it for a non-loopback bind: revoking the last key locks the gateway, it does
    #: not open it to the network)
    require_keys: bool = False

    @classmethod
    def from_env(cls) -> GatewayConfig:
        env = os.environ
        return cls(max_body_bytes=int(env.get("KNOLLM_GATEWAY_MAX_BODY_BYTES", cls.max_body_bytes)),
                   timeout_s=float(env.get("KNOLLM_GATEWAY_TIMEOUT_S", cls.timeout_s)),
                   default_hold_usd=float(env.get("KNOLLM_GATEWAY_DEFAULT_HOLD_USD", cls.default_hold_usd)),
                   key_cache_s=float(env.get("KNOLLM_GATEWAY_KEY_CACHE_S", cls.key_cache_s)),
                   stream_keepalive_s=_keepalive_s(env.get("KNOLLM_GATEWAY_STREAM_KEEPALIVE_S")),
                   require_keys=env.get("KNOLLM_GATEWAY_REQUIRE_KEYS", "").lower() in ("1", "true", "yes"))


def _keepalive_s(raw: str | None) -> float:
    """``KNOLLM_GATEWAY_STREAM_KEEPALIVE_S``: seconds (0: off), default 15."""
    try:
        v = float(raw) if raw else GatewayConfig.stream_keepalive_s
    except ValueError:
        v = float("nan")
    if not 0 <= v < float("inf"):
        raise GatewayError("KNOLLM_GATEWAY_STREAM_KEEPALIVE_S must be a number of seconds (0: off)", status=500,
                           type="server_error")
    return v


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


#: Anthropic's error types (what the anthropic SDK and Claude Code read), by the gateway's
#: own type, else by status
_ANTHROPIC_TYPES = {"invalid_request_error", "authentication_error", "permission_error", "not_found_error",
                    "request_too_large", "rate_limit_error", "api_error", "overloaded_error", "timeout_error",
                    "billing_error"}
_ANTHROPIC_BY_STATUS = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                        403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
                        413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error",
                        504: "timeout_error", 529: "overloaded_error"}


def error_body(exc: GatewayError, anthropic: bool = False) -> dict[str, Any]:
    if anthropic:
        kind = exc.type if exc.type in _ANTHROPIC_TYPES else _ANTHROPIC_BY_STATUS.get(exc.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": str(exc)}}
    return {"error": {"type": exc.type, "message": str(exc), "code": exc.code, "param": None}}


def _knollm_headers(o: Outcome | None, *, streaming: bool = False) -> dict[str, str]:
    o = o or Outcome()
    # a stream's headers leave with its first token: the serving attempt is not among the
    # attempts yet, unless the stream already ended (its whole answer leaves in one piece)
    attempts = len(o.attempts) + (1 if streaming and o.provider and not o.served else 0)
    h = {"x-knollm-provider": o.provider or "none", "x-knollm-model": o.model or "none",
         "x-knollm-cost-usd": "pending" if streaming else o.cost_header, "x-knollm-attempts": str(attempts)}
    if o.request_id:  # the ledger row (the openai SDK's ``_request_id``): a stream's is in its last chunk
        h["x-request-id"] = o.request_id
    return h


def as_gateway_error(exc: BaseException) -> GatewayError:
    """Any exception as a GatewayError safe to show (no traceback, no key)."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        from knollm.gateway.client_backend import NO_SDK_RETRY

        return GatewayError("the request took longer than the gateway's time limit", status=504, type="timeout",
                            headers=NO_SDK_RETRY)
    if isinstance(exc, KnollmError):
        from knollm.gateway.client_backend import map_client_error

        return map_client_error(exc)
    log.exception("internal error")
    return GatewayError(f"internal gateway error ({type(exc).__name__})", status=500, type="server_error")


_LOOPBACK_SEEN: dict[str, bool] = {}


def _loopback_name(host: str) -> bool:
    """Whether ``host`` names this machine by itself (see ``_is_loopback_name``), remembered
    for the first 256 distinct values: every request of a keyless gateway asks it of the
    same ``Host``, and parsing an address costs more than the rest of the check."""
    seen = _LOOPBACK_SEEN.get(host)
    if seen is None:
        seen = _is_loopback_name(host)
        if len(_LOOPBACK_SEEN) < 256:
            _LOOPBACK_SEEN[host] = seen
    return seen


def _is_loopback_name(host: str) -> bool:
    """Whether ``host`` (a name or address, without port) names this machine by itself:
    ``localhost``, ``*.localhost``, a loopback address, or ``0.0.0.0``/``::`` (which
    Linux connects to this machine; tools print it as the address a server listens on).
    No DNS: a name that resolves to 127.0.0.1 is what a DNS-rebinding page uses."""
    host = host.strip().lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


def _host_of(authority: str) -> str:
    """The host of a ``Host`` header value (``name:port``, ``[::1]:port``, ``name``)."""
    if authority.startswith("["):
        return authority[1:authority.find("]")] if "]" in authority else authority
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def local_request_problem(host: str | None, origin: str | None) -> str | None:
    """Why a request to a gateway without keys is not from this machine's own programs
    (None: it is). Browsers send ``Origin`` with every cross-site POST, even one a page
    cannot read the answer of: a page on another site would otherwise spend the user's
    provider keys through the keyless gateway. A ``Host`` that is not a loopback name is a
    DNS-rebinding page (a site whose name now resolves to 127.0.0.1) or a proxy exposing
    the gateway to the network. Programs (SDKs, curl, editors' extension hosts) send no
    ``Origin``; an app's renderer sends its own scheme's, which no web site can."""
    if host and not _loopback_name(_host_of(host)):
        return f"Host {host[:100]!r} is not a loopback name (a web page using DNS rebinding, or a proxy " \
               "exposing this keyless gateway)"
    if origin is not None:  # an app's own scheme (vscode-webview:, app:, tauri:, …) no web site can send
        from urllib.parse import urlsplit

        try:
            u = urlsplit(origin.strip())
            web, name = u.scheme.lower() in ("http", "https", "") or origin.strip() == "null", u.hostname
        except ValueError:
            web, name = True, None
        if web and not (name and _loopback_name(name)):
            return f"Origin {origin[:100]!r} is not a page on this machine (a web site may not spend through it)"
    return None


class _Held(NamedTuple):
    """What a call holds against its gateway key's limits: USD of its budget and the hold's
    id; the tokens it reserved of its TPM limit, and the minute they count in (None: none)."""

    amount: float
    id: str | None
    tokens: int = 0
    minute: int | None = None


_NO_HOLD = _Held(0.0, None)
#: the scope key the server sets (to the limit, in seconds) when it closed a request it
#: had not wholly received within the read time limit
READ_TIMED_OUT = "knollm.read_timed_out"
#: the scope's ``extensions`` key of the server's ``whole_answer(send, status, content_type,
#: headers, body, chunked=False) -> bool`` (``knollm serve``'s uvicorn protocol: an answer
#: known whole written at once, see :class:`knollm.gateway.server.GatewayHTTP`); False, or
#: no such key: sent through ASGI
WHOLE_ANSWER = "knollm.whole_answer"
#: the scope's ``extensions`` key of the event loop serving the connection (``knollm
#: serve``'s protocol sets it): on CPython 3.11 ``asyncio.get_running_loop()`` makes a
#: ``getpid`` system call (its check against a fork), a request's time limit needs the loop
EVENT_LOOP = "knollm.event_loop"
_NO_EXTENSIONS: dict[str, Any] = {}
#: how many times a request is checked with a key read again (its settings changed meanwhile)
_REREADS = 3


class _Access:
    """Gateway-key checks shared by the routes: auth, allowed models, RPM, budget."""

    def __init__(self, store: KeyStore | None, cfg: GatewayConfig,
                 deployments: Callable[[str], tuple[bool, list[str]]] | None = None, backend: Any = None) -> None:
        self.store = store
        self.cfg = cfg
        self.deployments = deployments  # what a target routes to (the backend's, when it can say)
        self.backend = backend  # what a call may cost and use (worst_case_usd, estimate)
        self._required: tuple[float, bool] = (0.0, False)
        self._asking: asyncio.Future[bool] | None = None  # the store is asked once at a time
        self._cache: dict[str, tuple[float, GatewayKey | None]] = {}

    def _known_required(self) -> bool | None:
        """Whether keys are required, when known without asking the store (else None):
        the request's path then awaits nothing for it."""
        if self.store is None:
            return False
        if self.cfg.require_keys:
            return True
        at, value = self._required
        return None if time.monotonic() - at > self.cfg.key_cache_s else value

    async def _keys_required(self) -> bool:
        value = self._known_required()
        if value is not None:
            return value
        job = self._asking
        if job is None:  # (requests arriving meanwhile wait for the same answer)
            job = self._asking = asyncio.ensure_future(run_in_threadpool(self._configured))
            job.add_done_callback(self._asked)
        return await asyncio.shield(job)

    def _configured(self) -> bool:
        """Whether keys are required: once any key was created, even if every key is now
        revoked or expired (the last one going locks the gateway, it does not open it). An
        active key answers it at once; only without one is the store asked for any key."""
        assert self.store is not None
        return self.store.any_active() or self.store.keys_configured()

    async def warm(self) -> None:
        """Ask the key store once before the first request (its thread pool starts then)."""
        try:
            await self._keys_required()
        except Exception as e:  # noqa: BLE001 - a request asks again, and gets the error
            log.warning("gateway keys: the store did not answer at startup (%s)", type(e).__name__)

    def _asked(self, job: asyncio.Future[bool]) -> None:
        self._asking = None
        if not job.cancelled() and job.exception() is None:
            self._required = (time.monotonic(), job.result())

    async def authenticate(self, request: Request) -> GatewayKey | None:
        required = self._known_required()
        if required is None:
            required = await self._keys_required()
        if not required:
            h = request.headers
            auth, xkey = h.get("authorization"), h.get("x-api-key")
            # a gateway key sent to a gateway without keys is checked all the same (unknown,
            # revoked or expired: 401; one created since the store was asked is served as a
            # key), never ignored; any other value (the SDKs need one) is not looked at
            if (auth is None or KEY_PREFIX not in auth) and (xkey is None or KEY_PREFIX not in xkey):
                self.local_only(request)
                return None
            token = self._token(request)
            if not token.startswith(KEY_PREFIX):
                self.local_only(request)
                return None
            return await self._key(token)
        token = self._token(request)
        if not token:
            raise GatewayError("a gateway key is required (Authorization: Bearer kn-…)", status=401,
                               type="authentication_error", code="missing_api_key")
        return await self._key(token)

    @staticmethod
    def _token(request: Request) -> str:
        auth = request.headers.get("authorization") or ""
        return auth[7:].strip() if auth[:7].lower() == "bearer " else (request.headers.get("x-api-key") or "").strip()

    async def _key(self, token: str) -> GatewayKey:
        """The active key ``token`` is (401 otherwise), from a cache kept ``key_cache_s``: a
        key revoked or changed meanwhile is refused by the store statements of :meth:`admit`
        (a changed one is read again there, :meth:`_reread`)."""
        hit = self._cache.get(token)
        if hit is None or time.monotonic() - hit[0] > self.cfg.key_cache_s or (hit[1] is not None and
                                                                              hit[1].expired()):
            # (a key cached as expired is looked up again: ``keys update`` may have extended it)
            found = None if self.store is None else await run_in_threadpool(self.store.lookup, token)
            hit = (time.monotonic(), found)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[token] = hit
        return self._usable(hit[1])

    @staticmethod
    def _usable(key: GatewayKey | None) -> GatewayKey:
        """``key``, unless unknown (or revoked) or expired: 401."""
        if key is None:
            raise GatewayError("invalid or revoked gateway key", status=401, type="authentication_error",
                               code="invalid_api_key")
        if key.expired():
            raise GatewayError(f"gateway key {key.name!r} expired at "
                               f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(key.expires_at))}",
                               status=401, type="authentication_error", code="expired_api_key")
        return key

    @staticmethod
    def local_only(request: Request) -> None:
        """Without gateway keys, answer only this machine's programs (see
        :func:`local_request_problem`): 403 otherwise, and nothing is called."""
        problem = local_request_problem(request.headers.get("host"), request.headers.get("origin"))
        if problem is not None:
            raise GatewayError(f"this gateway has no keys, so it answers only programs on this machine: {problem}. "
                               "To serve other hosts or sites, create a gateway key (knollm serve keys create NAME) "
                               "and send it", status=403, type="permission_error", code="not_local")

    async def _reread(self, key: GatewayKey) -> GatewayKey:
        """The key's settings as stored now, after a statement found them changed since the
        key was cached (:class:`KeyChanged`): the cache's entries for it replaced, so this
        gateway's next requests use them too."""
        assert self.store is not None
        fresh = await run_in_threadpool(self.store.current, key.id)
        if fresh is None or fresh.revoked_at is not None:
            raise KeyRevoked()
        now = time.monotonic()
        for token, (_, cached) in list(self._cache.items()):
            if cached is not None and cached.id == key.id:
                self._cache[token] = (now, fresh)
        return self._usable(fresh)

    async def allow(self, key: GatewayKey | None, targets: list[str]) -> GatewayKey | None:
        """Check the key may name every one of ``targets`` (each link of a fallback chain),
        and may use what each routes to: a target that names a model (an alias, or a
        canonical id as written) may be served by any of its deployments; any other target
        (a provider's model, however spelled) only by deployments the key allows, so
        ``--allow 'groq/*'`` is not passed by a spelling the catalog resolves elsewhere.
        A key refused here is first checked live: one revoked since it was cached gets 401,
        not an answer about what it may call, and one changed since is checked again with
        its current list. Returns the key as checked (read again, if so)."""
        for _ in range(_REREADS):
            err = self._refusal(key, targets)
            if err is None:
                return key
            fresh = await self.live(key)
            if fresh is key:
                raise err
            key = fresh
        raise KeyChanged()

    def _refusal(self, key: GatewayKey | None, targets: list[str]) -> GatewayError | None:
        if key is None or not key.allowed:
            return None
        for t in targets:
            if not key.allows(t):
                return GatewayError(f"model {t!r} is not allowed for gateway key {key.name!r}", status=403,
                                    type="permission_error", code="model_not_allowed")
            if self.deployments is None:
                continue
            names_a_model, keys = self.deployments(t)
            bad = None if names_a_model else next((k for k in keys if not key.allows(k)), None)
            if bad is not None:
                return GatewayError(f"model {t!r} routes to {bad!r}, which gateway key {key.name!r} does not "
                                    "allow", status=403, type="permission_error", code="model_not_allowed")
        return None

    async def live(self, key: GatewayKey | None) -> GatewayKey | None:
        """Refuse a key revoked since it was cached (:class:`KeyRevoked`, 401), and return
        its current settings (read again when ``keys update`` changed them since): one
        primary-key read, for the routes that run no other store statement for it (the
        model list, token counts, metrics) and for a refusal. Without a key, nothing."""
        if key is None or self.store is None:
            return key
        try:
            await run_in_threadpool(self.store.check_live, key.id, key.revision)
        except KeyChanged:
            return await self._reread(key)
        return key

    async def admit(self, key: GatewayKey | None, targets: list[str], body: dict[str, Any],
                    op: str = "chat") -> _Held:
        """Check the key may call ``targets`` now; returns what is held against its limits.
        Each store statement run here refuses a key revoked since it was cached (401), and
        one whose settings changed since (:class:`KeyChanged`: nothing was counted or held,
        and the request is checked anew with the key as stored now); a key with no RPM, TPM
        or budget has its row read instead, so revocation and changes take effect at once.
        A key with a TPM limit or a budget has the call's output capped: without
        ``max_tokens`` in ``body`` it gets the one its estimate assumed."""
        if key is None:
            return _NO_HOLD
        counted: list[int] = []  # this request's RPM count, once a statement counted it (not twice)
        for i in range(_REREADS):
            try:
                return await self._admit(key, targets, body, op, counted)
            except KeyChanged:
                if i == _REREADS - 1:
                    raise
                key = await self._reread(key)
        raise AssertionError("not reached")

    async def _admit(self, key: GatewayKey, targets: list[str], body: dict[str, Any], op: str,
                     counted: list[int]) -> _Held:
        key = await self.allow(key, targets) or key
        store = self.store
        assert store is not None
        if key.rpm:
            if not counted:
                counted.append(await run_in_threadpool(store.hit, key.id, None, key.revision))
            n = counted[0]
            if n > key.rpm:
                wait = str(max(1, int(60 - time.time() % 60)))
                raise GatewayError(f"gateway key {key.name!r} is over its limit of {key.rpm} requests per minute",
                                   status=429, type="rate_limit_error", code="rate_limit_exceeded",
                                   headers={"retry-after": wait})
        budgeted = key.budget_usd is not None
        if not budgeted and not key.tpm:
            if not key.rpm:  # nothing above read the key's row: is it still live?
                await run_in_threadpool(store.check_live, key.id, key.revision)
            return _NO_HOLD
        amount, tokens = self._estimate(body, targets, op)
        if amount is None and budgeted and body.get("tools"):
            from knollm.client.accounting import search_bound

            if search_bound(body) is None:  # (its worst case is unknown for that reason: not held at a guess)
                raise GatewayError(f"gateway key {key.name!r} has a budget, and this call's web_search tool has no "
                                   "max_uses: its searches are billed each and nothing bounds them; give the "
                                   "web_search tool max_uses", status=400, type="invalid_request_error",
                                   code="web_search_unbounded")
        minute = None
        if key.tpm:  # calls in flight count at their estimate, so concurrent calls cannot all pass
            minute = await run_in_threadpool(store.reserve_tokens, key.id, tokens, key.tpm, None, key.revision)
            if minute is None:
                used = await run_in_threadpool(store.tokens_used, key.id)
                wait = str(max(1, int(60 - time.time() % 60)))
                raise GatewayError(f"gateway key {key.name!r} used {used} of its {key.tpm} tokens per minute "
                                   "(calls in flight count at their estimate)",
                                   status=429, type="rate_limit_error", code="tokens_per_minute_exceeded",
                                   headers={"retry-after": wait})
        if not budgeted:
            return _Held(0.0, None, tokens, minute)
        amount = self.cfg.default_hold_usd if amount is None else amount
        # the hold lasts the request's time limit and a margin (a minute, or the limit when
        # shorter: the settle after the limit, clocks of replicas a little apart): past that
        # its call is over, and a hold still there was left by a replica that died
        ttl = self.cfg.timeout_s + min(60.0, self.cfg.timeout_s)
        try:
            hold_id = await run_in_threadpool(store.reserve, key.id, amount, ttl, None, key.revision)
        except BaseException:
            await self._release_tokens(key, tokens, minute)
            raise
        if hold_id is None:
            await self._release_tokens(key, tokens, minute)
            fresh = await run_in_threadpool(store.current, key.id) or key
            budget = fresh.budget_usd if fresh.budget_usd is not None else float("inf")
            if fresh.spent_period_usd + amount > budget + budget_slack(budget):  # used up: no retry succeeds before it renews
                renews = fresh.renews_at()
                when = "" if renews is None else time.strftime("; it renews at %Y-%m-%dT%H:%MZ", time.gmtime(renews))
                why, headers = f"spent ${fresh.spent_period_usd:.6g}{when}", {"x-should-retry": "false"}  # (SDKs obey)
            else:  # calls in flight hold the rest: settled, they free what they did not spend
                why, headers = f"${fresh.reserved_usd:.6g} held by calls in flight", {"retry-after": "1"}
            raise GatewayError(f"gateway key {key.name!r} has no budget left for this call "
                               f"(budget {fresh.budget_text()}, {why}; this call's worst case ${amount:.6g})",
                               status=429, type="insufficient_quota", code="insufficient_quota", headers=headers)
        return _Held(amount, hold_id, tokens, minute)

    def _estimate(self, body: dict[str, Any], targets: list[str], op: str) -> tuple[float | None, int]:
        """The call's worst-case cost (None: unknown) and tokens (prompt + output), for a key
        with a budget or a TPM limit. A chat call without ``max_tokens`` (or
        ``max_completion_tokens``) is given the output the estimate assumed as
        ``max_tokens``: nothing else would stop a long answer from passing the hold."""
        backend = self.backend
        estimate = getattr(backend, "estimate", None)
        if estimate is None:  # (a backend that only prices calls)
            usd = backend.worst_case_usd(body, targets, op) if backend is not None else None
            return usd, 0
        usd, prompt, out = estimate(body, targets, op)
        if op == "chat" and out and not body.get("max_tokens") and not body.get("max_completion_tokens"):
            body["max_tokens"] = out
        return usd, prompt + out

    async def _release_tokens(self, key: GatewayKey, tokens: int, minute: int | None) -> None:
        """Give back a TPM reservation of a call that does not run."""
        if minute is None or self.store is None:
            return
        try:
            await run_in_threadpool(self.store.settle_tokens, key.id, minute, tokens, 0)
        except Exception as e:  # noqa: BLE001 - the reservation then only counts until the minute ends
            log.warning("gateway key %r: the store did not release a token reservation (%s)", key.name,
                        type(e).__name__)

    async def settle(self, key: GatewayKey | None, held: _Held, outcome: Outcome | None) -> None:
        if key is None or self.store is None:
            return
        if held.minute is not None:  # what the provider billed (the call, and cut attempts) replaces the estimate
            tokens = 0
            if outcome is not None:
                tokens = (outcome.input_tokens + outcome.output_tokens) if outcome.served else 0
                tokens += sum((a["charged"].get("input_tokens") or 0) + (a["charged"].get("output_tokens") or 0)
                              for a in outcome.attempts if a.get("charged"))
            try:
                await run_in_threadpool(self.store.settle_tokens, key.id, held.minute, held.tokens, tokens)
            except Exception as e:  # noqa: BLE001 - the answer is not lost to the key store
                log.warning("gateway key %r: the store did not take the tokens of a call (%s)", key.name,
                            type(e).__name__)
        # an unpriced cost is charged what was held, under a budget; without one (nothing
        # held) only known costs count
        unknown = self.cfg.default_hold_usd if held.id is not None else 0.0
        if outcome is None or not outcome.served:
            cost = 0.0  # failed calls are not in the ledger, and not charged to the key either
        else:  # (interrupted streams are: the provider bills them)
            cost = held.amount if outcome.cost_usd is None else outcome.cost_usd
        for a in outcome.attempts if outcome is not None else ():  # failed attempts the provider billed
            ch = a.get("charged")
            if ch:
                cost += unknown if ch["cost_usd"] is None else ch["cost_usd"]
        try:
            if held.id is not None:
                await run_in_threadpool(self.store.settle, key.id, held.id, cost)
            elif cost:  # a key without a budget held nothing: its spend is still counted
                await run_in_threadpool(self.store.charge, key.id, cost)
        except Exception as e:  # noqa: BLE001 - the call is over: its answer is not lost to the key store
            # the hold expires in its time; the ledger has the call (tagged with the key)
            log.warning("gateway key %r: the store did not take the cost of a call (%s)", key.name, type(e).__name__)


def create_app(backend: Backend, *, store: KeyStore | None = None, config: GatewayConfig | None = None,
               metrics: Metrics | None = None) -> Starlette:
    """The ASGI app over ``backend``; ``store`` holds gateway keys (None: no keys, open)."""
    cfg = config or GatewayConfig()
    m = metrics or Metrics()
    access = _Access(store, cfg, getattr(backend, "deployments", None), backend)

    async def read_json(request: _ChatRequest) -> Any:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > cfg.max_body_bytes:
            raise GatewayError(f"request body over the limit of {cfg.max_body_bytes} bytes", status=413,
                               type="invalid_request_error", code="request_too_large")
        data = await request.body(cfg.max_body_bytes)
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            raise GatewayError("the request body is not valid JSON", status=400) from None

    def record(route: str, status: int, started: float, outcome: Outcome | None, alias: str,
               err: GatewayError | None = None) -> None:
        m.requests.inc(route, str(status))
        m.latency.observe(time.perf_counter() - started, route)
        if err is not None:
            m.errors.inc(route, err.type)
        if outcome is None:
            return
        alias = m.alias(alias)
        for a in outcome.attempts:
            m.attempts.inc(a.get("provider") or "", a.get("model") or "", str(a.get("status") or ""))
            ch = a.get("charged")
            if ch:  # a failed attempt the provider bills (an answer cut mid-body): in the ledger too
                p, mod = a.get("provider") or "", a.get("model") or ""
                m.cut.inc(p, mod, alias)
                m.charged(p, mod, alias, ch["input_tokens"], ch["output_tokens"], 0, ch["cost_usd"], False)
        if outcome.provider and outcome.served:  # a charged call (answered, or interrupted after output)
            p, mod = outcome.provider, outcome.model or ""
            m.charged(p, mod, alias, outcome.input_tokens, outcome.output_tokens, outcome.cached_tokens,
                      outcome.cost_usd, outcome.interrupted, outcome.duration_s)
            if outcome.ttft_s is not None:
                m.ttft.observe(outcome.ttft_s, p, mod)

    def error_response(route: str, started: float, exc: BaseException, alias: str, anthropic: bool,
                       outcome: Outcome | None = None) -> Response:
        err = as_gateway_error(exc)
        outcome = outcome or getattr(exc, "outcome", None)
        record(route, err.status, started, outcome if isinstance(outcome, Outcome) else None, alias, err)
        headers = {**_knollm_headers(outcome if isinstance(outcome, Outcome) else None), **err.headers}
        return _JSONBytes(_dumps(error_body(err, anthropic)), err.status, headers)

    async def serve_chat(request: _ChatRequest, route: str, dialect: str) -> Response:
        """One call in the caller's ``dialect``: ``openai`` (chat completions), ``anthropic``
        (Messages), ``responses`` (the Responses API) or ``completions`` (legacy text
        completions), each run as chat completions; or ``embeddings`` (OpenAI's embeddings
        API, run as an embeddings call)."""
        anthropic = dialect == "anthropic"
        op = "embed" if dialect == "embeddings" else "chat"
        started = time.perf_counter()
        alias = "?"
        m.in_flight += 1
        try:
            key = await access.authenticate(request)
            raw = await read_json(request)
            body = anthropic_to_openai(raw) if anthropic else responses_to_chat(raw) if dialect == "responses" \
                else validate_embeddings_request(raw) if op == "embed" \
                else completions_to_chat(raw) if dialect == "completions" else validate_chat_request(raw)
            targets = split_target(body["model"])
            alias = body["model"] if isinstance(body["model"], str) else ",".join(targets)
            held = _NO_HOLD if key is None else await access.admit(key, targets, body, op)  # (keyless: no coroutine)
        except BaseException as e:  # noqa: BLE001 - every failure becomes an error response
            m.in_flight -= 1
            if isinstance(e, asyncio.CancelledError):
                raise
            return error_response(route, started, e, alias, anthropic)
        tag = key.tag if key is not None else None  # the ledger's caller: key:<name>, never the token
        if body.get("stream"):
            return await _stream(body, targets, tag, key, held, route, started, alias, dialect, raw,
                                 request.scope.get("extensions", _NO_EXTENSIONS).get(EVENT_LOOP), request.send)
        outcome: Outcome | None = None
        deadline = _Deadline(cfg.timeout_s, request.scope.get("extensions", _NO_EXTENSIONS).get(EVENT_LOOP))
        try:
            work = backend.embed(body, targets=targets, tag=tag) if op == "embed" else \
                backend.complete(body, targets=targets, tag=tag)
            resp, outcome = await deadline.wait(work)
        except BaseException as e:  # noqa: BLE001
            outcome = getattr(e, "outcome", None)
            await access.settle(key, held, outcome if isinstance(outcome, Outcome) else None)
            m.in_flight -= 1
            if isinstance(e, asyncio.CancelledError):
                raise
            return error_response(route, started, e, alias, anthropic)
        finally:
            deadline.cancel()
        if key is not None:  # (keyless: nothing to settle, no coroutine)
            await access.settle(key, held, outcome)
        m.in_flight -= 1
        record(route, 200, started, outcome, alias)
        if anthropic:
            resp = openai_to_anthropic(resp, raw.get("model"))
        elif dialect == "responses":
            resp = chat_to_response(resp, raw)
            resp["knollm"] = _knollm_meta(outcome)
        elif dialect == "completions":
            resp = chat_to_completion(resp)
            resp["knollm"] = _knollm_meta(outcome)
        else:
            resp["knollm"] = _knollm_meta(outcome)  # as the stream's last chunk has it
        headers = _knollm_headers(outcome)
        if anthropic and outcome.request_id:  # (the anthropic SDK's ``_request_id`` reads this one)
            headers["request-id"] = outcome.request_id
        return _JSONBytes(_dumps(resp), 200, headers)

    async def _stream(body: dict[str, Any], targets: list[str], tag: str | None, key: GatewayKey | None,
                      held: _Held, route: str, started: float, alias: str, dialect: str, raw: dict[str, Any],
                      loop: Any = None, send: Any = None) -> Response:
        anthropic = dialect == "anthropic"
        deadline = _Deadline(cfg.timeout_s, loop)  # the whole request, stream included
        if send is not None and cfg.stream_keepalive_s:  # (keep-alive comments while the first piece is awaited)
            deadline.quiet(cfg.stream_keepalive_s, send)
        stream: Any = None
        try:  # until the body starts, a failure is an error answer, settled and counted here
            want_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            stream = backend.stream(body, targets=targets, tag=tag)
            try:
                first = await deadline.wait(stream.__anext__())
            except StopAsyncIteration:
                first = None
            early = deadline.heard()  # (an answer begun with keep-alive comments, else None)
            headers = _knollm_headers(stream.outcome, streaming=True)
            model_name = body["model"]
            conv = AnthropicStream(model_name, "msg_" + new_id()) if anthropic else None
            rconv = ResponsesStream(response_skeleton(raw, model_name)) if dialect == "responses" else None
        except BaseException as e:  # noqa: BLE001
            early = deadline.heard()
            deadline.cancel()
            if stream is not None:  # (a stream past its first batch is closed, and charged, first)
                with contextlib.suppress(Exception):
                    await stream.aclose()
            outcome = getattr(e, "outcome", None) or getattr(stream, "outcome", None)
            await access.settle(key, held, outcome if isinstance(outcome, Outcome) else None)
            m.in_flight -= 1
            if isinstance(e, asyncio.CancelledError):
                if early is not None:
                    early.stop()
                raise
            if early is not None and await early.begun():  # the 200 has left: the error is an event
                err = as_gateway_error(e)
                record(route, err.status, started, outcome if isinstance(outcome, Outcome) else None, alias, err)
                if anthropic:
                    data = b"event: error\ndata: " + _dumps(error_body(err, True)) + b"\n\n"
                elif dialect == "responses":
                    fail = ResponsesStream(response_skeleton(raw, body["model"])).fail(error_body(err)["error"], {})
                    data = b"".join(b"event: " + n.encode() + b"\ndata: " + _dumps(d) + b"\n\n" for n, d in fail)
                else:
                    data = b"data: " + _dumps(error_body(err)) + b"\n\n"
                return _EventStream(_one(data), {}, early)
            return error_response(route, started, e, alias, anthropic, outcome)
        legacy = dialect == "completions"

        def events(pairs: Any) -> list[bytes]:
            return [b"event: " + name.encode() + b"\ndata: " + _dumps(data) + b"\n\n" for name, data in pairs]

        def sse(chunk: dict[str, Any]) -> list[bytes]:
            if conv is not None:
                return events(conv.feed(chunk))
            if rconv is not None:
                return events(rconv.feed(chunk))
            if legacy:
                chunk = completion_chunk(chunk)
            if not chunk.get("choices") and chunk.get("usage") is not None:
                if not want_usage:
                    return []
                chunk = {**chunk, "knollm": _knollm_meta(stream.outcome)}
            return [b"data: " + _dumps(chunk) + b"\n\n"]

        def frame(batch: list[dict[str, Any]]) -> bytes:
            """A batch of chunks as one write (what arrived together leaves together)."""
            return b"".join(piece for chunk in batch for piece in sse(chunk))

        def tail() -> bytes:
            if rconv is not None:  # (a Responses stream ends with response.completed, no [DONE])
                return b"".join(events(rconv.close({"knollm": _knollm_meta(stream.outcome)})))
            if conv is None:
                return b"data: [DONE]\n\n"
            return b"".join(events(conv.close()))

        async def body_iter() -> AsyncIterator[tuple[bytes, bool]]:
            """``(bytes, more)``: one write per upstream batch; the last batch (it ends with
            the usage chunk) leaves with the stream's end in the same write."""
            status, err = 200, None
            try:
                batch = first
                while batch is not None:
                    data = frame(batch)
                    if batch and batch[-1].get("usage") is not None and not batch[-1].get("choices"):
                        yield data + tail(), False
                        return
                    if data:
                        yield data, True
                    try:
                        batch = await deadline.wait(stream.__anext__())
                    except StopAsyncIteration:
                        batch = None
                yield tail(), False
            except BaseException as e:  # noqa: BLE001 - a broken stream ends with an error event
                if isinstance(e, (asyncio.CancelledError, GeneratorExit)):
                    status = 499
                    raise
                err = as_gateway_error(e)
                status = err.status
                if conv is not None:
                    given = b"".join(events(conv.flush())) if conv.held else b""  # text held for the calls
                    yield given + b"event: error\ndata: " + _dumps(error_body(err, True)) + b"\n\n", False
                elif rconv is not None:
                    yield b"".join(events(rconv.fail(error_body(err)["error"],
                                                     {"knollm": _knollm_meta(stream.outcome)}))), False
                else:
                    yield b"data: " + _dumps(error_body(err)) + b"\n\n", False
            finally:
                deadline.cancel()
                try:
                    await stream.aclose()
                finally:
                    if key is not None:
                        await access.settle(key, held, stream.outcome)
                    m.in_flight -= 1
                    record(route, status, started, stream.outcome, alias, err)

        return _EventStream(body_iter(), {**headers, "cache-control": "no-cache"}, early)

    async def chat_completions(request: Request) -> Response:
        return await serve_chat(request, "/v1/chat/completions", "openai")

    async def messages(request: Request) -> Response:
        return await serve_chat(request, "/v1/messages", "anthropic")

    async def responses(request: Request) -> Response:
        return await serve_chat(request, "/v1/responses", "responses")

    async def embeddings(request: Request) -> Response:
        return await serve_chat(request, "/v1/embeddings", "embeddings")

    async def completions(request: Request) -> Response:
        return await serve_chat(request, "/v1/completions", "completions")

    async def count_tokens(request: _ChatRequest) -> Response:
        """``POST /v1/messages/count_tokens`` (Claude Code sends dozens at startup): the
        provider's own count where its API has one, else Knollm's estimate, said in
        ``x-knollm-token-count`` and the ``knollm`` object. Free: gateway keys are checked
        for the model, not charged, and no RPM is counted."""
        route = "/v1/messages/count_tokens"
        started = time.perf_counter()
        alias = "?"
        try:
            key = await access.authenticate(request)
            raw = await read_json(request)
            if not isinstance(raw, dict):
                raise GatewayError("the request body must be a JSON object", status=400)
            body = anthropic_to_openai({**raw, "max_tokens": 1})  # (count_tokens takes no max_tokens)
            del body["max_tokens"]
            targets = split_target(body["model"])
            alias = body["model"]
            key = await access.live(key)  # (free: no other statement would see a revocation or change)
            await access.allow(key, targets)
            count, outcome = await backend.count_tokens(body, targets=targets, native=raw)
        except BaseException as e:  # noqa: BLE001 - every failure becomes an error response
            if isinstance(e, asyncio.CancelledError):
                raise
            return error_response(route, started, e, alias, True)
        record(route, 200, started, outcome, alias)
        headers = {**_knollm_headers(outcome), "x-knollm-token-count": count["knollm"]["source"]}
        return _JSONBytes(_dumps(count), 200, headers)

    async def listed(request: Request) -> list[dict[str, Any]]:
        """The models this caller may call."""
        key = await access.live(await access.authenticate(request))
        data = await backend.models()
        return data if key is None else [d for d in data if key.allows(d["id"])]

    async def models(request: Request) -> Response:
        """``GET /v1/models``: OpenAI's list, or Anthropic's page of ``ModelInfo`` for a caller
        that sends ``anthropic-version`` (as every Anthropic SDK request does)."""
        started = time.perf_counter()
        anthropic = "anthropic-version" in request.headers
        try:
            data = await listed(request)
            body = _anthropic_page(data, request.query_params) if anthropic else {"object": "list", "data": data}
        except Exception as e:  # noqa: BLE001
            return error_response("/v1/models", started, e, "", anthropic)
        record("/v1/models", 200, started, None, "")
        return Response(_dumps(body), media_type="application/json", headers=_knollm_headers(None))

    async def model(request: Request) -> Response:
        """``GET /v1/models/{id}``: one of :func:`models`' entries (ids may hold ``/``,
        sent as ``%2F`` by the SDKs), else a 404 ``model_not_found``."""
        started = time.perf_counter()
        anthropic = "anthropic-version" in request.headers
        wanted = request.path_params["model_id"]
        try:
            data = await listed(request)
            hit = next((d for d in data if d["id"] == wanted), None)
            if hit is None:
                raise GatewayError(f"no model {wanted!r} here: not an alias of the lockfile, not in the catalog, "
                                   "or its provider has no key (GET /v1/models lists what can be called)",
                                   status=404, type="not_found_error", code="model_not_found")
        except Exception as e:  # noqa: BLE001
            return error_response("/v1/models/{id}", started, e, "", anthropic)
        record("/v1/models/{id}", 200, started, None, "")
        return Response(_dumps(_anthropic_model(hit) if anthropic else hit), media_type="application/json",
                        headers=_knollm_headers(None))

    def spooled() -> int | None:
        fn = getattr(backend, "spooled", None)
        return fn() if fn is not None else None

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "store": store.db.dialect if store else None,
                             "keys_required": await access._keys_required(), "ledger_spooled": spooled()},
                            headers=_knollm_headers(None))

    async def metrics(request: Request) -> Response:
        # what calls cost, and the aliases callers sent, are for the gateway's own users:
        # with keys, any active key (a scraper's; nothing is charged to it); without,
        # only programs on this machine (not a web page)
        try:
            await access.live(await access.authenticate(request))
        except GatewayError as e:
            return _JSONBytes(_dumps(error_body(e)), e.status, _knollm_headers(None))
        text = m.render()
        n = spooled()
        if n is not None:  # read when scraped: rows any process left in the spool count
            text += ("# HELP knollm_gateway_ledger_spooled_rows Ledger rows waiting in the spool (calls answered "
                     "while the ledger store failed), written at the next settle that succeeds.\n"
                     f"# TYPE knollm_gateway_ledger_spooled_rows gauge\nknollm_gateway_ledger_spooled_rows {n}\n")
        return Response(text, media_type=CONTENT_TYPE, headers=_knollm_headers(None))

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        err = GatewayError(f"no route {request.method} {request.url.path}", status=status,
                           type="not_found_error" if status == 404 else "invalid_request_error")
        anthropic = request.url.path.startswith("/v1/messages")  # (Anthropic's routes: its error shape)
        return Response(_dumps(error_body(err, anthropic)), status_code=status, media_type="application/json",
                        headers=_knollm_headers(None))

    async def server_error(request: Request, exc: Exception) -> Response:
        err = as_gateway_error(exc)
        return Response(_dumps(error_body(err)), status_code=err.status, media_type="application/json",
                        headers=_knollm_headers(None))

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/responses", responses, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/embeddings", embeddings, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/completions", completions, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/models", models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", model, methods=["GET"]),
        Route("/models/{model_id:path}", model, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await access.warm()
            yield
        finally:
            await backend.aclose()

    app = _GatewayApp(routes=routes, exception_handlers={404: not_found, 405: not_found, 500: server_error},
                      lifespan=lifespan)
    def direct(route: str, dialect: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
        # serve_chat itself, not the Route handler that awaits it: one coroutine fewer on
        # every request, and on every resumption of it
        return functools.partial(serve_chat, route=route, dialect=dialect), server_error

    app.chat_routes = {"/v1/chat/completions": direct("/v1/chat/completions", "openai"),
                       "/chat/completions": direct("/v1/chat/completions", "openai"),
                       "/v1/messages": direct("/v1/messages", "anthropic"),
                       "/v1/messages/count_tokens": (count_tokens, server_error),
                       "/v1/responses": direct("/v1/responses", "responses"),
                       "/responses": direct("/v1/responses", "responses"),
                       "/v1/embeddings": direct("/v1/embeddings", "embeddings"),
                       "/embeddings": direct("/v1/embeddings", "embeddings"),
                       "/v1/completions": direct("/v1/completions", "completions"),
                       "/completions": direct("/v1/completions", "completions")}
    app.state.metrics = m
    app.state.backend = backend
    app.state.store = store
    return app


class _GatewayApp(Starlette):
    """Starlette, with the chat routes' POSTs sent straight to their handler: they catch
    every error themselves, so the middleware stack and route matching are skipped on the
    hot path (20-30 us of the gateway's ~560 us per request, measured in-process);
    everything else goes through Starlette as usual."""

    chat_routes: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        hit = self.chat_routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if hit is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        request = _ChatRequest(scope, receive, send)
        try:
            response = await hit[0](request)
        except Exception as e:  # noqa: BLE001 - as Starlette's error middleware would: a JSON 500
            response = await hit[1](Request(scope, receive, send), e)
        await response(scope, receive, send)


class _JSONBytes(Response):
    """A JSON answer from bytes already encoded, its headers built in one pass (Starlette's
    ``Response`` rebuilds and re-checks them: a few microseconds on every answer)."""

    media_type = "application/json"

    def __init__(self, body: bytes, status: int, headers: dict[str, str]) -> None:
        self.body, self.status_code, self.background, self._headers = body, status, None, headers

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:  # type: ignore[override]
        return [(b"content-length", b"%d" % len(self.body)), (b"content-type", b"application/json"),
                *[(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self._headers.items()]]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        whole = scope.get("extensions", _NO_EXTENSIONS).get(WHOLE_ANSWER)
        if whole is None or not await whole(send, self.status_code, "application/json", self._headers, self.body):
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": self.body})


class _EventStream(Response):
    """A ``text/event-stream`` answer written from ``(bytes, more)`` pieces: one ASGI send
    per piece, the last one closing the body in the same write. A client that goes away
    cancels the stream (and so the upstream call) through one watcher task, as
    Starlette's ``StreamingResponse`` does with a task group."""

    media_type = "text/event-stream"

    def __init__(self, body: AsyncIterator[tuple[bytes, bool]], headers: dict[str, str],
                 early: _Early | None = None) -> None:
        self.body_iterator = body
        self.status_code = 200
        self.background = None
        self._headers = headers
        self.early = early  # (its answer begun with keep-alive comments: the head has left)

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:  # type: ignore[override]
        return [(b"content-type", b"text/event-stream; charset=utf-8"),
                *[(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self._headers.items()]]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        task: Any = None  # (looked up once a watcher is needed: a running-loop lookup is a getpid call)
        gone = ended = False
        watcher = None

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            if not ended:  # (after the last write the server reports a disconnect too)
                gone = True
                task.cancel()

        it = self.body_iterator
        try:
            data, more = await it.__anext__()  # the first piece: the first batch is already here
            begun = self.early is not None and await self.early.begun()
            if not more and not begun:  # the whole stream in one write: nothing to watch for
                whole = scope.get("extensions", _NO_EXTENSIONS).get(WHOLE_ANSWER)
                if whole is not None and await whole(send, 200, "text/event-stream; charset=utf-8", self._headers,
                                                     data, chunked=True):
                    await _ended(it)
                    return
            if not begun:
                await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if not more:
                await send({"type": "http.response.body", "body": data, "more_body": False})
                # the body ends on its own: closed at its last piece instead, its
                # bookkeeping would take the stream for one whose client went away (499)
                await _ended(it)
                return
            task = asyncio.current_task()
            watcher = asyncio.ensure_future(watch())
            await send({"type": "http.response.body", "body": data, "more_body": True})
            async for data, more in it:
                ended = not more
                await send({"type": "http.response.body", "body": data, "more_body": more})
            if more:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not gone:
                raise
            task.uncancel()  # the client left: nothing more to send
        finally:
            if watcher is not None:
                watcher.cancel()
            await it.aclose()


async def _one(data: bytes) -> AsyncIterator[tuple[bytes, bool]]:
    """A body of one last piece."""
    yield data, False


#: the head of a stream begun before its first piece: who serves it is not known yet (its
#: last chunk's ``knollm`` object says)
_PENDING_HEAD = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"x-knollm-provider", b"pending"),
                 (b"x-knollm-model", b"pending"), (b"x-knollm-cost-usd", b"pending"),
                 (b"x-knollm-attempts", b"pending"), (b"cache-control", b"no-cache")]


class _Early:
    """A stream's answer begun while its first piece is awaited: the head (200, the
    ``x-knollm-*`` headers ``pending``) and an SSE comment, then a comment every time the
    request's :class:`_Deadline` says the keep-alive time passed again. Comments are ignored
    by every SSE reader (the openai and anthropic SDKs included); they keep a proxy in front
    of the gateway from cutting a caller whose model is still thinking (60 s of silence on
    AWS's ALB and nginx, 100 s on Cloudflare). The writes are tasks of their own: the
    request's task goes on awaiting the provider."""

    __slots__ = ("every", "send", "task", "stopped", "started")

    def __init__(self, every: float, send: Any) -> None:
        self.every, self.send, self.task, self.stopped, self.started = every, send, None, False, False

    def ping(self) -> None:
        if not self.stopped and (self.task is None or self.task.done()):
            self.task = asyncio.ensure_future(self._ping())

    async def _ping(self) -> None:
        try:
            if not self.started:
                self.started = True
                await self.send({"type": "http.response.start", "status": 200, "headers": _PENDING_HEAD})
            if not self.stopped:
                await self.send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
        except Exception:  # noqa: BLE001 - a connection gone meanwhile: the request's own writes say so
            log.debug("keep-alive write failed", exc_info=True)

    def stop(self) -> None:
        self.stopped = True

    async def begun(self) -> bool:
        """No more comments; whether the head has left (after any write under way)."""
        self.stopped = True
        if self.task is not None and not self.task.done():
            await self.task
        return self.started


async def _ended(it: AsyncIterator[Any]) -> None:
    """Let a body iterator that gave its last piece run to its end."""
    try:
        await it.__anext__()
    except StopAsyncIteration:
        pass


class _Headers:
    """A request's headers as the chat handlers read them: ``get(name)`` and ``name in``,
    lower-case names as ASGI gives them, a repeated header's first value. Built by one C
    call over the raw pairs; a value is decoded (latin-1) only when read: a handler reads
    four or five of a request's headers, and decoding them all took a pass per header."""

    __slots__ = ("raw",)

    def __init__(self, pairs: list[tuple[bytes, bytes]]) -> None:
        self.raw = dict(reversed(pairs))  # (reversed: a repeated header's first value is the one left)

    def get(self, name: str, default: Any = None) -> Any:
        v = self.raw.get(name.encode("latin-1"))
        return default if v is None else v.decode("latin-1")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.encode("latin-1") in self.raw


class _ChatRequest:
    """What the chat handlers read of a request: ``headers`` (:class:`_Headers`) and the
    body, read straight from ``receive`` up to a limit (Starlette's ``Request`` costs more
    than the handlers use)."""

    __slots__ = ("scope", "receive", "send", "headers")

    def __init__(self, scope: Any, receive: Any, send: Any = None) -> None:
        self.scope, self.receive, self.send = scope, receive, send
        self.headers = _Headers(scope["headers"])

    async def body(self, limit: int) -> bytes:
        chunks, size = [], 0
        while True:
            msg = await self.receive()
            if msg["type"] == "http.disconnect":
                took = self.scope.get(READ_TIMED_OUT)
                if took is not None:  # (the server closed it: see knollm.gateway.server.GatewayHTTP)
                    raise GatewayError(f"the request was not received within {took:g} s", status=408,
                                       type="invalid_request_error", code="request_timeout")
                raise GatewayError("the client went away before its request arrived", status=499,
                                   type="invalid_request_error", code="client_disconnected")
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise GatewayError(f"request body over the limit of {limit} bytes", status=413,
                                   type="invalid_request_error", code="request_too_large")
            chunks.append(chunk)
            if not msg.get("more_body"):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_NEVER = float("inf")

#: the event loops whose server is shutting down (:func:`drain`): id(loop) -> (the loop,
#: the loop time by which its requests must be done, the seconds they were given)
_DRAINING: dict[int, tuple[Any, float, float]] = {}


def drain(loop: Any, seconds: float) -> None:
    """The server of ``loop`` is shutting down (``knollm serve`` got SIGTERM, or Ctrl-C):
    every request in flight on it, and any that starts later, has at most ``seconds``
    more to finish. One still waiting for its provider then is cut as a request past its
    time limit is (:class:`_Deadline`), with a 503 ``shutting_down`` instead of a 504: a
    non-streamed request gets that answer, a stream its error event (its ledger row
    written, as for any stream cut short). Called again for the same loop (uvicorn calls
    its protocol's ``shutdown`` once a connection), it keeps the first deadline."""
    got = _DRAINING.get(id(loop))
    if got is not None and got[0] is loop:
        return
    at = loop.time() + seconds
    _DRAINING[id(loop)] = (loop, at, seconds)
    ticker = Ticker.current(loop)
    waits = [w for w in ticker.live if type(w) is _Deadline] if ticker is not None else []
    for w in waits:
        w.shorten(at, seconds)
    if waits:  # (a server stopping silently for seconds looks hung)
        log.warning("shutting down: %d request(s) in flight get up to %g s to finish (KNOLLM_GATEWAY_SHUTDOWN_S); "
                    "press Ctrl-C again to quit at once", len(waits), seconds)


class _Deadline:
    """A request's time limit: one per request (stream included) instead of an
    ``asyncio.timeout`` around every wait. :meth:`wait` awaits the upstream and raises
    ``TimeoutError`` when the limit passes meanwhile (or has passed); the limit cancels the
    task only while it waits there, never in the middle of a write. The limits of one
    event loop are checked together by a :class:`~knollm.client.ticker.Ticker` (a timer
    per request costs more than the rest of the bookkeeping), so one fires at most 0.1 s late.
    A server shutting down shortens it (:func:`drain`): past that, :meth:`wait` raises a 503
    ``shutting_down`` :class:`GatewayError` instead."""

    __slots__ = ("task", "at", "expired", "waiting", "ticker", "drained", "quiet_at", "keepalive")

    def __init__(self, seconds: float, loop: Any = None) -> None:
        if loop is None:  # (the server's, when it said: the lookup costs a getpid system call)
            loop = asyncio.get_running_loop()
        self.task = asyncio.current_task(loop)  # (given the loop: no running-loop lookup)
        self.at = loop.time() + seconds
        self.expired = self.waiting = False
        self.drained = 0.0  # (shortened by a shutdown: the seconds the server gave its requests)
        self.quiet_at = _NEVER  # (a stream's first piece awaited: when the next keep-alive is due)
        self.keepalive: Any = None  # (then (seconds, ASGI send), and once one is sent its _Early)
        if _DRAINING:  # the server is shutting down: no more than the time its requests have left
            got = _DRAINING.get(id(loop))
            if got is not None and got[0] is loop:
                self.shorten(got[1], got[2])
        self.ticker = Ticker.of(loop)
        self.ticker.live.add(self)

    def quiet(self, every: float, send: Any) -> None:
        """Keep-alive comments on ``send`` every ``every`` seconds while this request waits
        with nothing to write (a stream's first piece: see :class:`_Early`), until :meth:`heard`."""
        self.keepalive = (every, send)
        self.quiet_at = self.ticker.loop.time() + every

    def heard(self) -> _Early | None:
        """The first piece came (or the request failed): no more keep-alives; the stream's
        :class:`_Early` if one began its answer, else None."""
        early, self.keepalive, self.quiet_at = self.keepalive, None, _NEVER
        return early if type(early) is _Early else None

    def shorten(self, at: float, seconds: float) -> None:
        """The server is shutting down: the limit is now ``at`` (loop time), if sooner."""
        if at < self.at:
            self.at, self.drained = at, seconds

    def tick(self, now: float) -> bool:
        if now < self.at:
            if now >= self.quiet_at and self.waiting:  # a stream's first piece, still awaited
                k = self.keepalive
                if type(k) is not _Early:
                    k = self.keepalive = _Early(*k)
                k.ping()
                self.quiet_at = now + k.every
            return False
        self.expired = True
        if self.waiting and self.task is not None:
            self.task.cancel()
        return True

    def _error(self) -> Exception:
        if not self.drained:
            return TimeoutError()
        return GatewayError(f"the gateway is shutting down, and the request was still waiting for its provider after "
                            f"the {self.drained:g} s it was given to finish (KNOLLM_GATEWAY_SHUTDOWN_S): send it again",
                            status=503, type="server_error", code="shutting_down", headers={"retry-after": "1"})

    async def wait(self, aw: Any) -> Any:
        if self.expired:
            aw.close()
            raise self._error()
        self.waiting = True
        try:
            return await aw
        except asyncio.CancelledError as e:
            if self.expired and self.task is not None and self.task.uncancel() == 0:
                err = self._error()  # our cancel, and no one else's
                outcome = getattr(e, "outcome", None)  # what the call got to (its attempts): the error's headers
                if outcome is not None:
                    err.outcome = outcome  # type: ignore[attr-defined]
                raise err from None
            raise
        finally:
            self.waiting = False

    def cancel(self) -> None:
        self.ticker.live.discard(self)


_EPOCH = "1970-01-01T00:00:00Z"  # Anthropic's documented ``created_at`` for an unknown release date


def _anthropic_model(d: dict[str, Any]) -> dict[str, Any]:
    """A ``GET /v1/models`` entry in Anthropic's ``ModelInfo`` shape: the catalog's name,
    context window (``max_input_tokens``) and output limit (``max_tokens``); ``null`` when unknown."""
    k = d.get("knollm") or {}
    return {"type": "model", "id": d["id"], "display_name": k.get("name") or d["id"], "created_at": _EPOCH,
            "max_input_tokens": k.get("context_window"), "max_tokens": k.get("max_output"), "knollm": k}


def _anthropic_page(data: list[dict[str, Any]], query: Any) -> dict[str, Any]:
    """One page of Anthropic's model list: ``limit`` (1-1000, default 20) entries after
    ``after_id`` or before ``before_id``, with ``has_more``, ``first_id`` and ``last_id``."""
    raw = query.get("limit") or "20"
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 1000:
        raise GatewayError(f"limit must be an integer from 1 to 1000, not {raw!r}", status=400, code="invalid_limit")
    limit = int(raw)
    ids = [d["id"] for d in data]
    after, before = query.get("after_id"), query.get("before_id")
    for name, ref in (("after_id", after), ("before_id", before)):
        if ref is not None and ref not in ids:
            raise GatewayError(f"{name} {ref!r} is not a listed model", status=400, code="invalid_cursor")
    if before is not None:
        end = ids.index(before)
        page, more = data[max(0, end - limit):end], end > limit
    else:
        start = ids.index(after) + 1 if after is not None else 0
        page, more = data[start:start + limit], start + limit < len(data)
    return {"data": [_anthropic_model(d) for d in page], "has_more": more,
            "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None}


def _knollm_meta(o: Outcome | None) -> dict[str, Any]:
    o = o or Outcome()
    return {"provider": o.provider, "model": o.model, "cost_usd": o.billed_usd, "price_source": o.price_source,
            "unpriced_reason": o.unpriced_reason, "attempts": o.attempts, "request_id": o.request_id}
