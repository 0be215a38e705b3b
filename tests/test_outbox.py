"""The event loop's outbox (knollm.client.outbox): a turn's writes leave together at the
start of the next turn, one send per transport, and the h1 driver's requests and the
gateway's answers go through it."""

from __future__ import annotations

import asyncio

from knollm.client.outbox import Outbox


class Transport:
    def __init__(self, log: list, name: str, fail: bool = False) -> None:
        self.log, self.name, self.fail = log, name, fail
        self.closing = self.aborted = False

    def write(self, data: bytes) -> None:
        if self.fail:
            raise RuntimeError("broken pipe")
        self.log.append((self.name, data))

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.aborted = self.closing = True


def test_a_turns_writes_leave_together_in_first_write_order_one_send_per_transport():
    async def go():
        log: list = []
        box = Outbox.of(asyncio.get_running_loop())
        a, b, c = Transport(log, "a"), Transport(log, "b"), Transport(log, "c")
        box.write(b, b"b1")
        box.write(a, b"a1")
        box.write(b, b"b2")
        box.write(c, b"c1")
        assert log == [] and box.size(b) == 4 and box.size(a) == 2
        await asyncio.sleep(0)
        assert log == [("b", b"b1b2"), ("a", b"a1"), ("c", b"c1")]
        box.write(a, b"a2")  # the next turn's writes: a new flush
        await asyncio.sleep(0)
        assert log[-1] == ("a", b"a2") and len(log) == 4

    asyncio.run(go())


def test_a_closed_or_broken_transport_never_keeps_the_others_writes():
    async def go():
        log: list = []
        box = Outbox.of(asyncio.get_running_loop())
        closed, broken, fine = Transport(log, "closed"), Transport(log, "broken", fail=True), Transport(log, "fine")
        box.write(closed, b"x")
        box.write(broken, b"y")
        box.write(fine, b"z")
        closed.closing = True
        await asyncio.sleep(0)
        assert log == [("fine", b"z")]
        assert broken.aborted and not closed.aborted  # its reader sees the connection end

    asyncio.run(go())


def test_take_removes_what_is_queued_for_one_transport():
    async def go():
        log: list = []
        box = Outbox.of(asyncio.get_running_loop())
        a, b = Transport(log, "a"), Transport(log, "b")
        box.write(a, b"1")
        box.write(a, b"2")
        box.write(b, b"3")
        assert box.take(a) == b"12" and box.take(a) == b""
        await asyncio.sleep(0)
        assert log == [("b", b"3")]

    asyncio.run(go())


def test_each_loop_has_its_own_outbox():
    seen = []

    async def go():
        box = Outbox.of(asyncio.get_running_loop())
        assert Outbox.of(asyncio.get_running_loop()) is box
        seen.append(box)

    asyncio.run(go())
    asyncio.run(go())
    assert seen[0] is not seen[1] and seen[1].loop is not seen[0].loop


def test_the_h1_drivers_concurrent_requests_leave_in_one_flush(monkeypatch):
    """Requests started in the same turn are written together: one flush carries all of
    them (each on its own connection), and every answer still arrives."""
    from knollm.client.h1 import AsyncH1

    flushes: list[int] = []
    real = Outbox.flush

    def flush(self):
        flushes.append(len(self.pending))
        real(self)

    monkeypatch.setattr(Outbox, "flush", flush)
    answers = 0

    async def handle(reader, writer):
        nonlocal answers
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            answers += 1
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
            await writer.drain()

    async def go():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        d = AsyncH1(16)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        try:
            for _ in range(2):  # the first round opens the connections; the second reuses them
                flushes.clear()
                replies = await asyncio.gather(*[d.post(url, {}, {"model": "m"}, 5.0, 5.0) for _ in range(8)])
                assert [r.text for r in replies] == ["{}"] * 8
            return list(flushes)
        finally:
            await d.aclose()
            server.close()

    second = asyncio.run(go())
    assert answers == 16
    assert second == [8]  # eight requests on eight kept-alive connections, one flush
