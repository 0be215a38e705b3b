"""Fetch provider model lists: async httpx2 with a concurrency limit, connect/read
timeouts, retries with exponential backoff + jitter on 429/5xx/network errors (honouring
``Retry-After``), pagination followed to the end, a size limit, and atomic dump writes.

A dump is written only when the answer parses into the provider's expected shape and
holds at least one model; it is written to a temp file in the same directory, fsynced
and ``os.replace``-d over the old one, so on any failure the previous dump is untouched.
Refused as well (the previous dump kept, the reason reported): an API error answer in any
shape (``{"error": …}``, ``{"detail": …}``: :func:`~knollm.catalog.readers.error_envelope`);
a keyed answer most of whose entries carry none of the source's model fields (the ``Raw``
TypedDict of its translator module: LiteLLM's ``litellm_provider``, ``input_cost_per_token``…);
and an answer listing fewer than half the models of the previous dump (:data:`SHRINK_LIMIT`,
the report's ``models_before``; both counted by distinct id) unless ``force`` (``knollm fetch
--force``). Per-record problems of an accepted answer (no id, duplicate ids…) are listed in
the provider's ``warnings``, naming file and record.
A single-page answer is stored byte for byte as the provider sent it; a paginated (or
``list-key``) answer is re-serialized as ``{"object": "list", "data": [...]}``.

Pagination (``has_more``, ``page_token``, ``page_number``) is followed to the end, with
loops detected. When ``url`` answers 404/410 on its first page, ``legacy_urls`` are tried in
order; the result names the one that answered (``legacy_url``, ``fallback``).

Key values never leave this module: they are sent only in the header / query parameter
the registry names, every message goes through a :class:`~knollm.fetch.redact.Redactor`,
URLs are printed without their query string, and an answer that echoes a key (raw,
URL-encoded or JSON-escaped) is refused. Redirects are followed by hand (:meth:`_Run._follow`):
credentials go only to the list URL's origin (scheme, host, port); a keyed provider's
redirect to another origin is refused, https -> http always.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx2
import orjson

from knollm.catalog.diagnostics import Diagnostics
from knollm.fsutil import atomic_write
from knollm.errors import DumpError, FetchError
from knollm.catalog.readers import (ErrorAnswer, detect_shape, error_envelope, parse_dump, read_dump,
                                    records_from_payload)
from knollm.fetch.redact import Redactor, RedactingFilter, safe_url
from knollm.fetch.registry import FetchPlan, ProviderSpec, Settings
from knollm.fetch.report import FetchReport, ProviderResult
from knollm.retry import RETRY_STATUSES, backoff_delay, parse_retry_after, retry_after_of

__all__ = ["GONE_STATUSES", "RETRY_STATUSES", "SHRINK_LIMIT", "atomic_write", "backoff_delay", "fetch_all", "fetch_all_async", "parse_retry_after"]

_HTTP_LOGGERS = ("httpx2", "httpcore2.connection", "httpcore2.http11", "httpcore2.http2", "httpcore2.proxy")
_log = logging.getLogger("knollm.fetch")

LogFn = Callable[[str], None]


class _TooBig(Exception):
    pass


class _Gone(FetchError):
    """The URL answered 404 / 410: the endpoint moved (a legacy URL may still answer)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


#: statuses that send ``knollm fetch`` to a provider's ``legacy_urls``
GONE_STATUSES = frozenset({404, 410})
#: an answer listing fewer than this fraction of the previous dump's models is refused
#: (without ``--force``): a partial or wrong answer must not replace a good dump
SHRINK_LIMIT = 0.5


def _model_fields(source_id: str) -> frozenset[str]:
    """The raw fields ``models_<source_id>.json`` entries carry, as its translator module
    declares them (the ``Raw`` TypedDict of :mod:`knollm.catalog.sources`; LiteLLM:
    ``litellm_provider``, ``max_input_tokens``, ``input_cost_per_token``…); empty when none."""
    import importlib

    from knollm.catalog.sources import TRANSLATORS

    if source_id not in TRANSLATORS:
        return frozenset()
    raw = getattr(importlib.import_module(f"knollm.catalog.sources.{source_id}"), "Raw", None)
    return frozenset(getattr(raw, "__annotations__", {}))


