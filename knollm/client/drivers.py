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
    import importlib

    if name not in ("auto", "h1", "aiohttp", "httpx2"):
        raise ValueError(f"http must be 'auto', 'h1', 'aiohttp' or 'httpx2', not {name!r}")
    for driver, module, cls in (("h1", "httptools", AsyncH1), ("aiohttp", "aiohttp", AsyncAiohttp)):
        if name not in ("auto", driver):
            continue
        try:
            importlib.import_module(module)
        except ImportError:
            if name == driver:
                raise ValueError(f"http={driver!r} needs {module}: install Knollm's gateway extra "
                                 "(pip install -e '.[gateway]' in the Knollm checkout)") from None
        else:
            return cls(max_connections)
    return AsyncHTTPX2(max_connections)
