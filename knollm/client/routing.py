"""Which deployment serves a request: targets -> offers -> deployments -> filters -> order.

* An **offer** is one catalog model at one provider (prices, context window, capabilities).
* A **deployment** is an offer plus one API key (``GROQ_API_KEY``, ``GROQ_API_KEY_2``, …
  or a config list): each has its own circuit breaker, rate limiter and measured speed.
* :class:`Router` keeps that state for a client; :meth:`Router.plan` returns a
  :class:`Plan` for one request: the candidates considered (each with the reason it was
  excluded or its rank), and the decisions after each attempt (retry, next, stop).

Strategies (``strategy=``):

``priority``     the order given (a list target), else the catalog's (cheapest first)
``cheapest``     estimated cost = prompt estimate x input price + expected output x
                 output price; unknown or variable prices last
``fastest``      measured latency: TTFT + expected output / tokens per second, from this
                 client's own moving averages, seeded from a ``health`` source's figures only
                 when they are measurements of that model (observed calls: probe, benchmark,
                 ledger); deployments not measured yet go last, in priority order. A speed
                 estimate never ranks: it is named, as not used, in the candidate's reason
``round-robin``  rotates the start of the list on every call
``weighted``     random order weighted by ``providers={pid: {"weight": w}}`` (default 1)
``least-busy``   fewest calls in flight first
``balanced``     lowest ``0.4·price + 0.3·latency + 0.2·busy + 0.1·errors``, each term
                 normalized to 0..1 over the candidates (unknown price/latency = 1)
"""

from __future__ import annotations

import functools
import math
import os
import random
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from knollm.client._providers import provider_facts
from knollm.client.accounting import estimate_tokens, prompt_tokens, search_bound, worst_case_cost
from knollm.client.store import budgets_for, check_tag
from knollm.client.transports import ANTHROPIC_NATIVE, get_shape, num_ctx_for
from knollm.errors import NoCandidates, NotFoundError, ProviderError

__all__ = ["STRATEGIES", "Offer", "Deployment", "CircuitBreaker", "RateLimiter", "Router", "Plan", "env_name"]

#: the providers documented to run Anthropic's server tools (its web_search tool) behind
#: their Anthropic-shaped API, and so to take their blocks in a conversation's history:
#: Anthropic's own API, and Claude on Google Vertex AI ("Web search with Anthropic Claude
#: models", https://cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude/web-search:
#: the ``web_search_20250305`` tool, for the models that page lists). Not Amazon Bedrock (Claude
#: Code's feature availability table, https://code.claude.com/docs/en/feature-availability,
#: marks web search unavailable there; its Knollm shape is ``bedrock`` anyway), nor the
#: Anthropic-compatible APIs of other providers (MiniMax, Kimi for coding, …): they take
#: Anthropic's request shape but run none of its server tools.
SERVER_TOOL_PROVIDERS = frozenset({"anthropic", "google-vertex-anthropic"})

#: budget reservations assume the real prompt may be this much larger than the estimate
#: (:func:`knollm.client.accounting.estimate_tokens`)
RESERVE_PROMPT_FACTOR = 1.5
STRATEGIES = ("priority", "cheapest", "fastest", "round-robin", "weighted", "least-busy", "balanced")
#: how each API shape takes its key by convention (when the registry does not say)
_SHAPE_AUTH = {"openai": ("bearer", None), "anthropic": ("x-api-key", "x-api-key"),
               "gemini": ("header", "x-goog-api-key"), "ollama": ("none", None)}
#: failure kinds that say nothing about the deployment's health (the request was bad)
_REQUEST_FAULTS = frozenset({"context_length", "bad_request"})


@functools.lru_cache(maxsize=1024)
def env_name(pid: str, suffix: str) -> str:
    """``KNOLLM_<PROVIDER>_<SUFFIX>``: provider id upper-cased, non-alphanumerics -> ``_``."""
    return f"KNOLLM_{re.sub(r'[^A-Za-z0-9]', '_', pid).upper()}_{suffix}"


def _env_slot(env: Any, var: str) -> tuple[Any, Any]:
    """``(table, key)`` whose ``table.get(key)`` tells whether ``env[var]`` changed: for
    ``os.environ``, its own table of encoded names and values (kept current by every
    assignment through ``os.environ``), read in one C call instead of four Python frames
    of ``os.environ.get``; for any other mapping, itself."""
    data, encode = getattr(env, "_data", None), getattr(env, "encodekey", None)
    if env is os.environ and isinstance(data, dict) and callable(encode):
        return data, encode(var)
    return env, var


# --------------------------------------------------------------------------- offers
@dataclass
class Offer:
    key: str
    provider: str
    model: str
    canonical: str | None = None
    context_window: int | None = None
    max_output: int | None = None
    prices: dict = field(default_factory=dict)
    tiers: list = field(default_factory=list)
    caps: dict = field(default_factory=dict)
    input_modalities: tuple = ()
    free: bool = False
    variable_pricing: bool = False
    price_source: str | None = None
    kind: str | None = None  #: the catalog's model kind (chat, embedding, …); None: not known
    open_weights: bool | None = None  #: the catalog's open-weights flag; None: not known

    @classmethod
    def from_model(cls, m: dict) -> Offer:
        src = m.get("sources") or {}
        ps = src.get("prices.input") or src.get("prices.output")
        return cls(m["key"], m["provider"], m["id"], m.get("canonical_id"), m.get("context_window"),
                   m.get("max_output"), dict(m.get("prices") or {}), list(m.get("price_tiers") or []),
                   dict(m.get("capabilities") or {}), tuple(m.get("input_modalities") or ()), bool(m.get("free")),
                   bool(m.get("variable_pricing")), f"catalog:{ps}" if ps else "catalog", m.get("kind"),
                   m.get("open_weights"))

    def facts(self) -> dict:
        """The offer as the model dict a binding's requirement check reads."""
        return {"key": self.key, "provider": self.provider, "capabilities": self.caps,
                "context_window": self.context_window, "max_output": self.max_output, "prices": self.prices,
                "open_weights": self.open_weights}

    @classmethod
    def uncataloged(cls, provider: str, model: str) -> Offer:
        """A model the catalog does not list (e.g. a local Ollama model): no prices known."""
        return cls(f"{provider}/{model}", provider, model)


