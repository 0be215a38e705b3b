"""Knollm's exception hierarchy.

Every error Knollm raises on purpose is a :class:`KnollmError`::

    KnollmError
    ├── DumpError            a provider dump cannot be read (names the file)
    │   └── ShapeError       the JSON parsed but is none of the known shapes
    ├── RecordError          one record in a dump is unusable (names file + record)
    ├── StrictModeError      --strict and at least one warning was emitted
    ├── CatalogError         a catalog file is missing, corrupt or of another schema
    ├── NotFoundError        a provider / model / library asked for does not exist
    │                        (carries ``suggestions`` for "did you mean")
    ├── RegistryError        the provider registry file is missing or invalid (names file + key)
    ├── FilterError          a model filter is invalid (unknown sort / capability,
    │                        negative limit); also a ValueError
    ├── FetchError           refreshing a dump from a provider failed
    ├── GatewayError         a ``knollm serve`` request or setup is refused (carries the
    │                        HTTP ``status`` and OpenAI ``error.type``)
    ├── SiteError            building the site failed
    ├── LockError            a knollm.lock / user config file is unreadable or invalid
    │                        (names the file and the record)
    ├── ToolArgumentError    an MCP / advisor tool got arguments it cannot use; also a
    │                        ValueError (knollm mcp reports it as a tool error)
    ├── ProbeError           a probe / benchmark / ask run cannot start (unknown target,
    │                        announced cost above --max-cost, unpriced without consent)
    └── ClientError          calling a model through knollm.Client failed
        ├── ProviderError    one provider answered with an error (``status``, ``provider``,
        │                    ``retryable``, ``kind``)
        ├── AllAttemptsFailed every candidate failed (``attempts``, ``last``)
        ├── NoCandidates     no deployment can serve the request (``excluded``: reasons)
        │   └── BudgetExceeded  every candidate was refused by a budget
        └── StreamInterrupted a stream broke after its first token (``partial`` text)

Messages never contain API key values.
"""

from __future__ import annotations

__all__ = [
    "KnollmError",
    "DumpError",
    "ShapeError",
    "RecordError",
    "StrictModeError",
    "CatalogError",
    "NotFoundError",
    "RegistryError",
    "FilterError",
    "FetchError",
    "GatewayError",
    "SiteError",
    "LockError",
    "ToolArgumentError",
    "ProbeError",
    "ClientError",
    "ProviderError",
    "AllAttemptsFailed",
    "NoCandidates",
    "BudgetExceeded",
    "StreamInterrupted",
]


class KnollmError(Exception):
    """Base class of every error Knollm raises on purpose."""


