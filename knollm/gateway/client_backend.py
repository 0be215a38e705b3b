"""The production :class:`~knollm.gateway.backend.Backend`: :class:`knollm.AsyncClient`.

Also maps the client's errors (:class:`knollm.errors.ClientError` and its subclasses) to
HTTP statuses and OpenAI error types (:func:`map_client_error`).
"""

from __future__ import annotations

from typing import Any

from knollm.errors import GatewayError, KnollmError

__all__ = ["ClientBackend", "map_client_error"]


def _names(exc: BaseException) -> set[str]:
    return {c.__name__ for c in type(exc).__mro__}


def map_client_error(exc: KnollmError) -> GatewayError:
    """A client error as the gateway error sent back (status, ``error.type``, code)."""
    names = _names(exc)
    msg = str(exc)
    if "BudgetExceeded" in names:
        return GatewayError(msg, status=429, type="insufficient_quota", code="budget_exceeded")
    if "NotFoundError" in names:
        return GatewayError(msg, status=404, type="not_found_error", code="model_not_found")
    if "NoCandidates" in names:
        return GatewayError(msg, status=400, type="invalid_request_error", code="no_candidates")
    if "StreamInterrupted" in names:
        return GatewayError(msg, status=502, type="upstream_error", code="stream_interrupted")
    last = getattr(exc, "last", None) if "AllAttemptsFailed" in names else exc
    status = getattr(last, "status", None)
    kind = str(getattr(last, "kind", "") or "")
    if "AllAttemptsFailed" in names or "ProviderError" in names:
        if status in (400, 413, 422) or kind in ("bad_request", "context_length"):
            return GatewayError(msg, status=400, type="invalid_request_error", code=kind or "upstream_bad_request")
        if status == 429:
            return GatewayError(msg, status=429, type="rate_limit_error", code="upstream_rate_limited")
        if kind == "timeout":
            return GatewayError(msg, status=504, type="timeout", code="upstream_timeout")
        return GatewayError(msg, status=502, type="upstream_error", code=kind or "upstream_error")
    if "CatalogError" in names or "RegistryError" in names:
        return GatewayError(msg, status=503, type="server_error", code="catalog_unavailable")
    return GatewayError(msg, status=500, type="server_error", code=type(exc).__name__)


class ClientBackend:  # filled in when the client lands
    pass
