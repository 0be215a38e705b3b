"""What the gateway app needs from the thing that actually calls models.

The app speaks OpenAI chat-completions dicts on both sides; a :class:`Backend` routes
them (aliases, fallback, budgets, ledger) and says which provider/model served the call,
what it cost and how many attempts it took (:class:`Outcome`). The production backend
is :class:`knollm.gateway.client_backend.ClientBackend` over :class:`knollm.AsyncClient`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Protocol

__all__ = ["Backend", "BackendStream", "Outcome"]


@dataclass
class Outcome:
    """What a served (or failed) call did. ``cost_usd`` is None when unpriced (never 0
    for unknown; ``unpriced_reason`` then says why)."""

    provider: str | None = None
    model: str | None = None
    cost_usd: float | None = None
    price_source: str | None = None
    unpriced_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    attempts: list[dict[str, Any]] = field(default_factory=list)
    ttft_s: float | None = None
    duration_s: float | None = None
    served: bool = False  # True once the call finished and was recorded in the ledger
    interrupted: bool = False  # a stream cut after its output started: charged what the provider bills
    request_id: str | None = None  # the call's ledger row (``knollm usage --request-id``); None: no row

    @property
    def billed_usd(self) -> float | None:
        """What the request cost: the call that served it (answered or interrupted), plus
        every failed attempt the provider bills all the same (``attempts[i]["charged"]``:
        an answer whose body was cut); 0 when nothing was billed; None when a part is unpriced."""
        total = 0.0
        if self.served:
            if self.cost_usd is None:
                return None
            total = self.cost_usd
        for a in self.attempts:
            ch = a.get("charged")
            if ch:
                if ch["cost_usd"] is None:
                    return None
                total += ch["cost_usd"]
        return total

    @property
    def cost_header(self) -> str:
        c = self.billed_usd
        return "unknown" if c is None else format(c, ".10f").rstrip("0").rstrip(".") or "0"


class BackendStream(Protocol):
    """An async iterator of batches (lists) of OpenAI ``chat.completion.chunk`` dicts, one
    batch per upstream read, which the gateway writes to its client in one piece; the last
    batch ends with the usage chunk (no ``choices``). ``outcome`` says who is serving once
    the first batch is out, and the cost once the iterator is exhausted."""

    outcome: Outcome

    def __aiter__(self) -> AsyncIterator[list[dict[str, Any]]]: ...

    async def __anext__(self) -> list[dict[str, Any]]: ...

    async def aclose(self) -> None: ...


class Backend(Protocol):
    """``tag`` names the caller (``key:<gateway key name>``, None without a key); the
    backend records it on the call's ledger row."""

    async def complete(self, body: dict[str, Any], *, targets: list[str], tag: str | None = None
                       ) -> tuple[dict[str, Any], Outcome]:
        """A non-streamed OpenAI chat completion for ``body`` routed over ``targets``."""

    def stream(self, body: dict[str, Any], *, targets: list[str], tag: str | None = None) -> BackendStream:
        """A streamed completion; errors before the first batch raise from ``__anext__``."""

    async def models(self) -> list[dict[str, Any]]:
        """OpenAI ``model`` objects: aliases and the catalog models whose provider has a key."""

    async def embed(self, body: dict[str, Any], *, targets: list[str], tag: str | None = None
                    ) -> tuple[dict[str, Any], Outcome]:
        """An OpenAI embeddings response for a checked embeddings ``body`` (``input`` a list,
        ``encoding_format``, maybe ``dimensions``)."""

    def worst_case_usd(self, body: dict[str, Any], targets: list[str], op: str = "chat") -> float | None:
        """An upper bound of the call's cost (for gateway-key budgets); None if unknown.
        ``op="embed"``: ``body`` is an embeddings body."""

    async def count_tokens(self, body: dict[str, Any], *, targets: list[str], native: dict[str, Any] | None = None
                           ) -> tuple[dict[str, Any], Outcome]:
        """``{"input_tokens": N, "knollm": {"source": "provider" | "estimate", ...}}`` for
        ``body`` on the deployment that would serve it (``native``: the caller's Anthropic body)."""

    async def aclose(self) -> None: ...
