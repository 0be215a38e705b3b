"""What ``knollm fetch`` fetches: a :class:`FetchPlan` derived from the one provider
registry (``knollm/data/providers.toml``, see :mod:`knollm.providers`).

Each provider with a ``list.*`` table becomes a :class:`ProviderSpec` (its list URL,
auth and key variables from ``api.*`` unless ``list.*`` overrides them, shape and
pagination); each ``[sources.<name>]`` (LiteLLM's cost map, a hand-curated subset)
becomes one too. The run-wide defaults are the ``[fetch]`` table (:class:`Settings`)::

    [fetch]
    concurrency = 6            # providers fetched at once
    connect_timeout = 10.0     # seconds
    read_timeout = 60.0        # seconds between two reads of the body
    retries = 3                # extra attempts on 429 / 5xx / network errors
    backoff_base = 1.0         # first backoff (s); doubles per attempt, with jitter
    backoff_max = 30.0
    max_retry_after = 120.0    # a longer Retry-After fails the provider instead of waiting
    max_bytes = 67108864       # larger answers are refused
    max_pages = 100

Pagination (``list.pagination``): ``has_more``, ``page_token`` and ``page_number``
(``page_param`` / ``page_size_param`` / ``total_pages_field``, default ``page`` /
``per_page`` / ``total_pages``, as Featherless pages). ``list.legacy_urls`` are older URLs
of the same list, tried only when ``url`` answers 404/410 (see :mod:`knollm.fetch.client`).

Ids are the dump names: ``models_<id>.json``. A list with ``enabled = false`` is only
fetched when named in ``--only``; one with ``manual = true`` (a hand-curated dump) is
never fetched, only reported as skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from knollm.providers import (ProviderRegistry, format_validation_error as _format_validation, load_provider_registry,
                              parse_provider_registry, provider_registry)

from knollm.errors import RegistryError

__all__ = ["ProviderSpec", "FetchPlan", "RegistryError", "Settings", "load_registry", "parse_registry", "plan_from"]

_FORBID = ConfigDict(extra="forbid")


class Settings(BaseModel):
    model_config = _FORBID
    concurrency: int = Field(6, ge=1, le=64)
    connect_timeout: float = Field(10.0, gt=0)
    read_timeout: float = Field(60.0, gt=0)
    total_timeout: float = Field(300.0, gt=0, description="wall-clock limit per provider (all pages, retries)")
    retries: int = Field(3, ge=0, le=10)
    backoff_base: float = Field(1.0, ge=0)
    backoff_max: float = Field(30.0, ge=0)
    max_retry_after: float = Field(120.0, ge=0)
    max_bytes: int = Field(64 * 1024 * 1024, ge=1)
    max_pages: int = Field(100, ge=1)
    user_agent: str = "knollm-fetch/0.1 (+https://github.com/knollm)"


class ProviderSpec(BaseModel):
    """How to list one provider's models."""

    model_config = _FORBID
    id: str
    name: str | None = None
    url: str
    docs_url: str | None = None
    auth: Literal["bearer", "x-api-key", "query", "header", "none"] = "bearer"
    key_env: list[str] = Field(default_factory=list)
    key_header: str = Field("x-api-key", description="header name for auth='header' / 'x-api-key'")
    key_param: str = Field("key", description="query parameter for auth='query'")
    headers: dict[str, str] = Field(default_factory=dict, description="static extra headers (no secrets)")
    params: dict[str, str] = Field(default_factory=dict, description="static extra query parameters")
    shape: Literal["openai-list", "array", "keyed", "list-key"] = "openai-list"
    list_key: str | None = Field(None, description="for shape='list-key': the key holding the model array")
    pagination: Literal["none", "has_more", "page_token", "page_number"] = "none"
    page_size: int | None = Field(None, ge=1)
    page_size_param: str | None = None
    cursor_field: str | None = Field(None, description="response field with the next cursor")
    cursor_param: str | None = Field(None, description="request parameter that takes the cursor")
    page_param: str | None = Field(None, description="page_number: request parameter with the page number")
    total_pages_field: str | None = Field(None, description="page_number: answer field with the page count")
    legacy_urls: list[str] = Field(default_factory=list, description="older URLs tried when url answers 404/410")
    max_pages: int | None = Field(None, ge=1, le=10000)
    allow_empty: bool = False
    enabled: bool = True
    manual: bool = Field(False, description="hand-curated dump: listed for completeness, never fetched")
    note: str | None = None
    # per-provider overrides of [settings]
    connect_timeout: float | None = Field(None, gt=0)
    read_timeout: float | None = Field(None, gt=0)
    retries: int | None = Field(None, ge=0, le=10)
    max_bytes: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _check_combination(self) -> ProviderSpec:
        # ids, URLs, env names and headers were validated by knollm.providers
        if self.auth != "none" and not self.key_env:
            raise ValueError(f"auth = {self.auth!r} needs key_env (the variable holding the key)")
        if self.pagination == "has_more":
            self.cursor_field = self.cursor_field or "last_id"
            self.cursor_param = self.cursor_param or "after_id"
            self.page_size_param = self.page_size_param or "limit"
        elif self.pagination == "page_token":
            self.cursor_field = self.cursor_field or "nextPageToken"
            self.cursor_param = self.cursor_param or "pageToken"
            self.page_size_param = self.page_size_param or "pageSize"
        elif self.pagination == "page_number":  # Featherless: page, per_page -> total_pages
            self.page_param = self.page_param or "page"
            self.page_size_param = self.page_size_param or "per_page"
            self.total_pages_field = self.total_pages_field or "total_pages"
        return self

    @property
    def display_name(self) -> str:
        return self.name or self.id

    def dump_name(self) -> str:
        return f"models_{self.id}.json"