def _check_model_fields(spec: ProviderSpec, records: list[tuple[str, dict]]) -> None:
    """Refuse a keyed answer most of whose entries carry none of the source's declared model
    fields: an error body or another document keyed by name is not the model list (a keyed
    answer has no ``id`` to check, so its entries' fields are what tells)."""
    fields = _model_fields(spec.id) if spec.shape == "keyed" else frozenset()
    if not fields or not records:
        return
    lacking = [rid for rid, rec in records if not fields & rec.keys()]
    if 2 * len(lacking) > len(records):
        shown = ", ".join(sorted(fields & {"litellm_provider", "mode", "max_input_tokens", "input_cost_per_token"})
                          or sorted(fields)[:4])
        raise FetchError(f"{len(lacking)} of {len(records)} entries (e.g. {lacking[0]!r}) have none of the "
                         f"model fields of {spec.display_name} ({shown}, …): not its model list; refused")


def _count_models(path: Path) -> int | None:
    """The number of distinct model ids in the dump at ``path`` (None: no readable dump)."""
    if not path.exists():
        return None
    try:
        return len({rid for rid, _rec in read_dump(path, Diagnostics()).records})
    except DumpError:
        return None


#: statuses whose ``Location`` :meth:`_Run.get` follows (by hand: see :func:`_origin`)
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``, the default port filled in: credentials go only to
    the origin of the list URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def _origin_text(url: str) -> str:
    scheme, host, port = _origin(url)
    return f"{scheme}://{host}" + (f":{port}" if port is not None else "")


def _describe_transport_error(e: Exception, connect_timeout: float, read_timeout: float) -> str:
    if isinstance(e, httpx2.ConnectTimeout):
        return f"connect timed out after {connect_timeout:g}s"
    if isinstance(e, httpx2.ReadTimeout):
        return f"read timed out (no data for {read_timeout:g}s)"
    if isinstance(e, httpx2.PoolTimeout):
        return "timed out waiting for a connection"
    if isinstance(e, httpx2.TimeoutException):
        return "timed out"
    if isinstance(e, httpx2.RemoteProtocolError):
        return f"connection broken mid-answer (truncated body?): {e}"
    if isinstance(e, httpx2.ConnectError):
        return f"cannot connect: {e}"
    return f"{type(e).__name__}: {e}"


