"""``knollm serve``: an OpenAI- and Anthropic-compatible HTTP gateway over the Knollm client.

Modules: :mod:`~knollm.gateway.app` (the Starlette app), :mod:`~knollm.gateway.translate`
(validation, Anthropic <-> OpenAI), :mod:`~knollm.gateway.responses` (the Responses API),
:mod:`~knollm.gateway.completions` (legacy completions), :mod:`~knollm.gateway.keys` (gateway keys),
:mod:`~knollm.gateway.db` (SQLite / PostgreSQL), :mod:`~knollm.gateway.metrics`
(Prometheus text), :mod:`~knollm.gateway.client_backend` (the client adapter),
:mod:`~knollm.gateway.server` (uvicorn). Imported lazily: ``import knollm`` never loads it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "GatewayConfig", "KeyStore", "serve"]


def __getattr__(name: str) -> Any:
    if name in ("create_app", "GatewayConfig"):
        from knollm.gateway import app

        return getattr(app, name)
    if name == "KeyStore":
        from knollm.gateway.keys import KeyStore

        return KeyStore
    if name == "serve":
        from knollm.gateway.server import serve

        return serve
    raise AttributeError(name)
