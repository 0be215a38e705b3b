"""The sync Client keeps a streamed answer's connection: after the payload's end marker
(``data: [DONE]``) it reads the rest of the chunked body, its terminating chunk, so the
connection goes back to the pool, as the openai SDK reads a stream to its end (before, it
left at the marker and the connection was closed: every streamed call paid a new TCP and
TLS setup). A body that goes on for more than 64 KiB after the marker is cut instead, and
the answer is whole either way. Against a real loopback HTTP/1.1 server whose streams are
chunked SSE on kept-alive connections, its terminating chunk sent in a later write than the
marker, as a provider's often arrives in a later packet."""

from __future__ import annotations

from typing import Any

import pytest

from knollm import AsyncClient, Client
from knollm.client import SQLiteStore
from knollm.query.api import Catalog
from tests.support.chunked_sse import ChunkedSSEServer
from tests.support.client_fixtures import catalog, model

MSG = [{"role": "user", "content": "hi"}]
TARGET = "groq/llama-3.3-70b-versatile"


@pytest.fixture
def server():
    s = ChunkedSSEServer(end_delay_s=0.03)  # the body's end in a later packet than the marker
    yield s
    s.stop()


def _client(server: ChunkedSSEServer, tmp_path: Any, cls: type = Client) -> Any:
    cat = catalog(model("groq", "llama-3.3-70b-versatile"))
    return cls(catalog=Catalog(cat), env={"KNOLLM_GROQ_BASE_URL": server.base_url, "GROQ_API_KEY": "gsk_ka_1111"},
               store=SQLiteStore(tmp_path / "l.db"))


def test_sync_streams_reuse_their_connection(server, tmp_path):
    with _client(server, tmp_path) as c:
        for _ in range(3):
            items = list(c.stream(TARGET, MSG))
            assert "".join(items[:-1]) == "Hello there" and items[-1].usage.output_tokens == 2
    assert server.connections == 1


def test_a_body_that_goes_on_after_the_marker_is_cut_and_the_answer_is_whole(server, tmp_path):
    """More than 64 KiB after [DONE]: not read to its end; the connection is closed (the
    next call opens another), the answer and its usage as sent."""
    server.trailer = b": keep-alive comment\n" * 5000  # ~105 KB
    with _client(server, tmp_path) as c:
        for _ in range(2):
            items = list(c.stream(TARGET, MSG))
            assert "".join(items[:-1]) == "Hello there" and items[-1].usage.input_tokens == 5
    assert server.connections == 2


def test_async_streams_reuse_their_connection_too(server, tmp_path):
    import asyncio

    async def go():
        c = _client(server, tmp_path, AsyncClient)
        try:
            for _ in range(3):
                items = [x async for x in c.stream(TARGET, MSG)]
                assert "".join(items[:-1]) == "Hello there"
                await asyncio.sleep(0.06)  # the body's end arrives after the marker: h1 keeps it then
        finally:
            await c.aclose()

    asyncio.run(go())
    assert server.connections == 1