def _snippet(body: bytes, limit: int = 160) -> str:
    text = body[:4096].decode("utf-8", "replace")
    if text.lstrip()[:1] == "<":
        return "(HTML page)"
    try:
        obj = orjson.loads(body[:65536])
        if isinstance(obj, dict):
            err = obj.get("error", obj.get("message", obj.get("detail")))
            if isinstance(err, dict):
                err = err.get("message") or err.get("type") or err
            if err is not None:
                text = str(err)
    except orjson.JSONDecodeError:
        pass
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Run:
    """State shared by the providers of one run."""

    def __init__(self, registry: FetchPlan, out_dir: Path, env: Mapping[str, str], log: LogFn | None,
                 rng: random.Random, force: bool = False) -> None:
        self.registry = registry
        self.force = force
        self.settings: Settings = registry.settings
        self.out_dir = out_dir
        self.env = env
        self.redactor = Redactor()
        self._log = log
        self.rng = rng

    def log(self, msg: str) -> None:
        msg = self.redactor.redact(msg)
        _log.info(msg)
        if self._log is not None:
            self._log(msg)

    def key_for(self, spec: ProviderSpec) -> str | None:
        for name in spec.key_env:
            v = self.env.get(name)
            if v and v.strip():
                return v.strip()
        return None

    # -- one HTTP GET with retries ------------------------------------------------------
    async def get(self, client: httpx2.AsyncClient, url: str, spec: ProviderSpec, params: dict, headers: dict,
                  res: ProviderResult, key: str | None = None) -> bytes:
        s = self.settings
        retries = s.retries if spec.retries is None else spec.retries
        max_bytes = spec.max_bytes or s.max_bytes
        ct = spec.connect_timeout or s.connect_timeout
        rt = spec.read_timeout or s.read_timeout
        timeout = httpx2.Timeout(connect=ct, read=rt, write=rt, pool=ct + rt)
        attempt = 0
        while True:
            attempt += 1
            res.attempts += 1
            retry_after: float | None = None
            try:
                status, body, hdrs = await self._follow(client, url, spec, params, headers, timeout, max_bytes,
                                                        key, res)
            except _TooBig as e:
                raise FetchError(f"answer is larger than the {max_bytes:,}-byte limit ({e}); refused") from None
            except httpx2.TransportError as e:
                err = _describe_transport_error(e, ct, rt)
            else:
                res.http_status = status
                if 200 <= status < 300:
                    return body
                phrase = _phrase(status)
                if status in RETRY_STATUSES:
                    err = f"HTTP {status} {phrase}".strip()
                    retry_after = retry_after_of(hdrs)  # (retry-after-ms first, as the client reads it)
                else:
                    hint = ""
                    if status in (401, 403) and spec.key_env:
                        hint = f" (check the key in {' / '.join(spec.key_env)})"
                    msg = f"HTTP {status} {phrase}{hint}: {_snippet(body)}".rstrip(": ")
                    raise _Gone(msg, status) if status in GONE_STATUSES else FetchError(msg)
            if attempt > retries:
                tries = f"{attempt} attempt" + ("s" if attempt != 1 else "")
                raise FetchError(f"{err}; gave up after {tries}")
            if retry_after is not None:
                if retry_after > s.max_retry_after:
                    raise FetchError(f"{err}: Retry-After {retry_after:.0f}s exceeds max_retry_after "
                                     f"{s.max_retry_after:g}s; not waiting")
                delay = retry_after + self.rng.uniform(0, min(1.0, 0.1 * retry_after + 0.05))
                why = f"Retry-After {retry_after:g}s"
            else:
                delay = backoff_delay(attempt, s.backoff_base, s.backoff_max, self.rng)
                why = "backoff"
            res.retries += 1
            ev = self.redactor.redact(f"attempt {attempt}: {err}; retry in {delay:.2f}s ({why})")
            res.events.append(ev)
            self.log(f"{spec.id}: {ev}")
            await asyncio.sleep(delay)

    async def _follow(self, client, url: str, spec: ProviderSpec, params: dict | None, headers: dict, timeout,
                      max_bytes: int, key: str | None, res: ProviderResult) -> tuple[int, bytes, httpx2.Headers]:
        """One GET, redirects followed by hand (the client never follows them): a redirect
        within the list URL's origin (scheme, host, port) keeps the credentials; one to another
        origin is refused for a provider with a key (its header or query parameter must not
        reach another host) and followed without credentials for a public list; https -> http
        is always refused."""
        start = url
        for _hop in range(MAX_REDIRECTS + 1):
            status, body, hdrs = await self._once(client, url, params, headers, timeout, max_bytes)
            loc = hdrs.get("location")
            if status not in REDIRECT_STATUSES or not loc:
                return status, body, hdrs
            target = urljoin(url, loc.strip())
            if _origin(target)[0] not in ("http", "https"):
                raise FetchError(f"HTTP {status} redirect to a non-HTTP URL; refused")
            shown = safe_url(target)
            if _origin(url)[0] == "https" and _origin(target)[0] == "http":
                raise FetchError(f"HTTP {status} redirect from https to plain http ({shown}); refused")
            same = _origin(target) == _origin(start)
            if not same:
                if spec.auth != "none" or self.redactor.contains_secret(target):
                    raise FetchError(f"HTTP {status} redirect to another origin ({_origin_text(target)}, list URL "
                                     f"{_origin_text(start)}); not followed, so the API key is not sent there "
                                     "(update list.url if the list moved)")
                headers = {k: v for k, v in headers.items()
                           if k.lower() not in ("authorization", "cookie", "proxy-authorization",
                                                spec.key_header.lower())}
            params = None  # the Location's own query string (httpx2 would replace it with ``params``)
            if same and spec.auth == "query" and key is not None:
                q = dict(parse_qsl(urlsplit(target).query, keep_blank_values=True))
                if spec.key_param not in q:
                    params = {**q, spec.key_param: key}
            res.events.append(self.redactor.redact(f"HTTP {status} redirect to {shown}"))
            self.log(f"{spec.id}: HTTP {status} redirect to {shown}")
            url = target
        raise FetchError(f"more than {MAX_REDIRECTS} redirects; stopped")

    async def _once(self, client, url, params, headers, timeout, max_bytes) -> tuple[int, bytes, httpx2.Headers]:
        async with client.stream("GET", url, params=params, headers=headers, timeout=timeout) as resp:
            ok = 200 <= resp.status_code < 300
            limit = max_bytes if ok else 65536  # error pages: read only what a message needs
            cl = resp.headers.get("content-length")
            if ok and cl and cl.isdigit() and int(cl) > max_bytes:
                raise _TooBig(f"Content-Length {int(cl):,}")
            buf = bytearray()
            async for chunk in resp.aiter_bytes():
                buf += chunk
                if len(buf) > limit:
                    if ok:
                        raise _TooBig(f"over {len(buf):,} bytes read")
                    break
            return resp.status_code, bytes(buf), resp.headers

    # -- one provider ---------------------------------------------------------------------
    async def fetch_provider(self, client: httpx2.AsyncClient, spec: ProviderSpec,
                             sem: asyncio.Semaphore) -> ProviderResult:
        res = ProviderResult(id=spec.id, status="failed", url=safe_url(spec.url))
        path = self.out_dir / spec.dump_name()
        res.models_before = _count_models(path)
        key = None
        if spec.manual:
            res.status = "skipped"
            res.reason = "hand-curated dump; not fetched" + (f" ({spec.note})" if spec.note else "")
            return res
        if spec.auth != "none":
            key = self.key_for(spec)
            if key is None:
                res.status = "skipped"
                res.reason = f"no API key (set {' or '.join(spec.key_env)})"
                self.log(f"{spec.id}: skipped: {res.reason}")
                return res
        async with sem:
            t0 = time.monotonic()
            self.log(f"{spec.id}: GET {safe_url(spec.url)}")
            try:
                async with asyncio.timeout(self.settings.total_timeout):
                    data, count = await self._fetch_listing(client, spec, key, res)
                before = res.models_before
                if (before and count < SHRINK_LIMIT * before and not self.force
                        and not (spec.allow_empty and count == 0)):
                    raise FetchError(f"the answer lists {count} model(s), fewer than half of the {before} in the "
                                     "previous dump (a partial or wrong answer?); refused, use --force to "
                                     "accept it")
                old = path.read_bytes() if path.exists() else None
                res.changed = old != data
                if res.changed:
                    atomic_write(path, data)
                res.status, res.models_after, res.dump = "ok", count, path.name
            except FetchError as e:
                res.reason = self.redactor.redact(str(e))
            except DumpError as e:
                res.reason = self.redactor.redact(str(e).split(": ", 1)[-1])
            except TimeoutError:
                res.reason = f"gave up after the {self.settings.total_timeout:g}s per-provider time limit"
            except OSError as e:
                res.reason = self.redactor.redact(f"cannot write {path.name}: {e.strerror or e}")
            except Exception as e:  # noqa: BLE001 - one provider never stops the run
                res.reason = self.redactor.redact(f"unexpected {type(e).__name__}: {e}")
            res.duration = time.monotonic() - t0
        if res.status == "failed":
            kept = "previous dump kept" if res.models_before is not None else "no dump written"
            res.reason = f"{res.reason} ({kept})"
        self.log(f"{spec.id}: {res.status}" + (f": {res.reason}" if res.reason else "")
                 + f" [{res.duration:.2f}s, {res.retries} retries]")
        return res

    async def _fetch_listing(self, client, spec: ProviderSpec, key: str | None,
                             res: ProviderResult) -> tuple[bytes, int]:
        """The list from ``spec.url``; when that answers 404/410 on its first page, from the
        first of ``spec.legacy_urls`` that answers (the fallback is noted in the report)."""
        try:
            return await self._fetch_pages(client, spec, spec.url, key, res)
        except _Gone as e:
            if not spec.legacy_urls or res.pages:
                raise
            first = e
        tried = []
        for url in spec.legacy_urls:
            self.log(f"{spec.id}: {safe_url(spec.url)} answered HTTP {first.status}; "
                     f"trying legacy URL {safe_url(url)}")
            try:
                out = await self._fetch_pages(client, spec, url, key, res)
            except _Gone as e:
                if res.pages:
                    raise
                tried.append(f"{safe_url(url)} HTTP {e.status}")
                continue
            res.legacy_url = safe_url(url)
            res.fallback = f"legacy URL used: current one answered HTTP {first.status}"
            res.events.append(f"{res.fallback}; listed from {res.legacy_url}")
            return out
        raise FetchError(f"{first}; legacy URL(s) gone too: {', '.join(tried)}")

    async def _fetch_pages(self, client, spec: ProviderSpec, url: str, key: str | None,
                           res: ProviderResult) -> tuple[bytes, int]:
        headers = {**spec.headers}
        if spec.auth == "bearer":
            headers["Authorization"] = f"Bearer {key}"
        elif spec.auth in ("x-api-key", "header"):
            headers[spec.key_header] = key  # type: ignore[assignment]
        items: list[Any] = []
        keyed: dict | None = None
        first_body = b""
        cursor: str | None = None
        seen: set[str] = set()
        max_pages = spec.max_pages or self.settings.max_pages
        base_url, _, query = url.partition("?")
        url_params = dict(parse_qsl(query, keep_blank_values=True))
        page_no = 1 if spec.pagination == "page_number" else None
        prev_sig: str | None = None
        while True:
            params = {**url_params, **spec.params}
            if spec.pagination != "none" and spec.page_size and spec.page_size_param:
                params[spec.page_size_param] = str(spec.page_size)
            if page_no is not None and spec.page_param:
                params[spec.page_param] = str(page_no)
            elif cursor is not None and spec.cursor_param:
                params[spec.cursor_param] = cursor
            if spec.auth == "query":
                params[spec.key_param] = key  # type: ignore[assignment]
            body = await self.get(client, base_url, spec, params, headers, res, key)
            res.pages += 1
            res.bytes += len(body)
            if self.redactor.contains_secret(body):
                raise FetchError("the answer contains an API key value; refused, nothing written")
            page_name = spec.dump_name() if res.pages == 1 else f"{spec.dump_name()} page {res.pages}"
            payload = parse_dump(body, page_name)
            # the key may be in the answer escaped (``\/``, ``\u002f``…): check the decoded strings too
            if self.redactor.contains_secret(orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS)):
                raise FetchError("the answer contains an API key value (JSON-escaped); refused, nothing written")
            page_items = _extract(payload, spec)
            if isinstance(page_items, dict):
                keyed = page_items
            else:
                items.extend(page_items)
            if res.pages == 1:
                first_body = body
            if page_no is not None:  # page-number pagination: page, per_page -> total_pages
                sig = _page_signature(page_items)
                if sig is not None and sig == prev_sig:
                    raise FetchError(f"pagination loops: page {page_no} repeats page {page_no - 1} "
                                     f"(is {spec.page_param!r} ignored?)")
                prev_sig = sig
                if not _more_pages(payload, spec, page_no, page_items):
                    break
                if res.pages >= max_pages:
                    raise FetchError(f"more than {max_pages} pages; stopped")
                self.log(f"{spec.id}: page {page_no} ({len(page_items)} models), next page")
                page_no += 1
                continue
            nxt = _next_cursor(payload, spec, page_items)
            if not nxt:
                break
            if nxt in seen or nxt == cursor:
                raise FetchError(f"pagination loops: cursor repeated on page {res.pages}")
            seen.add(nxt)
            if res.pages >= max_pages:
                raise FetchError(f"more than {max_pages} pages; stopped")
            self.log(f"{spec.id}: page {res.pages} ({len(page_items)} models), next page")
            cursor = nxt
        if keyed is not None:
            merged: Any = keyed
            data = first_body
        elif res.pages == 1 and spec.shape in ("openai-list", "array"):
            merged = orjson.loads(first_body) if spec.shape == "openai-list" else items
            data = first_body
        else:
            merged = {"object": "list", "data": items}
            data = orjson.dumps(merged, option=orjson.OPT_INDENT_2) + b"\n"
        diags = Diagnostics()
        _shape, records = records_from_payload(merged, spec.dump_name(), diags)
        if not records and not spec.allow_empty:
            why = f"; {diags.items[0].message}" if diags.items else ""
            raise FetchError(f"the answer lists no models{why}")
        _check_model_fields(spec, records)
        # per-record problems the catalog build will warn about too: in the report, by file and record
        warnings = [self.redactor.redact(str(d)) for d in diags.warnings]
        ids: dict[str, int] = {}
        for rid, _rec in records:
            ids[rid] = ids.get(rid, 0) + 1
        dups = {rid: n for rid, n in ids.items() if n > 1}
        if dups:
            shown = ", ".join(f"{rid!r} ×{n}" for rid, n in list(dups.items())[:5])
            warnings.append(self.redactor.redact(
                f"{spec.dump_name()}: {sum(dups.values()) - len(dups)} duplicate record(s) of {len(dups)} id(s) "
                f"({shown}{', …' if len(dups) > 5 else ''}); counted once"))
        res.warnings = warnings
        for w in warnings:
            self.log(f"{spec.id}: warning: {w}")
        return data, len(ids)