class FetchPlan(BaseModel):
    model_config = _FORBID
    path: str | None = None
    settings: Settings = Field(default_factory=Settings)
    providers: dict[str, ProviderSpec]

    def select(self, only: list[str] | None = None) -> list[ProviderSpec]:
        """Providers to fetch: ``only`` (any, even disabled) or every enabled one, in file order."""
        if not only:
            return [p for p in self.providers.values() if p.enabled]
        unknown = [o for o in only if o not in self.providers]
        if unknown:
            from knollm.errors import NotFoundError
            import difflib

            sugg = difflib.get_close_matches(unknown[0], list(self.providers), n=3)
            raise NotFoundError("provider", unknown[0], sugg)
        return [self.providers[o] for o in dict.fromkeys(only)]


def plan_from(reg: ProviderRegistry) -> FetchPlan:
    """The fetch plan of a validated provider registry; errors name the registry file."""
    specs: dict[str, dict] = {}
    for pid, p in reg.providers.items():
        if p.list is None:
            continue
        lst = p.list.model_dump(exclude_none=True, exclude={"docs", "key_header", "auth", "headers"})
        specs[pid] = {
            "id": pid, "name": p.name, **lst,
            "docs_url": p.list.docs or p.docs,
            "auth": p.list.auth or p.api.auth,
            "key_env": list(p.api.key_env),
            "key_header": p.list.key_header or p.api.key_header,
            "headers": {**p.api.headers, **p.list.headers},
        }
    for sid, s in reg.sources.items():
        d = s.model_dump(exclude_none=True, exclude={"id", "docs", "provider", "key_env", "auth", "key_header"})
        specs[sid] = {"id": sid, **d, "docs_url": s.docs, "auth": s.auth or "none", "key_env": list(s.key_env),
                      "key_header": s.key_header or "x-api-key"}
    try:
        return FetchPlan.model_validate({"path": reg.path, "settings": reg.fetch, "providers": specs})
    except ValidationError as e:
        raise RegistryError(f"{reg.path}: invalid provider registry: {_format_validation(e)}") from None


def parse_registry(data: dict, path: str = "<registry>") -> FetchPlan:
    """Validate an already-parsed registry TOML document; errors name ``path`` and the key."""
    return plan_from(parse_provider_registry(data, path))


def load_registry(path: str | Path | None = None) -> FetchPlan:
    """The fetch plan of a registry file (default: the packaged one); :class:`RegistryError`
    names the file."""
    if path is None:
        return plan_from(provider_registry())
    return plan_from(load_provider_registry(path))
