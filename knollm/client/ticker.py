"""Coarse time limits for many waits at once: one timer per event loop, not one per wait.

A gateway under load waits on hundreds of things a second that may time out (a request's
time limit, each read of an upstream answer). An asyncio timer per wait (``call_later``
and its ``cancel``) costs about 2 µs, more than the rest of the bookkeeping around the
wait; a :class:`Ticker` checks the live waits of its loop together every :attr:`TICK`
seconds instead, so a limit fires at most that late.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

__all__ = ["Ticker", "Timed"]


class Timed(Protocol):
    def tick(self, now: float) -> bool:
        """Called every tick while registered, ``now`` being the loop's time: fire if the
        limit has passed, and say whether the wait is over (it is then dropped)."""


class Ticker:
    """The registered waits of one event loop, and the one timer that ticks them (it runs
    while any is registered). Register with ``Ticker.of(loop).live.add(w)`` at each wait,
    never keeping a ticker: an idle one leaves its loop, the next wait starts another."""

    TICK = 0.1
    _of_loop: dict[int, Ticker] = {}  # id(loop) -> its ticker, while it has waits

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.live: set[Any] = set()

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> Ticker:
        t = cls._of_loop.get(id(loop))
        if t is None or t.loop is not loop:
            t = cls._of_loop[id(loop)] = cls(loop)
            loop.call_later(cls.TICK, t._tick)
        return t

    @classmethod
    def current(cls, loop: asyncio.AbstractEventLoop) -> Ticker | None:
        """``loop``'s ticker while it has waits (None: it has none), without starting one."""
        t = cls._of_loop.get(id(loop))
        return t if t is not None and t.loop is loop else None

    def _tick(self) -> None:
        now = self.loop.time()
        for w in [w for w in self.live if w.tick(now)]:
            self.live.discard(w)
        if self.live:
            self.loop.call_later(self.TICK, self._tick)
        elif self._of_loop.get(id(self.loop)) is self:
            del self._of_loop[id(self.loop)]
