"""Knollm's one provider registry: ``knollm/data/providers.toml``.

Every provider id, its aliases (one direction: alias -> id), its spellings in the
registries (models.dev, genai-prices, LiteLLM), how to call it (``api.*``), its
published rate limits (``limits.*``) and its model-list endpoint (``list.*``, for
``knollm fetch``) live in that one file. The catalog build, ``fetch``, the client and
the site all read it through :func:`provider_registry`::

    from knollm.providers import provider_registry
    reg = provider_registry()
    reg.resolve("together_ai")        # -> "togetherai"
    p = reg.get("groq")               # ProviderEntry; NotFoundError if unknown
    p.api.base_url, p.api.key_env, p.api.shape, p.limits.rpm

The file is validated with pydantic (strict keys); any error is a
:class:`knollm.errors.RegistryError` naming the file and the key. The format is
documented at the top of the TOML file.
"""

from __future__ import annotations

import re
import tomllib
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from knollm.errors import NotFoundError, RegistryError

__all__ = [
    "ApiSpec",
    "ListSpec",
    "Limits",
    "ProviderEntry",
    "DumpSpec",
    "Retired",
    "PRICE_UNITS",
    "SourceEntry",
    "ProviderRegistry",
    "provider_registry",
    "load_provider_registry",
    "parse_provider_registry",
    "DEFAULT_REGISTRY",
    "format_validation_error",
]

DEFAULT_REGISTRY = Path(__file__).resolve().parent / "data" / "providers.toml"

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FORBID = ConfigDict(extra="forbid", frozen=True)
_URL_RE = re.compile(r"^https?://[^/\s]+")

Auth = Literal["bearer", "x-api-key", "query", "header", "none"]
ApiShape = Literal["openai", "anthropic", "gemini", "ollama", "bedrock", "vertex", "azure"]


def _docs_url(v: str | None) -> str | None:
    if v is not None and not _URL_RE.match(v):
        raise ValueError("docs must be an absolute http(s) URL")
    return v


def _no_secret_headers(h: dict[str, str]) -> dict[str, str]:
    if {k.lower() for k in h} & {"authorization", "x-api-key", "api-key"}:
        raise ValueError("credentials never go in 'headers'; use auth + key_env")
    return h