def _phrase(status: int) -> str:
    try:
        return httpx2.codes.get_reason_phrase(status)
    except Exception:  # noqa: BLE001
        return ""


def _extract(payload: Any, spec: ProviderSpec) -> list | dict:
    """The page's model list (a dict for ``keyed``), or :class:`FetchError` on a wrong shape."""
    if spec.shape == "list-key":
        lst = payload.get(spec.list_key) if isinstance(payload, dict) else None
        if isinstance(lst, list):
            return lst
        got = _got(payload)
        raise FetchError(f"expected an object with a {spec.list_key!r} array, got {got}")
    try:
        shape = detect_shape(payload)
    except ErrorAnswer:
        raise FetchError(f"expected {spec.shape}, got {_got(payload)}") from None
    except ValueError as e:
        shape = None
        detail = str(e)
    if shape == spec.shape:
        return payload if shape in ("array", "keyed") else payload["data"]
    if shape is None:
        raise FetchError(f"expected {spec.shape}, got {_got(payload)} ({detail})")
    raise FetchError(f"expected {spec.shape}, got {_got(payload)}")


def _got(payload: Any) -> str:
    if isinstance(payload, dict):
        err = error_envelope(payload)
        if err is None and payload.get("error") is not None:
            err = str(payload["error"].get("message") if isinstance(payload["error"], dict) else payload["error"])
        if err is not None:
            return f"an error object: {err[:160]}"
        try:
            return detect_shape(payload)
        except ValueError:
            return "an object with keys " + ", ".join(sorted(map(str, payload))[:5])
    if isinstance(payload, list):
        return "an array"
    return f"a JSON {type(payload).__name__}"