class CatalogSource:
    """Offers from a :class:`knollm.query.index.Index` (the compact, fast default) or a
    :class:`knollm.query.api.Catalog` (full records: price tiers and per-field sources)."""

    def __init__(self, catalog: Any) -> None:
        from knollm.query.index import Index

        self.catalog = catalog
        self._full = not isinstance(catalog, Index)
        self.index: Index = catalog.index if self._full else catalog
        self._pids: dict[str, dict] | None = None
        self._offers: dict[int, Offer] = {}  # the catalog does not change under a client: built once per model

    def _offer(self, pos: int) -> Offer:
        o = self._offers.get(pos)
        if o is None:
            m = self.catalog.models[pos] if self._full else self.index.summary(self.index.rows[pos])
            o = self._offers[pos] = Offer.from_model(m)
        return o

    def by_key(self, key: str) -> Offer | None:
        pos = self.index.by_key.get(key)
        return None if pos is None else self._offer(pos)

    def where(self, ref: str) -> list[Offer]:
        try:
            return [self._offer(i) for i in self.index.where_positions(ref)]
        except NotFoundError:
            return []

    def provider_record(self, pid: str) -> dict | None:
        """The catalog's provider record of ``pid`` (None: not listed)."""
        if self._pids is None:
            self._pids = {p["id"]: p for p in self.index.providers}
        return self._pids.get(pid)

    def provider_facts(self, pid: str) -> Any:
        """Calling facts from the catalog's provider record (models.dev / dumps), for
        providers the registry does not list yet; None when the catalog has none."""
        p = self.provider_record(pid)
        if not p or not p.get("base_url"):
            return None
        from knollm.client._providers import ProviderFacts

        shape = p.get("api_shape") or "openai"
        auth, header = _SHAPE_AUTH.get(shape, ("bearer", None))
        if p.get("kind") == "local" and not p.get("api_key_env"):
            auth = "none"
        return ProviderFacts(shape, p["base_url"], tuple(p.get("api_key_env") or ()), auth, header,
                             {"anthropic-version": "2023-06-01"} if shape == "anthropic" else {}, None, None)


# --------------------------------------------------------------------------- health
class CircuitBreaker:
    """closed -> open after ``failure_threshold`` failures within ``window_s``; open ->
    half-open after ``cooldown_s`` (one trial call); the trial's success closes it, its
    failure re-opens it. Every attempt counts, retries and fallback attempts included.

    :meth:`allow` returns ``"trial"`` (truthy) when it grants the half-open trial; a trial
    that ends without a verdict (the call was cancelled) is given back with :meth:`release`,
    and a trial outstanding longer than ``cooldown_s`` no longer blocks a new one.
    ``record(None)``: a neutral outcome (the request was bad, the deployment answered): it
    ends a half-open trial as a success and leaves a closed breaker's failure count alone."""

    def __init__(self, failure_threshold: int = 5, window_s: float = 60.0, cooldown_s: float = 30.0,
                 clock: Any = time.monotonic) -> None:
        self.failure_threshold, self.window_s, self.cooldown_s = failure_threshold, window_s, cooldown_s
        self.clock = clock
        self._fails: deque[float] = deque()
        self._opened: float | None = None
        self._trial = False
        self._trial_at = 0.0
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        if self._opened is None:
            return "closed"
        return "half-open" if self.clock() >= self._opened + self.cooldown_s else "open"

    def start_half_open(self) -> None:
        """Start as if a cooldown just ended: the next call is a single trial (used when
        measured health says the deployment has been failing)."""
        with self._lock:
            self._opened, self._trial = self.clock() - self.cooldown_s, False

    def allow(self) -> bool:
        with self._lock:
            if self._opened is None:
                return True
            now = self.clock()
            if now >= self._opened + self.cooldown_s and (not self._trial or now - self._trial_at > self.cooldown_s):
                # half-open: one trial (another once a trial has been out longer than a cooldown:
                # its verdict was lost)
                self._trial, self._trial_at = True, now
                return "trial"  # type: ignore[return-value]
            return False

    def release(self) -> None:
        """Give back a half-open trial that ended without a verdict (cancelled): the next call
        is a trial."""
        with self._lock:
            if self._opened is not None:
                self._trial = False

    def record(self, ok: bool | None) -> None:
        with self._lock:
            now = self.clock()
            if ok is None:  # neutral: a half-open (or open) breaker closes; a closed one keeps its count
                if self._opened is not None:
                    self._opened, self._trial = None, False
                return
            if ok:
                self._fails.clear()
                self._opened, self._trial = None, False
                return
            if self._opened is not None:  # the half-open trial failed
                self._opened, self._trial = now, False
                return
            self._fails.append(now)
            while self._fails and self._fails[0] < now - self.window_s:
                self._fails.popleft()
            if len(self._fails) >= self.failure_threshold:
                self._opened = now
                self._fails.clear()


class RateLimiter:
    """Client-side requests/minute and tokens/minute over a sliding 60 s window."""

    def __init__(self, rpm: int | None = None, tpm: int | None = None, clock: Any = time.monotonic) -> None:
        self.rpm, self.tpm, self.clock = rpm, tpm, clock
        self._events: deque[list] = deque()  # [ts, tokens]
        self._lock = threading.Lock()

    def _trim(self, now: float) -> None:
        while self._events and self._events[0][0] <= now - 60:
            self._events.popleft()

    def wait_time(self, tokens: int) -> float:
        if not self.rpm and not self.tpm:
            return 0.0
        with self._lock:
            now = self.clock()
            self._trim(now)
            waits = [0.0]
            if self.rpm and len(self._events) >= self.rpm:
                waits.append(self._events[-self.rpm][0] + 60 - now)
            if self.tpm:
                used = sum(e[1] for e in self._events)
                if used + tokens > self.tpm and self._events:
                    # a request larger than the TPM alone waits for an empty window (it asks
                    # for the whole TPM): the last event's expiry
                    tokens = min(tokens, self.tpm)
                    acc = used + tokens - self.tpm
                    for ts, n in self._events:
                        acc -= n
                        if acc <= 0:
                            waits.append(ts + 60 - now)
                            break
            return max(waits)

    def acquire(self, tokens: int) -> list | None:
        if not self.rpm and not self.tpm:
            return None
        with self._lock:
            ev = [self.clock(), tokens]
            self._events.append(ev)
            return ev

    @staticmethod
    def correct(ev: list | None, tokens: int) -> None:
        if ev is not None:
            ev[1] = tokens


