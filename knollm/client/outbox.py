"""The writes of one event-loop turn, sent together at the start of the next.

A gateway under load serves many requests in one turn of its event loop, and in between
each one does tens of microseconds of work. Written as soon as each is ready, every
request to an upstream and every answer to a caller leaves alone: each send wakes the
process at the other end for one message, and each wake-up costs both sides (a sleeping
process woken by another CPU, its event loop turning for one socket). Sent together, the
turn's messages leave within microseconds of each other and the other end reads them in
one wake-up.

Measured against the gateway without it, in the same rounds (3,000 json requests a
measurement at concurrency 64, an A/B script): throughput after/before per round, median
1.04 to 1.13 in three runs, the upstream's CPU per request 5-8 µs lower; two identical
gateways measured the same way read 1.02. A few percent, at the edge of what a shared
2-core machine resolves (see the gateway's performance docs).

One turn's writes to one transport leave in one send (uvicorn writes an answer's head and
body apart). The cost: a write waits for the end of the turn (one loop hop when nothing
else runs).
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Outbox"]


class Outbox:
    """The pending writes of one event loop: :meth:`write` queues ``data`` for a transport;
    the loop's next turn sends every transport's queue, in the order they were first
    written to, each in one ``transport.write``. Use ``Outbox.of(loop)``."""

    _of_loop: dict[int, Outbox] = {}  # id(loop) -> its outbox

    __slots__ = ("loop", "pending")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: dict[Any, list[bytes]] = {}

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> Outbox:
        box = cls._of_loop.get(id(loop))
        if box is None or box.loop is not loop:
            if len(cls._of_loop) > 64:  # loops come and go (tests, asyncio.run): forget closed ones
                for k in [k for k, b in list(cls._of_loop.items()) if b.loop.is_closed()]:
                    del cls._of_loop[k]
            box = cls._of_loop[id(loop)] = cls(loop)
        return box

    def write(self, transport: Any, data: bytes) -> None:
        queued = self.pending.get(transport)
        if queued is not None:
            queued.append(data)
            return
        if not self.pending:
            self.loop.call_soon(self.flush)
        self.pending[transport] = [data]

    def take(self, transport: Any) -> bytes:
        """What is queued for ``transport`` (removed from the queue): a transport about to
        close sends it first."""
        queued = self.pending.pop(transport, None)
        return b"" if not queued else queued[0] if len(queued) == 1 else b"".join(queued)

    def size(self, transport: Any) -> int:
        return sum(map(len, self.pending.get(transport, ())))

    def flush(self) -> None:
        pending, self.pending = self.pending, {}
        for t, queued in pending.items():
            if t.is_closing():
                continue  # closed meanwhile: its reader sees the connection end
            try:
                t.write(queued[0] if len(queued) == 1 else b"".join(queued))
            except Exception:  # noqa: BLE001 - one broken transport never keeps the others' writes
                t.abort()