def _dig(payload: Any, path: str | None) -> Any:
    """``payload['a']['b']`` for ``path = 'a.b'`` (None when absent)."""
    cur = payload
    for part in (path or "").split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _more_pages(payload: Any, spec: ProviderSpec, page_no: int, page_items: list | dict) -> bool:
    """Page-number pagination: is there a page after ``page_no``?  The answer's page count
    (``total_pages_field``) decides; without one, a page shorter than the page size the
    answer states (its ``per_page``: a server may cap the size asked for) is the last; when
    the answer states no page size, only an empty page ends the list (``max_pages`` bounds it)."""
    if not isinstance(page_items, list):
        return False
    total = _int_field(_dig(payload, spec.total_pages_field))
    if total is not None:
        return page_no < total
    if not page_items:
        return False
    per = None
    if isinstance(payload, dict):
        for name in dict.fromkeys((spec.page_size_param or "per_page", "per_page")):
            per = _int_field(payload.get(name))
            if per is not None and per > 0:
                break
            per = None
    if per is not None:
        return len(page_items) >= per
    return True


def _int_field(v: Any) -> int | None:
    if isinstance(v, str) and v.strip().isdigit():
        return int(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    return None


def _page_signature(page_items: list | dict) -> str | None:
    """First and last model id of a page: equal on two consecutive pages = the server ignores the page."""
    if not isinstance(page_items, list) or not page_items:
        return None
    ids = [m.get("id") if isinstance(m, dict) else m for m in (page_items[0], page_items[-1])]
    return repr((ids, len(page_items)))


def _next_cursor(payload: Any, spec: ProviderSpec, page_items: list | dict) -> str | None:
    if spec.pagination == "none" or not isinstance(payload, dict):
        return None
    if spec.pagination == "has_more":
        if payload.get("has_more") is not True:
            return None
        cur = payload.get(spec.cursor_field or "last_id")
        if not cur and isinstance(page_items, list) and page_items and isinstance(page_items[-1], dict):
            cur = page_items[-1].get("id")
        if not cur:
            raise FetchError("has_more is true but the page gives no cursor")
        return str(cur)
    tok = payload.get(spec.cursor_field or "nextPageToken")
    return str(tok) if tok else None


async def fetch_all_async(
    registry: FetchPlan,
    out_dir: str | Path,
    *,
    only: list[str] | None = None,
    env: Mapping[str, str] | None = None,
    log: LogFn | None = None,
    concurrency: int | None = None,
    seed: int | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
    force: bool = False,
) -> FetchReport:
    """Fetch the selected providers; never raises for a provider's failure. ``force`` accepts
    an answer listing fewer than half the models of the previous dump (refused otherwise)."""
    out = Path(out_dir)
    specs = registry.select(only)
    run = _Run(registry, out, os.environ if env is None else env, log, random.Random(seed), force)
    for spec in specs:  # every key of the run is masked in every message
        for name in spec.key_env:
            run.redactor.add(run.env.get(name, "").strip() or None)
    conc = concurrency or registry.settings.concurrency
    report = FetchReport(started_at=_now(), out_dir=str(out), registry=registry.path or "", concurrency=conc)
    filt = RedactingFilter(run.redactor)
    loggers = [logging.getLogger(n) for n in _HTTP_LOGGERS]
    for lg in loggers:
        lg.addFilter(filt)
    t0 = time.monotonic()
    try:
        sem = asyncio.Semaphore(conc)
        s = registry.settings
        limits = httpx2.Limits(max_connections=max(conc * 2, 4), max_keepalive_connections=conc)
        async with httpx2.AsyncClient(
            timeout=httpx2.Timeout(connect=s.connect_timeout, read=s.read_timeout,
                                   write=s.read_timeout, pool=s.connect_timeout + s.read_timeout),
            limits=limits,
            headers={"User-Agent": s.user_agent, "Accept": "application/json"},
            follow_redirects=False,  # followed by hand: credentials only within the list URL's origin
            transport=transport,
        ) as client:
            results = await asyncio.gather(*(run.fetch_provider(client, spec, sem) for spec in specs))
    finally:
        for lg in loggers:
            lg.removeFilter(filt)
    report.results = list(results)
    report.duration = time.monotonic() - t0
    report.finished_at = _now()
    return report


def fetch_all(registry: FetchPlan, out_dir: str | Path, **kwargs: Any) -> FetchReport:
    """Synchronous wrapper of :func:`fetch_all_async`."""
    return asyncio.run(fetch_all_async(registry, out_dir, **kwargs))


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
