"""Drive a :class:`knollm.AsyncClient` from synchronous tests, so one fault-matrix test
checks ``Client`` and ``AsyncClient`` over each HTTP driver (``httpx2``, ``aiohttp``).

``AsyncFacade(http="aiohttp", **client_kwargs)`` has the sync client's surface:
``chat(…)``, ``chat.completions.create(…)``, ``embed(…)``, ``embeddings.create(…)`` and ``stream(…)`` (a generator that advances
the async stream one item at a time, so partial output before an error is observable;
``close()`` / ``with`` stop it through ``aclose()``).
Every call runs on the facade's own event loop; ``close()`` closes the client and loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Iterator

__all__ = ["AsyncFacade", "DRIVERS", "Drivers", "every_driver"]

# what a driver-parametrized test runs on: the sync Client, then AsyncClient over each driver
DRIVERS = ["sync", "async-h1", "async-aiohttp", "async-httpx2"]


class Drivers:
    """A test module's current driver (one of :data:`DRIVERS`) and the clients it made.

    In the module: ``D = Drivers()``; an autouse fixture does ``with D.using(request.param):
    yield``; ``D.client(**client_kwargs)`` makes the ``Client`` or ``AsyncFacade`` it
    names, closed when the test ends."""

    def __init__(self) -> None:
        self.current = "sync"
        self._open: list[Any] = []

    @contextlib.contextmanager
    def using(self, name: str) -> Iterator[str]:
        self.current = name
        try:
            yield name
        finally:
            while self._open:
                self._open.pop().close()
            self.current = "sync"

    def client(self, **kwargs: Any) -> Any:
        if self.current == "sync":
            from knollm import Client

            c = Client(**kwargs)
        else:
            c = AsyncFacade(http=self.current.split("-", 1)[1], **kwargs)
        self._open.append(c)
        return c


def every_driver(drivers: Drivers) -> Any:
    """The autouse fixture that runs every test of a module on each of :data:`DRIVERS`:
    ``driver = every_driver(_D)`` at module level."""
    import pytest

    @pytest.fixture(autouse=True, params=DRIVERS)
    def driver(request: Any) -> Iterator[str]:
        with drivers.using(request.param) as name:
            yield name

    return driver


class AsyncFacade:
    def __init__(self, **kwargs: Any) -> None:
        from knollm import AsyncClient

        self.loop = asyncio.new_event_loop()
        self.client = AsyncClient(**kwargs)
        self.chat = _Chat(self)
        self.embeddings = _Embeddings(self)

    def embed(self, target: Any, input: Any, **params: Any) -> Any:  # noqa: A002
        return self.run(self.client.embed(target, input, **params))

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def iterate(self, aiterable: Any) -> Iterator[Any]:
        it = aiterable.__aiter__()

        async def step() -> Any:  # __anext__ called inside the loop, as `async for` does: the loop
            return await it.__anext__()  # then finalizes an async generator left unfinished

        while True:
            try:
                yield self.run(step())
            except StopAsyncIteration:
                return

    def stream(self, target: Any, messages: list[dict], **params: Any) -> _Stream:
        return _Stream(self, self.client.stream(target, messages, **params))

    def close(self) -> None:
        if not self.loop.is_closed():
            self.run(self.client.aclose())
            self.loop.close()

    def __getattr__(self, name: str) -> Any:  # router, store, plan, settings, http, …
        return getattr(self.client, name)


class _Chat:
    def __init__(self, facade: AsyncFacade) -> None:
        self._f = facade
        self.completions = self

    def __call__(self, target: Any, messages: list[dict], **params: Any) -> Any:
        return self._f.run(self._f.client.chat(target, messages, **params))

    def create(self, **kwargs: Any) -> Any:
        out = self._f.run(self._f.client.chat.completions.create(**kwargs))
        return self._f.iterate(out) if hasattr(out, "__aiter__") else out


class _Embeddings:
    def __init__(self, facade: AsyncFacade) -> None:
        self._f = facade

    def create(self, **kwargs: Any) -> Any:
        return self._f.run(self._f.client.embeddings.create(**kwargs))


class _Stream:
    """An :class:`~knollm.client.core.AsyncChatStream` seen synchronously (``serving``,
    ``attempts``, ``result`` read through)."""

    def __init__(self, facade: AsyncFacade, stream: Any) -> None:
        self._f, self._s = facade, stream

    def __iter__(self) -> Iterator[Any]:
        return self._f.iterate(self._s)

    def events(self) -> Iterator[Any]:
        return self._f.iterate(self._s.events())

    def close(self) -> None:
        self._f.run(self._s.aclose())

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s, name)