class DumpError(KnollmError):
    """A dump file could not be read or parsed. ``path`` names the file."""

    def __init__(self, path: str, message: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


class ShapeError(DumpError):
    """The JSON parsed but is not an OpenAI list, a bare array or a keyed object."""


class RecordError(KnollmError):
    """One record of a dump is unusable; the rest of the dump still loads.

    Translators raise it with ``path=None`` (they do not know the file); the build turns it
    into a ``bad-record`` warning naming the file and the record.
    """

    def __init__(self, path: str | None, record: str | int, message: str) -> None:
        self.path = str(path) if path is not None else None
        self.record = record
        self.message = message
        super().__init__(f"{self.path} [{record}]: {message}" if path is not None else f"[{record}]: {message}")


class StrictModeError(KnollmError):
    """Raised by ``--strict`` builds when any warning was emitted."""

    def __init__(self, warnings: list[str]) -> None:
        self.warnings = list(warnings)
        head = "; ".join(self.warnings[:5])
        more = f" (+{len(self.warnings) - 5} more)" if len(self.warnings) > 5 else ""
        super().__init__(f"{len(self.warnings)} warning(s) in strict mode: {head}{more}")


class CatalogError(KnollmError):
    """A catalog file is missing, corrupt or written by an incompatible schema."""


class NotFoundError(KnollmError):
    """A provider, model or library that was asked for does not exist."""

    def __init__(self, kind: str, name: str, suggestions: list[str] | None = None) -> None:
        self.kind = kind
        self.name = name
        self.suggestions = list(suggestions or [])
        msg = f"unknown {kind}: {name!r}"
        if self.suggestions:
            msg += "; did you mean " + ", ".join(repr(s) for s in self.suggestions) + "?"
        super().__init__(msg)


class RegistryError(KnollmError):
    """The provider registry (``knollm/data/providers.toml`` or a ``--providers`` file) is
    missing or invalid; the message names the file and the key."""


class FilterError(KnollmError, ValueError):
    """A model filter (:class:`knollm.query.filters.Filters`) is invalid."""


class FetchError(KnollmError):
    """Fetching a provider's model list failed. Never includes key values."""


class GatewayError(KnollmError):
    """``knollm serve`` refused a request or a setup (bad request, unknown or revoked
    gateway key, model not allowed, rate limit, budget, non-loopback bind without keys).
    ``status`` is the HTTP status and ``type`` the OpenAI ``error.type`` sent back;
    the message never contains a key value."""

    def __init__(self, message: str, *, status: int = 400, type: str = "invalid_request_error",
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.type = type
        self.code = code
        self.headers = dict(headers or {})
        super().__init__(message)


class SiteError(KnollmError):
    """Building the static site failed."""


class LockError(KnollmError):
    """A lockfile or user config is missing, unparsable or invalid. ``path`` names the file,
    ``record`` the profile/binding/pin at fault (if any)."""

    def __init__(self, path: str, message: str, record: str | None = None) -> None:
        self.path = str(path)
        self.record = record
        where = f"{self.path} [{record}]" if record else self.path
        super().__init__(f"{where}: {message}")


class ToolArgumentError(KnollmError, ValueError):
    """A Knollm tool (``knollm mcp``, the advisor) was called with arguments it cannot use;
    the message says which and why."""


class ProbeError(KnollmError):
    """A probe, benchmark or ``ask`` run cannot start; nothing was spent."""


class ClientError(KnollmError):
    """Calling a model through :class:`knollm.Client` failed. Never includes key values."""


class ProviderError(ClientError):
    """One provider answered with an error (or an unusable answer).

    ``kind``: ``rate_limit``, ``server``, ``timeout``, ``connection``, ``auth``,
    ``context_length``, ``bad_request``, ``not_found``, ``bad_response``; ``closed`` (an
    attempt's record when the caller stopped reading a stream).
    """

    def __init__(self, message: str, *, provider: str | None = None, status: int | None = None,
                 retryable: bool = False, kind: str = "bad_response", retry_after: float | None = None) -> None:
        self.provider = provider
        self.status = status
        self.retryable = retryable
        self.kind = kind
        self.retry_after = retry_after
        where = f"{provider}: " if provider else ""
        code = f"HTTP {status}: " if status else ""
        super().__init__(f"{where}{code}{message}")


class NoCandidates(ClientError):
    """No deployment can serve the request; ``excluded`` lists each candidate and why."""

    def __init__(self, target: object, excluded: list[dict] | None = None, message: str | None = None) -> None:
        self.target = target
        self.excluded = list(excluded or [])
        why = "; ".join(f"{e.get('deployment')}: {e.get('reason')}" for e in self.excluded[:6])
        super().__init__(message or f"no provider can serve {target!r}" + (f" ({why})" if why else ""))


class BudgetExceeded(NoCandidates):
    """Every candidate was refused because a budget would be exceeded."""


class AllAttemptsFailed(ClientError):
    """Every candidate (and its retries) failed; ``attempts`` has one dict per attempt."""

    def __init__(self, target: object, attempts: list[dict], last: BaseException | None = None) -> None:
        self.target = target
        self.attempts = list(attempts)
        self.last = last
        super().__init__(f"all {len(self.attempts)} attempt(s) for {target!r} failed; last: {last}")


class StreamInterrupted(ClientError):
    """A stream stalled or broke after its first token. ``partial`` is the text received
    (already yielded to the caller; it is not repeated by a fallback). ``row`` is what the
    call was charged: its ledger row (``outcome`` ``interrupted``: tokens, ``cost_usd``,
    ``usage_estimated``), set even when the client keeps no ledger."""

    def __init__(self, message: str, partial: str = "", provider: str | None = None,
                 attempts: list[dict] | None = None) -> None:
        self.partial = partial
        self.provider = provider
        self.attempts = list(attempts or [])
        self.row: dict | None = None
        super().__init__(f"{provider + ': ' if provider else ''}{message} after {len(partial)} chars of output")