class ApiSpec(BaseModel):
    """How to call the provider's chat API."""

    model_config = _FORBID
    shape: ApiShape | None = None
    base_url: str | None = None
    key_env: tuple[str, ...] = ()
    auth: Auth = "bearer"
    key_header: str = "x-api-key"
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("base_url must be an absolute http(s) URL")
        return v

    @field_validator("key_env")
    @classmethod
    def _env(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            if not _ENV_RE.match(name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return v

    _hdr = field_validator("headers")(classmethod(lambda cls, v: _no_secret_headers(v)))


class Limits(BaseModel):
    """Published rate limits (``None``: not published / unknown)."""

    model_config = _FORBID
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)


class ListSpec(BaseModel):
    """The model-list endpoint, for ``knollm fetch``."""

    model_config = _FORBID
    url: str
    docs: str | None = None
    auth: Auth | None = Field(None, description="defaults to api.auth")
    key_param: str = "key"
    key_header: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    params: dict[str, str] = Field(default_factory=dict)
    shape: Literal["openai-list", "array", "keyed", "list-key"] = "openai-list"
    list_key: str | None = None
    pagination: Literal["none", "has_more", "page_token", "page_number"] = "none"
    page_size: int | None = Field(None, ge=1)
    page_size_param: str | None = None
    cursor_field: str | None = None
    cursor_param: str | None = None
    page_param: str | None = Field(None, description="page_number: the page-number parameter (default 'page')")
    total_pages_field: str | None = Field(None, description="page_number: the answer's page-count field, dotted "
                                                            "path allowed (default 'total_pages')")
    legacy_urls: tuple[str, ...] = Field((), description="older list URLs, tried in order when url answers 404/410")
    max_pages: int | None = Field(None, ge=1, le=10000, description="overrides [fetch] max_pages")
    allow_empty: bool = False
    enabled: bool = True
    manual: bool = False
    note: str | None = None
    connect_timeout: float | None = Field(None, gt=0)
    read_timeout: float | None = Field(None, gt=0)
    retries: int | None = Field(None, ge=0, le=10)
    max_bytes: int | None = Field(None, ge=1)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not _URL_RE.match(v):
            raise ValueError("url must be an absolute http(s) URL")
        return v

    @field_validator("legacy_urls")
    @classmethod
    def _legacy(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for u in v:
            if not _URL_RE.match(u):
                raise ValueError(f"legacy URL {u!r} must be an absolute http(s) URL")
        return v

    _hdr = field_validator("headers")(classmethod(lambda cls, v: _no_secret_headers(v)))

    @model_validator(mode="after")
    def _combination(self) -> ListSpec:
        if self.shape == "list-key" and not self.list_key:
            raise ValueError("shape = 'list-key' needs list_key")
        if self.url in self.legacy_urls:
            raise ValueError("legacy_urls must not repeat url")
        if self.pagination != "page_number" and (self.page_param or self.total_pages_field):
            raise ValueError("page_param / total_pages_field need pagination = 'page_number'")
        return self


#: price units a dump can use for its ambiguous ``pricing.prompt`` / ``pricing.completion``
#: fields -> multiplier to USD per 1M tokens; "per-field" = every price field names its own
#: unit (the translator knows it); "none" = the dump carries no prices
PRICE_UNITS: dict[str, float | None] = {
    "usd/token": 1_000_000.0, "usd/1K": 1_000.0, "usd/1M": 1.0, "per-field": None, "none": None,
}


class DumpSpec(BaseModel):
    """Facts about the provider's dump file (``models_<id>.json``)."""

    model_config = _FORBID
    price_unit: Literal["usd/token", "usd/1K", "usd/1M", "per-field", "none"] | None = Field(
        None, description="unit of pricing.prompt / pricing.completion; None = not declared (unknown)")
    note: str | None = None

    @property
    def multiplier(self) -> float | None:
        return PRICE_UNITS.get(self.price_unit) if self.price_unit else None


class Retired(BaseModel):
    """Models the provider retired, for registry entries that still list them."""

    model_config = _FORBID
    match: str = Field(description="regular expression matched against the whole model id (case-insensitive)")
    date: date
    docs: str

    @field_validator("match")
    @classmethod
    def _re(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"not a regular expression: {e}") from None
        return v

    _docs = field_validator("docs")(classmethod(lambda cls, v: _docs_url(v)))


class ProviderEntry(BaseModel):
    """One provider: identity, registry spellings, calling facts, list endpoint."""

    model_config = _FORBID
    id: str
    name: str | None = None
    kind: Literal["provider", "aggregator", "local"] = "provider"
    aliases: tuple[str, ...] = ()
    models_dev: str | None = None
    genai_prices: str | None = None
    litellm: tuple[str, ...] = ()
    docs: str | None = None
    checked: date | None = Field(None, description="when the calling facts were last checked against docs")
    unverified: str | None = Field(None, description="facts that could not be verified, and why")
    api: ApiSpec = Field(default_factory=ApiSpec)
    limits: Limits = Field(default_factory=Limits)
    list: ListSpec | None = None
    dump: DumpSpec = Field(default_factory=DumpSpec)
    retired: tuple[Retired, ...] = ()

    def retired_on(self, model_id: str) -> Retired | None:
        """The :class:`Retired` rule matching ``model_id`` (None if none)."""
        for r in self.retired:
            if re.fullmatch(r.match, model_id, re.IGNORECASE):
                return r
        return None

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID_RE.match(v):
            raise ValueError("provider id must be lowercase letters, digits, '_', '.', '-' (the dump name)")
        return v

    _docs = field_validator("docs")(classmethod(lambda cls, v: _docs_url(v)))

    @field_validator("checked")
    @classmethod
    def _checked(cls, v: date | None) -> date | None:
        if v is not None and not date(2023, 1, 1) <= v <= date.today():
            raise ValueError(f"checked = {v} is implausible (before 2023 or in the future)")
        return v

    @model_validator(mode="after")
    def _keys_for_auth(self) -> ProviderEntry:
        if self.checked is not None and not self.docs:
            raise ValueError("checked needs docs (the page the facts were checked against)")
        list_auth = self.list.auth if self.list and self.list.auth else self.api.auth
        if self.list is not None and list_auth != "none" and not self.api.key_env:
            raise ValueError(f"list auth {list_auth!r} needs api.key_env (the variable holding the key)")
        return self

    @property
    def display_name(self) -> str:
        return self.name or self.id


class SourceEntry(ListSpec):
    """A dump that is not a provider's own model list (LiteLLM's cost map, a subset file)."""

    model_config = _FORBID
    id: str
    name: str | None = None
    provider: str | None = Field(None, description="the provider a subset dump folds into")
    key_env: tuple[str, ...] = ()


class ProviderRegistry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    fetch: dict[str, Any] = Field(default_factory=dict)
    providers: dict[str, ProviderEntry]
    sources: dict[str, SourceEntry] = Field(default_factory=dict)
    _alias_map: dict[str, str] = PrivateAttr(default_factory=dict)

    def model_post_init(self, _ctx: Any) -> None:
        amap: dict[str, str] = {}
        for pid, p in self.providers.items():
            spellings = [pid, *p.aliases, *p.litellm]
            spellings += [x for x in (p.models_dev, p.genai_prices) if x]
            for s in spellings:
                low = s.lower()
                prev = amap.get(low)
                if prev is not None and prev != pid and low != prev:
                    if low in self.providers:  # a provider id always means itself
                        continue
                    raise RegistryError(f"{self.path}: providers.{pid}: spelling {s!r} already means {prev!r}")
                amap.setdefault(low, pid)
        for pid in self.providers:
            amap[pid] = pid
        self._alias_map = amap

    # ---------------------------------------------------------------- lookups
    def ids(self) -> list[str]:
        return list(self.providers)

    def aliases(self) -> dict[str, str]:
        """Every known spelling (lower case) -> provider id (ids map to themselves)."""
        return dict(self._alias_map)

    def resolve(self, name: str) -> str:
        """Knollm id for an id, alias or registry spelling; unknown names map to themselves (lower-cased)."""
        low = name.strip().lower()
        return self._alias_map.get(low, low)

    def dump_provider(self, source: str) -> str:
        """The provider a dump ``models_<source>.json`` belongs to: the provider ``source``
        names, a ``[sources.*]`` subset's ``provider``, or, for ``<p>_<suffix>`` (a subset
        file such as ``featherless_best``, ``groq_manual``), the provider ``<p>``."""
        sub = self.sources.get(source)
        if sub is not None and sub.provider:
            return self.resolve(sub.provider)
        pid = self.resolve(source)
        if pid in self.providers or source in self.sources:
            return pid
        head = source
        while "_" in head:
            head = head.rsplit("_", 1)[0]
            if self.resolve(head) in self.providers:
                return self.resolve(head)
        return pid

    def find(self, name: str) -> ProviderEntry | None:
        return self.providers.get(self.resolve(name))

    def get(self, name: str) -> ProviderEntry:
        p = self.find(name)
        if p is None:
            import difflib

            raise NotFoundError("provider", name, difflib.get_close_matches(name.lower(), list(self.providers), n=5))
        return p

    def resolve_litellm(self, litellm_provider: str) -> str:
        """Knollm id for a LiteLLM ``litellm_provider`` value."""
        low = litellm_provider.lower()
        hit = self._alias_map.get(low)
        if hit is not None:
            return hit
        if low.startswith("vertex_ai"):
            return self.resolve("vertex_ai")
        return low.replace("_", "-")

    def by_models_dev(self) -> dict[str, str]:
        return {p.models_dev: p.id for p in self.providers.values() if p.models_dev}

    def by_genai_prices(self) -> dict[str, str]:
        return {p.genai_prices: p.id for p in self.providers.values() if p.genai_prices}


def format_validation_error(e: ValidationError) -> str:
    """A pydantic error as one line: up to 8 ``location: message`` parts."""
    parts = []
    for err in e.errors()[:8]:
        loc = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg')}")
    more = f" (+{len(e.errors()) - 8} more)" if len(e.errors()) > 8 else ""
    return "; ".join(parts) + more


def parse_provider_registry(data: Any, path: str = "<registry>") -> ProviderRegistry:
    """Validate a parsed TOML document; errors name ``path`` and the key."""
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: not a TOML table")
    extra = set(data) - {"fetch", "providers", "sources"}
    if extra:
        raise RegistryError(f"{path}: unknown top-level key(s): {', '.join(sorted(extra))}")
    provs = data.get("providers")
    if not isinstance(provs, dict) or not provs:
        raise RegistryError(f"{path}: no [providers.<id>] tables")
    doc: dict[str, Any] = {"path": str(path), "fetch": data.get("fetch", {}), "providers": {}, "sources": {}}
    for section in ("providers", "sources"):
        for pid, spec in (data.get(section) or {}).items():
            if not isinstance(spec, dict):
                raise RegistryError(f"{path}: {section}.{pid}: must be a table")
            doc[section][pid] = {"id": pid, **spec}
    try:
        return ProviderRegistry.model_validate(doc)
    except ValidationError as e:
        raise RegistryError(f"{path}: invalid provider registry: {format_validation_error(e)}") from None


def load_provider_registry(path: str | Path) -> ProviderRegistry:
    """Load and validate a registry file; :class:`RegistryError` names the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise RegistryError(f"{path}: cannot read provider registry: {e.strerror or e}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RegistryError(f"{path}: not valid TOML: {e}") from None
    return parse_provider_registry(data, str(path))


@cache
def provider_registry() -> ProviderRegistry:
    """The packaged registry (cached)."""
    return load_provider_registry(DEFAULT_REGISTRY)