class Stats:
    """Moving averages of one deployment: TTFT, tokens/s, error rate; calls in flight.

    ``ttft_ms`` / ``tps`` hold measurements only: this client's own calls (``own`` of them
    timed), blended into a measured ``health`` seed when there was one (``src`` names it).
    ``est`` keeps an estimated figure a health source gave, ``(ttft_ms, tps, what)``, to be
    named in a plan's reasons; it never ranks."""

    __slots__ = ("ttft_ms", "tps", "err", "inflight", "n", "own", "src", "est")

    def __init__(self) -> None:
        self.ttft_ms: float | None = None
        self.tps: float | None = None
        self.err = 0.0
        self.inflight = 0
        self.n = 0
        self.own = 0
        self.src: str | None = None
        self.est: tuple[float, float | None, str] | None = None

    def observe(self, ok: bool, ttft_ms: float | None = None, tps: float | None = None, a: float = 0.3) -> None:
        self.n += 1
        if ttft_ms is not None:
            self.own += 1
        self.err = (1 - a) * self.err + a * (0.0 if ok else 1.0)
        if ttft_ms is not None:
            self.ttft_ms = ttft_ms if self.ttft_ms is None else (1 - a) * self.ttft_ms + a * ttft_ms
        if tps is not None:
            self.tps = tps if self.tps is None else (1 - a) * self.tps + a * tps

    def latency_ms(self, out_tokens: int) -> float | None:
        if self.ttft_ms is None:
            return None
        return self.ttft_ms + (out_tokens / self.tps * 1000 if self.tps else 0)

    def speed_reason(self, ms: float | None, out_tokens: int) -> str:
        """What ``fastest`` ranked this deployment on (``ms``: :meth:`latency_ms`), and
        whether that is a measurement (whose) or nothing; an estimate is named as not used."""
        if ms is not None:
            if self.own:
                seeded = f"; seeded from {self.src}" if self.src else ""
                return f"measured ~{ms:.0f} ms (this client, {self.own} call{'s' if self.own != 1 else ''}{seeded})"
            return f"measured ~{ms:.0f} ms ({self.src})" if self.src else f"measured ~{ms:.0f} ms"
        if self.est is not None:
            ttft, tps, what = self.est
            e = ttft + (out_tokens / tps * 1000 if tps else 0)
            return f"not measured: priority order; estimate ~{e:.0f} ms ({what}) not used"
        return "not measured: priority order"

    def speed_kind(self) -> str | None:
        """Whose measurement ``ttft_ms`` is: ``this client`` or the health seed's label."""
        return "this client" if self.own else self.src


#: the health sources that measure a model (:mod:`knollm.probe.health`): benchmark runs,
#: probe requests, the client's ledger
MEASURED_SOURCES = frozenset({"benchmark", "probe", "ledger"})


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else None


def health_provenance(f: Any, model: str) -> tuple[str, str | None]:
    """(label, why it is not a measurement of ``model`` or None) of health figures ``f``.

    A measurement says how many calls it was observed on (``n`` ≥ 1), is not marked
    ``estimated``, names (when it names any) a probe / benchmark / ledger source, and is
    ``model``'s own (a figure whose ``model`` is None is provider-wide)."""
    srcs = getattr(f, "sources", None)
    srcs = (srcs,) if isinstance(srcs, str) else tuple(str(x) for x in (srcs or ()))
    n, last = getattr(f, "n", None), getattr(f, "last", None)
    n_ok = isinstance(n, (int, float)) and not isinstance(n, bool) and n >= 1
    parts = ["+".join(srcs) if srcs else "", f"n={n:g}" if n_ok else "", f"last {last}" if last else ""]
    label = "health: " + ", ".join(x for x in parts if x) if any(parts) else "health source"
    if getattr(f, "estimated", False):
        return label, "not a measurement: marked as an estimate"
    if not n_ok:
        return label, "not a measurement: no observed calls"
    if srcs and not MEASURED_SOURCES.intersection(srcs):
        return label, "not a measurement: not from a probe, benchmark or the ledger"
    if hasattr(f, "model") and f.model != model:
        return label, "not measured on this model: " + ("provider-wide" if f.model is None else f"figures of {f.model}")
    return label, None


@dataclass(eq=False)
class KeySlot:
    """One API key of one provider: its label (env var name) and state shared by its models."""

    provider: str
    label: str | None
    limiter: RateLimiter
    disabled: str | None = None
    _value: str | None = field(default=None, repr=False)


@dataclass(eq=False)
class Deployment:
    offer: Offer
    shape: str
    base_url: str
    slot: KeySlot
    auth: str
    key_header: str | None
    headers: dict
    weight: float
    breaker: CircuitBreaker
    stats: Stats = field(default_factory=Stats)
    _request_headers: dict | None = field(default=None, repr=False)
    # the offer's provider and model, and ``key [slot]``: read a dozen times a call, so
    # plain attributes set once (a deployment's offer and slot never change)
    provider: str = field(init=False, repr=False)
    model: str = field(init=False, repr=False)
    label: str = field(init=False, repr=False)
    reasons: bool = field(init=False, repr=False)  # the catalog says the model reasons (thinks before answering)

    def __post_init__(self) -> None:
        o = self.offer
        self.provider, self.model = o.provider, o.model
        self.label = f"{o.key}" + (f" [{self.slot.label}]" if self.slot.label else "")
        self.reasons = o.caps.get("reasoning") is True

    def request_headers(self) -> dict[str, str]:
        """The headers of every request to this deployment (the same dict each time: read, never
        changed, by the drivers)."""
        h = self._request_headers
        if h is None:
            h = self._request_headers = self._build_headers()
        return h

    def _build_headers(self) -> dict[str, str]:
        h = {"content-type": "application/json", **self.headers}
        key = self.slot._value
        if key and self.auth == "bearer":
            h["authorization"] = f"Bearer {key}"
        elif key and self.auth in ("x-api-key", "header"):
            h[self.key_header or "x-api-key"] = key
        for name, value in h.items():
            if "\n" in value or "\r" in value:  # (a key read with its "\r" from a Windows .env, say)
                raise ValueError(f"{self.provider}: the {name} header has a line break (key {self.slot.label or '-'}"
                                 "): refused before sending; check the API key or headers configured")
        return h

    def url(self, stream: bool) -> str:
        return self._with_key(get_shape(self.shape).url(self.base_url, self.model, stream))

    def embed_url(self) -> str:
        return self._with_key(get_shape(self.shape).embed_url(self.base_url, self.model) or "")

    def _with_key(self, u: str) -> str:
        if self.auth == "query" and self.slot._value:
            from urllib.parse import quote

            u += ("&" if "?" in u else "?") + "key=" + quote(self.slot._value, safe="")
        return u


#: query parameters of a base URL that are no secret (their values are not masked)
_PLAIN_PARAMS = frozenset({"api-version", "api_version", "version", "alt", "format"})


