"""Which async HTTP driver an :class:`~knollm.client.AsyncClient` uses (``http=``); the
drivers themselves are in :mod:`knollm.client.http` and :mod:`knollm.client.h1`."""

from __future__ import annotations

from typing import Any

from knollm.client.h1 import AsyncH1
from knollm.client.http import AsyncAiohttp, AsyncHTTPX2

__all__ = ["async_driver"]


def async_driver(name: str, max_connections: int) -> Any:
    """The async driver called ``name``. ``auto``: ``h1`` (:mod:`knollm.client.h1`) when
    httptools is importable, else aiohttp when importable, else httpx2."""
    if name not in ("auto", "h1", "aiohttp", "httpx2"):
        raise ValueError(f"http must be 'auto', 'h1', 'aiohttp' or 'httpx2', not {name!r}")
    if name in ("auto", "h1"):
        try:
            import httptools  # noqa: F401
        except ImportError:
            if name == "h1":
                raise ValueError("http='h1' needs httptools: pip install 'knollm[gateway]'") from None
        else:
            return AsyncH1(max_connections)
    if name in ("auto", "aiohttp"):
        try:
            import aiohttp  # noqa: F401
        except ImportError:
            if name == "aiohttp":
                raise ValueError("http='aiohttp' needs aiohttp: pip install 'knollm[gateway]'") from None
        else:
            return AsyncAiohttp(max_connections)
    return AsyncHTTPX2(max_connections)