@functools.lru_cache(maxsize=256)
def _url_secrets(url: str) -> tuple[str, ...]:
    """The secrets a base URL carries, as typed and percent-decoded: the userinfo's password (or a
    lone user name: a token), and every query value (``?key=…``, ``?token=…``, a signature) but
    those of :data:`_PLAIN_PARAMS`. Once per base URL (cached)."""
    from urllib.parse import quote, unquote

    rest = url.partition("://")[2] or url
    userinfo, at, _ = rest.partition("/")[0].rpartition("@")
    found = []
    if at and userinfo:
        user, colon, password = userinfo.partition(":")
        found.append(password if colon else user)
    query = rest.partition("?")[2]
    for item in query.split("&") if query else ():
        name, _, value = item.partition("=")
        if value and unquote(name).strip().lower() not in _PLAIN_PARAMS:
            found.append(value)
    out: list[str] = []
    for v in found:
        for form in (v, unquote(v), quote(unquote(v), safe="")):
            if len(form) >= 4 and form not in out:
                out.append(form)
    return tuple(out)


def _key_problem(label: str | None, value: str | None) -> str | None:
    """Why a key cannot be sent (a line break: a ``"\r"`` read from a Windows ``.env``, say),
    naming its variable, never its value; None: it can."""
    if value and ("\n" in value or "\r" in value):
        return f"key {label or '-'} has a line break (a Windows line ending?): disabled; fix that variable"
    return None


# --------------------------------------------------------------------------- the router
@dataclass
class Settings:
    strategy: str = "priority"
    retries: int = 2
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    max_retry_wait: float = 30.0
    timeout: float = 120.0
    connect_timeout: float = 10.0
    ttft_timeout: float = 60.0
    stall_timeout: float = 30.0
    breaker: dict = field(default_factory=dict)
    allow: tuple = ()
    deny: tuple = ()
    max_input_price: float | None = None
    max_output_price: float | None = None
    default_max_tokens: int = 4096
    retry_after_send: bool = True
    reasoning_timeout: float = 600.0

    @functools.cached_property
    def patient(self) -> Settings:
        """These settings with every wait at least ``reasoning_timeout``: a reasoning model's
        (see :func:`knollm.client.core._waits`)."""
        r = self.reasoning_timeout
        return replace(self, timeout=max(self.timeout, r), stall_timeout=max(self.stall_timeout, r),
                       ttft_timeout=max(self.ttft_timeout, r))


class Router:
    """Deployments and their state for one client (thread-safe for the state it keeps)."""

    def __init__(self, source: CatalogSource | None, settings: Settings, providers: dict | None = None,
                 resolver: Any = None, env: Any = None, health: Any = None) -> None:
        self.source = source
        self.health = health  # (provider, model) -> figures with ttft_p50_ms, tokens_per_s_p50, error_rate, n
        self.s = settings
        self.config = {k: dict(v) for k, v in (providers or {}).items()}
        self.resolver = resolver
        self.env = os.environ if env is None else env
        self._slots: dict[str, list[KeySlot]] = {}
        self._deps: dict[tuple, Deployment] = {}
        self._dep_cache: dict[str, tuple[Any, list[Deployment], str | None]] = {}
        self._env_where: dict[str, tuple[Any, Any]] = {}  # provider -> where its BASE_URL variable is read
        self._rr: dict[str, int] = {}
        self._local: dict[str, bool] = {}
        self._scan: tuple[Any, dict[str, dict]] = (None, {})
        self._lock = threading.Lock()
        self.rng = random.Random()

    # -- keys
    def facts(self, pid: str) -> Any:
        """The registry's calling facts for ``pid``, else the catalog's provider record."""
        f = provider_facts(pid)
        if f is None and self.source is not None:
            f = self.source.provider_facts(pid)
        return f

    def secrets(self) -> list[str]:
        """What :meth:`Plan.redact` masks: every key value, and what a base URL carries (its
        userinfo, its query values: ``KNOLLM_<PROVIDER>_BASE_URL=https://…/v1?key=…``), which
        a provider may echo in an error ("Invalid URL (POST /v1?key=…)")."""
        out = [s._value for slots in self._slots.values() for s in slots if s._value]
        for base in {d.base_url for d in list(self._deps.values())}:  # (list(): one C call, no lock)
            out += _url_secrets(base)
        return out

    def auth(self, pid: str, facts: Any, shape: str | None) -> tuple[str, str | None]:
        """(auth kind, key header): config, else the registry's, else the shape's convention
        when the config switched the provider to another API shape."""
        cfg = self.config.get(pid, {})
        if facts is not None and facts.shape == shape:
            auth, header = facts.auth, facts.key_header
        else:
            auth, header = _SHAPE_AUTH.get(shape or "openai", ("bearer", None))
            if facts is not None and facts.auth == "none":
                auth = "none"
        return cfg.get("auth", auth), cfg.get("key_header", header)

    def slots(self, pid: str, facts: Any) -> list[KeySlot]:
        with self._lock:
            got = self._slots.get(pid)
            if got is not None:
                return got
            cfg = self.config.get(pid, {})
            rpm, tpm = cfg.get("rpm", facts.rpm if facts else None), cfg.get("tpm", facts.tpm if facts else None)
            pairs: list[tuple[str | None, str | None]] = []
            keys = cfg.get("api_keys") or ([cfg["api_key"]] if cfg.get("api_key") else [])
            pairs += [(f"{pid}:config[{i}]", k) for i, k in enumerate(keys)]
            if not pairs:
                for var in (facts.key_env if facts else ()):
                    if self.env.get(var):
                        pairs.append((var, self.env[var]))
                        i = 2
                        while self.env.get(f"{var}_{i}"):
                            pairs.append((f"{var}_{i}", self.env[f"{var}_{i}"]))
                            i += 1
                        break
            auth = self.auth(pid, facts, cfg.get("shape") or (facts.shape if facts else None))[0]
            if not pairs and auth == "none":
                pairs.append((None, None))
            slots = [KeySlot(pid, label, RateLimiter(rpm, tpm), _value=val,
                             disabled=_key_problem(label, val)) for label, val in pairs]
            self._slots[pid] = slots
            return slots

    def deployments(self, offer: Offer) -> tuple[list[Deployment], str | None]:
        """The deployments of ``offer`` (one per key), or ``([], reason)``. Kept per offer
        and reused while the provider's ``KNOLLM_<PROVIDER>_BASE_URL`` is unchanged (the
        configuration, the registry and the key slots do not change under a router)."""
        where = self._env_where.get(offer.provider)
        if where is None:
            where = self._env_where[offer.provider] = _env_slot(self.env, env_name(offer.provider, "BASE_URL"))
        env_base = where[0].get(where[1])  # (compared only: the raw value, bytes from os.environ's own table)
        hit = self._dep_cache.get(offer.key)
        if hit is not None and hit[0] == env_base:
            return hit[1], hit[2]
        deps, reason = self._deployments(offer)
        self._dep_cache[offer.key] = (env_base, deps, reason)
        return deps, reason

    def _deployments(self, offer: Offer) -> tuple[list[Deployment], str | None]:
        pid = offer.provider
        facts = self.facts(pid)
        cfg = self.config.get(pid, {})
        shape = cfg.get("shape") or (facts.shape if facts else None)
        base = cfg.get("base_url") or self.env.get(env_name(pid, "BASE_URL")) or (facts.base_url if facts else None)
        if facts is None and not cfg:
            return [], f"provider {pid!r}: no base URL in the provider registry or the catalog"
        if get_shape(shape) is None:
            return [], f"no transport for API shape {shape!r}"
        if not base:
            return [], f"no base URL (set {env_name(pid, 'BASE_URL')})"
        slots = self.slots(pid, facts)
        if not slots:
            envs = ", ".join(facts.key_env) if facts and facts.key_env else "an api_keys config"
            return [], f"no API key (set {envs})"
        auth, key_header = self.auth(pid, facts, shape)
        out = []
        for slot in slots:
            k = (offer.key, slot.label)
            with self._lock:
                d = self._deps.get(k)
                if d is None or d.base_url != base:
                    d = Deployment(offer, shape or "openai", base, slot, auth, key_header,
                                   {**(facts.headers if facts and facts.shape == shape else {}), **cfg.get("headers", {})},
                                   float(cfg.get("weight", 1.0)), CircuitBreaker(**self.s.breaker))
                    self._seed(d)
                    self._deps[k] = d
            out.append(d)
        return out, None

    def _seed(self, d: Deployment) -> None:
        """Start a new deployment from measured health (probes, benchmarks, the ledger), when a
        ``health`` source was given: ``fastest`` then ranks it before its first call, and a
        deployment measured as mostly failing starts half-open (one trial call).

        Only a measurement of this model seeds its speed (:func:`health_provenance`); an
        estimate is kept aside (``Stats.est``), named in reasons, never ranked. A tokens/s
        the source computed from estimated token counts is dropped (its TTFT stands).
        Runs once per deployment, so the plan's hot path reads no health or catalog data."""
        if self.health is None:
            return
        try:
            f = self.health(d.provider, d.model)
        except Exception:  # noqa: BLE001 - health is advice; a broken source must not break calls
            return
        if f is None:
            return
        st = d.stats
        ttft, tps = _num(getattr(f, "ttft_p50_ms", None)), _num(getattr(f, "tokens_per_s_p50", None))
        if ttft is not None:
            label, why = health_provenance(f, d.model)
            if why is not None:
                st.est = (ttft, tps, f"{label}; {why}")
            else:
                if tps is not None and getattr(f, "tokens_per_s_estimated", False):
                    label, tps = f"{label}; TTFT only: its tokens/s is estimated, not used", None
                st.ttft_ms, st.tps, st.src = ttft, tps, label
        st.err = float(getattr(f, "error_rate", None) or 0.0)
        st.n = int(getattr(f, "n", 0) or 0)
        if st.n >= 10 and st.err >= 0.5:
            d.breaker.start_half_open()

    # -- targets
    def offers(self, target: Any, _via: tuple[str, ...] = ()) -> tuple[list[Offer], dict]:
        """Offers for ``target`` in priority order, plus what the target said
        (``alias``, ``strategy``, ``requires``).

        An alias whose ``models`` name another alias brings that alias's offers with both
        bindings: every binding an offer passed through is checked (innermost first), and
        ``requires`` merge with the stricter value winning (``local_only`` from any level
        holds). ``_via``: the aliases being expanded (a cycle brings no offers)."""
        # "bindings": offer key -> (alias, binding) for the offers an alias brought: the plan
        # drops those its binding does not allow (requires, local_only / cloud_fallback); for
        # nested aliases the binding is a NestedBinding holding every level
        meta: dict[str, Any] = {"alias": None, "strategy": None, "requires": {}, "bindings": {}}
        if isinstance(target, (list, tuple)):
            out: list[Offer] = []
            for t in target:
                o, m = self.offers(t, _via)
                new = [x for x in o if x.key not in {y.key for y in out}]
                out += new
                for x in new:
                    if x.key in m["bindings"]:
                        meta["bindings"][x.key] = m["bindings"][x.key]
                if m["requires"]:
                    meta["requires"].update(m["requires"])
            return out, meta
        t = str(target)
        if self.source is not None:
            o = self.source.by_key(t)
            if o is not None:
                return [o], meta
        if t in _via:
            return [], meta  # alias cycle (a -> b -> a): the inner mention brings nothing
        alias = self._alias(t)
        if alias is not None:
            from knollm.lock.lockfile import merge_requires, nested_binding

            o, m = self.offers(list(alias.models), _via + (t,))
            meta.update(alias=t, strategy=getattr(alias, "strategy", None),
                        requires=merge_requires(m["requires"], getattr(alias, "requires", None)))
            bindings: dict[str, Any] = {}
            for x in o:
                inner = m["bindings"].get(x.key)
                levels = list(getattr(inner[1], "levels", None) or [inner]) if inner is not None else []
                bindings[x.key] = (t, nested_binding(levels + [(t, alias)]))
            from knollm.lock.lockfile import local_first

            o = local_first(alias, o, lambda x: self.is_local(x.provider, x.key))
            meta["bindings"] = bindings
            return o, meta
        if self.source is not None:
            o = self.source.where(t)
            if o:
                return o, meta
        pid, sep, model = t.partition("/")
        if sep and model and (pid in self.config or self.facts(pid) is not None):
            return [Offer.uncataloged(pid, model)], meta
        return [], meta

    # -- what a binding allows
    def is_local(self, pid: str, key: str | None = None) -> bool:
        """Whether provider ``pid`` runs on this machine (the provider registry's or the
        catalog's ``kind = "local"``, as the lock's chooser reads it), or ``key`` is a model
        of the stored local scan. A model the scan found to run elsewhere (an Ollama cloud
        model: ``local = false``), or named as one (``…-cloud``, ``…:cloud``), is not local."""
        from knollm.lock.local import is_cloud_model

        if key is not None:
            s = self.scanned(key)
            if s is not None and s.get("local") is False:
                return False
            if is_cloud_model(pid, key.partition("/")[2]):
                return False
        got = self._local.get(pid)
        if got is None:
            from knollm.lock._providers import provider_facts as lock_facts

            kind = lock_facts(pid)["kind"]
            if kind is None and self.source is not None:
                kind = (self.source.provider_record(pid) or {}).get("kind")
            got = self._local[pid] = kind == "local"
        return got or (key is not None and bool((self.scanned(key) or {}).get("local")))

    def scanned(self, key: str) -> dict | None:
        """Model ``key`` from the stored local scan (``knollm local scan``), re-read when the
        file changes; None when it is not there."""
        from knollm.lock.local import load_scan, store_path

        p = store_path()
        try:
            st = p.stat()
        except OSError:
            return None
        sig = (str(p), st.st_mtime_ns, st.st_size)
        if self._scan[0] != sig:
            models = load_scan(p).get("models") or []
            self._scan = (sig, {m["key"]: m for m in models if isinstance(m, dict) and m.get("key")})
        return self._scan[1].get(key)

    def binding_reason(self, o: Offer, alias: str, binding: Any, op: str = "chat") -> str | None:
        """Why ``binding`` (of ``alias``) does not allow offer ``o`` (None: it does): the lock's
        own rule (:func:`knollm.lock.lockfile.binding_skip`, what ``knollm roles explain``
        says), over the local scan's facts for a scanned local model, else the catalog's.
        A nested alias's offer must pass every level it came through, innermost first
        (:func:`knollm.lock.lockfile.chain_skip`); the reason names the level that refused."""
        from knollm.lock.lockfile import chain_skip

        local = self.is_local(o.provider, o.key)
        m = (self.scanned(o.key) if local else None) or o.facts()
        why, _, level = chain_skip(binding, m, local=local, op=op)
        if why is None:
            return None
        if level is not None and level != alias:
            return f"binding {level!r} (via {alias!r}): {why}"
        return f"binding {alias!r}: {why}"

    def _alias(self, name: str) -> Any:
        if self.resolver is False:
            return None
        if self.resolver is not None:
            return self.resolver(name)
        try:
            from knollm.lock import resolve_alias  # type: ignore[import-not-found]
        except ImportError:
            return None
        try:
            return resolve_alias(name)
        except (LookupError, NotFoundError):
            return None
        except Exception as e:  # noqa: BLE001 - a broken lockfile is an error worth seeing
            from knollm.errors import KnollmError

            if isinstance(e, KnollmError):
                raise
            return None

    # -- planning
    def plan(self, target: Any, messages: list[dict], params: dict, strategy: str | None = None,
             budgets: tuple = (), store: Any = None, tag: str | None = None, op: str = "chat") -> Plan:
        check_tag(tag)
        offers, meta = self.offers(target)
        strategy = strategy or meta["strategy"] or self.s.strategy
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
        if not offers:
            raise NoCandidates(target, [], f"unknown target {target!r}: not a catalog key, alias or canonical id"
                               + ("" if self.source is not None else " (no catalog loaded)"))
        return Plan(self, target, messages, params, strategy, offers, meta, budgets, store, tag, op)


def _needs(messages: list[dict], params: dict, requires: dict) -> list[str]:
    caps = [c for c, v in requires.items() if v is True]
    if params.get("tools"):
        caps.append("tools")
    if any(isinstance(m.get("content"), list) and any(p.get("type") == "image_url" for p in m["content"])
           for m in messages):
        caps.append("vision")
    rf = (params.get("response_format") or {}).get("type")
    if rf == "json_schema":
        caps.append("structured_output")
    elif rf == "json_object":
        caps.append("json_mode")
    return list(dict.fromkeys(caps))


#: models that read OpenAI's token ids (cl100k_base), the only ones token-id inputs go to
_TIKTOKEN_EMBEDDERS = ("text-embedding-3-", "text-embedding-ada-002")


def _input_tokens(x: Any) -> int:
    """Estimated tokens of one embeddings input: text, or token ids (counted exactly)."""
    return len(x) if isinstance(x, list) else estimate_tokens(x)


class Plan:
    """One request's routing: candidates (with reasons), their order, and the decisions.
    ``tag`` (who made the call) goes to budget scopes and the ledger row, never to a provider.
    ``op`` is ``chat`` (``messages``) or ``embed`` (``params["input"]``: a list of texts or
    of token-id lists; only embedding models are candidates, and no output is priced)."""

    def __init__(self, router: Router, target: Any, messages: list[dict], params: dict, strategy: str,
                 offers: list[Offer], meta: dict, budgets: tuple, store: Any, tag: str | None = None,
                 op: str = "chat") -> None:
        self.r, self.target, self.messages, self.params = router, target, messages, params
        self.strategy, self.meta, self.budgets, self.store = strategy, meta, list(budgets), store
        self.tag = tag
        self.op = op
        self.alias = meta.get("alias")
        self.searches: int | None = 0
        if op == "embed":
            sizes = [_input_tokens(x) for x in params["input"]]
            self.prompt, self.longest = sum(sizes), max(sizes, default=0)
            self.max_tokens = None
            self.needs = [c for c in ("min_context",) if (meta.get("requires") or {}).get(c)]
        else:
            self.prompt = self.longest = prompt_tokens(messages, params)
            self.searches = search_bound(params)  # the web searches its server tools may bill (None: no bound)
            self.max_tokens = params.get("max_tokens") or params.get("max_completion_tokens")
            self.needs = _needs(messages, params, meta.get("requires") or {})
        self.candidates: list[dict] = []
        self.attempts: list[dict] = []
        self.failed_ctx: int | None = None
        self.failed_providers: set[str] = set()
        self.notes: dict[int, str] = {}  # id(deployment) -> what the strategy ranked it on (fastest)
        eligible = []
        for o in offers:
            reason = self._offer_reason(o)
            deps, why = ([], reason) if reason else self.r.deployments(o)
            if not deps:
                self.candidates.append({"deployment": o.key, "provider": o.provider, "model": o.model, "key": None,
                                        "status": "excluded", "reason": why})
                continue
            for d in deps:
                reason = self._dep_reason(d)
                if reason:
                    self._exclude(d, reason)
                else:
                    eligible.append(d)
        self.order, self.why = self._rank(eligible)
        bound = self.meta.get("bindings") or {}
        if self.strategy != "priority" and any(getattr(b, "prefer", None) == "local" for _, b in bound.values()):
            # a binding's prefer = "local": its local deployments first (as its offers are in
            # priority order), each group in the strategy's order
            def local_pref(d: Deployment) -> bool:
                b = bound.get(d.offer.key)
                return b is not None and getattr(b[1], "prefer", None) == "local" and self.r.is_local(d.provider, d.offer.key)

            ordered = sorted(self.order, key=lambda d: 0 if local_pref(d) else 1)
            if ordered and ordered[0] is not self.order[0]:
                self.why = f"local first (prefer = local); then {self.why}"
            self.order = ordered
        for i, d in enumerate(self.order):
            c = {"deployment": d.label, "provider": d.provider, "model": d.model,
                 "key": d.slot.label, "status": "eligible", "rank": i + 1}
            note = self.notes.get(id(d))
            if note is not None:
                c["reason"] = note
            self.candidates.append(c)
        if not self.order:
            raise NoCandidates(target, self.excluded())

    # -- filters
    def out_tokens(self, o: Offer | None = None) -> int:
        if self.op == "embed":
            return 0
        return self.max_tokens or min(self.r.s.default_max_tokens, (o.max_output if o and o.max_output else 10**9))

    def _offer_reason(self, o: Offer) -> str | None:
        s = self.r.s
        if s.allow and o.provider not in s.allow:
            return "provider not in allow list"
        if o.provider in s.deny:
            return "provider in deny list"
        if self.op == "embed":
            if o.kind is not None and o.kind != "embedding":
                return f"not an embedding model (the catalog's kind: {o.kind})"
        elif o.kind == "embedding":
            return "an embedding model: it does not chat"
        bound = self.meta.get("bindings", {}).get(o.key)
        if bound is not None:
            why = self.r.binding_reason(o, bound[0], bound[1], self.op)
            if why:
                return why
        for c in self.needs:
            if c == "min_context":
                continue
            if o.caps.get(c) is False:
                return f"request needs {c}; the catalog says {o.key} lacks it"
        if "vision" in self.needs and o.input_modalities and "image" not in o.input_modalities:
            return "request has images; model takes no image input"
        need_ctx = max(self.longest + (self.max_tokens or 0), int((self.meta.get("requires") or {}).get("min_context") or 0))
        if o.context_window and need_ctx > o.context_window:
            what = "the longest input (estimate)" if self.op == "embed" else "prompt estimate + max_tokens"
            return f"context window {o.context_window} < ~{need_ctx} tokens ({what})"
        caps = ((s.max_input_price, "input"),) if self.op == "embed" else \
            ((s.max_input_price, "input"), (s.max_output_price, "output"))
        for cap, field_ in caps:
            if cap is not None:
                p = o.prices.get(field_)
                if p is None or p > cap:
                    return f"{field_} price {p if p is not None else 'unknown'} above cap {cap}"
        return None

    def _dep_reason(self, d: Deployment) -> str | None:
        if d.slot.disabled:
            return d.slot.disabled
        if d.shape != "anthropic" or d.provider not in SERVER_TOOL_PROVIDERS:
            native = self.params.get(ANTHROPIC_NATIVE)
            history = isinstance(native, dict) and bool(native.get("turns"))  # (the gateway's /v1/messages)
            if self.searches != 0 or history:  # (search_bound: 0 without a web_search tool)
                why = f"{d.provider} speaks the {d.shape} API" if d.shape != "anthropic" else \
                    f"{d.provider}'s Anthropic-compatible API does not run Anthropic's server tools"
                if self.searches != 0:
                    return (f"the request's web_search server tool runs on Anthropic's API only: web search needs "
                            f"an Anthropic model ({why})")
                return ("the request's history holds Anthropic server tool blocks (an earlier answer's "
                        "server_tool_use, web_search_tool_result, citations), which only Anthropic's API takes: "
                        f"web search history needs an Anthropic model ({why})")
        if self.op == "embed":
            why = self._embed_reason(d)
            if why:
                return why
        if d.breaker.state == "open":
            return "circuit open"
        return None

    def _embed_reason(self, d: Deployment) -> str | None:
        """Why deployment ``d`` cannot take this embeddings request (None: it can)."""
        shape = get_shape(d.shape)
        if shape.embed_url(d.base_url, d.model) is None:
            return f"the {d.shape} API has no embeddings endpoint"
        inputs = self.params["input"]
        if shape.max_inputs and len(inputs) > shape.max_inputs:
            return f"{len(inputs)} inputs: the {d.shape} API takes at most {shape.max_inputs} a request"
        if any(isinstance(x, list) for x in inputs):
            if not shape.token_inputs:
                return f"input given as token ids: the {d.shape} API takes text only"
            if not any(t in n for n in (d.offer.canonical or "", d.model) for t in _TIKTOKEN_EMBEDDERS):
                # token ids mean something only to the tokenizer that made them: OpenAI's
                # (cl100k_base, what tiktoken and LangChain's OpenAIEmbeddings use)
                return "input given as token ids: only OpenAI's text-embedding models share the tokenizer that made them"
        return None

    def _exclude(self, d: Deployment, reason: str) -> None:
        self.candidates.append({"deployment": d.label, "provider": d.provider, "model": d.model, "key": d.slot.label,
                                "status": "excluded", "reason": reason})

    def excluded(self) -> list[dict]:
        return [c for c in self.candidates if c["status"] == "excluded"]

    # -- ranking
    def est_cost(self, d: Deployment) -> float | None:
        o = d.offer
        if o.variable_pricing:
            return None
        if o.free:
            return 0.0
        pin, pout = o.prices.get("input"), o.prices.get("output")
        if self.op == "embed":
            return None if pin is None else self.prompt * pin / 1e6
        if pin is None or pout is None:
            return None
        return (self.prompt * pin + min(self.out_tokens(o), 1000) * pout) / 1e6

    def _rank(self, deps: list[Deployment]) -> tuple[list[Deployment], str]:
        st = self.strategy
        if not deps:
            return [], ""
        if st == "priority":
            return deps, "first eligible in priority order"
        if st == "cheapest":
            costs = {id(d): self.est_cost(d) for d in deps}
            out = sorted(deps, key=lambda d: (costs[id(d)] is None, costs[id(d)] or 0))
            c = costs[id(out[0])]
            return out, f"lowest estimated cost ({'unknown' if c is None else f'${c:.6f}'})"
        if st == "fastest":
            # measurements only (this client's, or a measured health seed); an estimate
            # (Stats.est) never ranks: it is named in the candidate's reason as not used
            n = min(self.out_tokens(), 1000)
            lat = {id(d): d.stats.latency_ms(n) for d in deps}
            out = sorted(deps, key=lambda d: (lat[id(d)] is None, lat[id(d)] or 0))
            self.notes = {id(d): d.stats.speed_reason(lat[id(d)], n) for d in out}
            v = lat[id(out[0])]
            if v is None:
                est = any(d.stats.est is not None for d in out)
                return out, "no speed measured yet: priority order" + (" (speed estimates not used)" if est else "")
            kind = out[0].stats.speed_kind()
            return out, f"fastest measured (~{v:.0f} ms{'; ' + kind if kind else ''})"
        if st == "round-robin":
            k = repr(self.target)
            with self.r._lock:
                i = self.r._rr.get(k, 0)
                self.r._rr[k] = i + 1
            i %= len(deps)
            return deps[i:] + deps[:i], f"round-robin turn {i + 1} of {len(deps)}"
        if st == "weighted":
            keyed = sorted(deps, key=lambda d: -math.log(1 - self.r.rng.random()) / max(d.weight, 1e-9))
            return keyed, f"weighted random (weight {keyed[0].weight:g})"
        if st == "least-busy":
            out = sorted(deps, key=lambda d: d.stats.inflight)
            return out, f"fewest calls in flight ({out[0].stats.inflight})"
        # balanced
        n = min(self.out_tokens(), 1000)

        def norm(vals: list[float | None]) -> list[float]:
            known = [v for v in vals if v is not None]
            lo, hi = (min(known), max(known)) if known else (0, 0)
            return [1.0 if v is None else (0.0 if hi == lo else (v - lo) / (hi - lo)) for v in vals]

        price = norm([self.est_cost(d) for d in deps])
        lat = norm([d.stats.latency_ms(n) for d in deps])
        busy = norm([float(d.stats.inflight) for d in deps])
        score = {id(d): 0.4 * p + 0.3 * la + 0.2 * b + 0.1 * d.stats.err
                 for d, p, la, b in zip(deps, price, lat, busy)}
        out = sorted(deps, key=lambda d: score[id(d)])
        return out, f"lowest balanced score {score[id(out[0])]:.3f} (0.4 price + 0.3 latency + 0.2 busy + 0.1 errors)"

    # -- per-deployment gate and decisions
    def still_useful(self, d: Deployment) -> str | None:
        """Why ``d`` should be skipped after earlier failures (None: try it)."""
        if self.failed_ctx is not None and d.offer.context_window is not None and d.offer.context_window <= self.failed_ctx:
            return f"context window {d.offer.context_window} not larger than one that already overflowed"
        if d.provider in self.failed_providers:
            return "the same provider already rejected this request"
        return self._dep_reason(d)

    def reserve(self, d: Deployment, busy_ms: int | None = None) -> tuple[str | None, str | None]:
        """Hold ``d``'s worst case against the matching budgets. ``busy_ms``: a short try
        (a store that takes it: SQLite's) before the caller waits off its event loop."""
        if not self.budgets or self.store is None:
            return None, None
        amount = worst_case_cost(d.offer, int(self.prompt * RESERVE_PROMPT_FACTOR) + 1, self.out_tokens(d.offer),
                                 self.searches)
        if amount is None and self.searches is None:  # say why: the caller can fix it
            mine, _ = budgets_for(self.budgets, self.scope(d), None)
            if mine:
                return None, (f"web search without max_uses under budget {mine[0].label()}: its searches "
                              "are billed each and nothing bounds them; give the web_search tool max_uses")
        if busy_ms is not None:
            return self.store.reserve(self.budgets, self.scope(d), amount, busy_ms=busy_ms)
        return self.store.reserve(self.budgets, self.scope(d), amount)

    def scope(self, d: Deployment) -> dict:
        return {"provider": d.provider, "alias": self.alias, "key_label": d.slot.label, "tag": self.tag}

    def rate_wait(self, d: Deployment) -> float:
        return d.slot.limiter.wait_time(self.prompt + self.out_tokens(d.offer))

    def request(self, d: Deployment, stream: bool) -> tuple[str, dict, dict]:
        """(url, headers, json body) of one attempt on ``d``."""
        if self.op == "embed":
            return d.embed_url(), d.request_headers(), get_shape(d.shape).embed_body(d.model, self.params["input"],
                                                                                      self.params)
        ctx = {"max_output": d.offer.max_output}
        if d.shape == "ollama":
            ctx["num_ctx"] = num_ctx_for(self.prompt, self.max_tokens or None, d.offer.context_window)
        body = get_shape(d.shape).body(d.model, self.messages, self.params, stream, ctx)
        return d.url(stream), d.request_headers(), body

    def record_attempt(self, d: Deployment, status: Any, err: BaseException | None, t0: float) -> dict:
        if err is not None and err.args:
            err.args = (self.redact(str(err.args[0])),) + err.args[1:]  # a provider may echo the key
        a = {"provider": d.provider, "model": d.model, "key": d.slot.label, "status": status,
             "error": None if err is None else type(err).__name__,
             "kind": getattr(err, "kind", None) if err is not None else None,
             "message": None if err is None else self.redact(str(err)),
             "duration_ms": round((time.perf_counter() - t0) * 1000, 2)}
        self.attempts.append(a)
        return a

    def redact(self, text: str) -> str:
        # longest first: a secret that contains another is masked whole
        for s in sorted(self.r.secrets(), key=len, reverse=True):
            if s and len(s) >= 4:
                text = text.replace(s, "***")
        return text

    def on_failure(self, d: Deployment, e: ProviderError, tries: int) -> tuple[str, float]:
        """After a failed attempt: ``("retry", delay)`` on the same deployment or ``("next", 0)``."""
        from knollm.retry import backoff_delay

        # a bad request still shows the deployment answering: neutral (it ends a half-open trial,
        # clears no failure count); every other failure counts against the breaker
        if e.kind in _REQUEST_FAULTS:
            d.breaker.record(None)
        else:
            d.breaker.record(False)
            d.stats.observe(False)
        if e.kind == "auth":
            d.slot.disabled = f"key disabled after HTTP {e.status}"
            return "next", 0.0
        if e.kind == "context_length":
            ctx = d.offer.context_window
            self.failed_ctx = max(self.failed_ctx or 0, ctx or self.longest)  # (embeddings: the longest input)
            return "next", 0.0
        if e.kind in ("bad_request", "not_found"):
            if e.kind == "bad_request":
                self.failed_providers.add(d.provider)
            return "next", 0.0
        if e.kind == "rate_limit" and d is not self.order[-1]:
            # that key (or provider) is rate limited: the next candidate, rather than waiting
            # for it (a Retry-After is waited out on the last candidate only)
            return "next", 0.0
        if e.retryable and tries <= self.r.s.retries:
            delay = backoff_delay(tries, self.r.s.backoff_base, self.r.s.backoff_max, self.r.rng)
            if e.retry_after is not None:
                if e.retry_after > self.r.s.max_retry_wait:
                    return "next", 0.0
                delay = max(delay, e.retry_after)
            if d.breaker.state == "open":
                return "next", 0.0
            return "retry", delay
        return "next", 0.0
