"""``knollm mcp``: the SDK's own client over stdio against the real ``knollm mcp`` process.
Every tool is listed and called, and its result is checked against the Python API on the
same catalog (same dumps, same cache dir); bad arguments are tool errors, not crashes."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("mcp", reason="the MCP SDK (extra knollm[mcp]) is not installed")

from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402

from knollm.lock import load_lock  # noqa: E402
from knollm.mcp.tools import TOOL_NAMES, WRITING_TOOLS  # noqa: E402
from knollm.query.api import Catalog  # noqa: E402
from knollm.query.cost import Workload, cost_rows, estimate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "dumps"


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(PYTHONPATH=str(ROOT), KNOLLM_CONFIG=str(tmp_path / "no-config.toml"), KNOLLM_HOME=str(tmp_path / "home"))
    env.pop("KNOLLM_LOCK", None)
    return env


def _server(dumps: Path, lock: Path, tmp_path: Path) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable,
                                 args=["-m", "knollm", "mcp", "--dumps", str(dumps), "--lock", str(lock)],
                                 env=_env(tmp_path), cwd=str(tmp_path))


def _data(r) -> dict:
    assert not r.is_error, r.content[0].text
    return json.loads(r.content[0].text)


def _check_views(models: list[dict], data_date: str) -> None:
    for m in models:
        assert m["data_date"] == data_date
        for f in ("prices.input", "prices.output"):
            if (m["prices"] or {}).get(f.split(".")[1]) is not None:
                assert m["sources"].get(f), (m["key"], f)


def test_every_tool_over_stdio_matches_the_python_api(tmp_path, monkeypatch):
    monkeypatch.setenv("KNOLLM_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("KNOLLM_HOME", str(tmp_path / "home"))
    cat = Catalog.load(dumps=FIXTURES)     # the same cache dir as the server (KNOLLM_CACHE_DIR)
    dd = cat.data["data_date"]
    lock = tmp_path / "knollm.lock"
    called: set[str] = set()

    async def main():
        async with Client(_server(FIXTURES, lock, tmp_path)) as c:
            listed = (await c.list_tools()).tools
            assert [t.name for t in listed] == list(TOOL_NAMES)
            for t in listed:
                assert t.annotations.read_only_hint is (t.name not in WRITING_TOOLS)
                assert t.description and t.input_schema["type"] == "object"
            create = next(t for t in listed if t.name == "create_lockfile_binding")
            assert create.input_schema["properties"]["confirm"]["default"] is False

            async def call(name, args):
                called.add(name)
                return _data(await c.call_tool(name, args))

            # search_models: the Filters semantics of the API
            r = await call("search_models", {"capabilities": ["tools"], "max_input_price": 1.0, "sort": "price",
                                             "limit": 5})
            api = cat.search(capabilities=["tools"], max_input_price=1.0, sort="price")
            assert r["count"] == len(api) and [m["key"] for m in r["models"]] == [m["key"] for m in api[:5]]
            assert r["data_date"] == dd and {s["name"] for s in r["catalog_sources"]} >= {"genai-prices", "models.dev"}
            _check_views(r["models"], dd)

            r = await call("get_provider_models", {"provider": "groq"})
            assert r["provider"]["id"] == "groq" and r["count"] == len(cat.provider_models("groq"))

            key = api[0]["key"]
            r = await call("get_model", {"key": key})
            assert r["model"] == json.loads(json.dumps(cat.model(key)))

            # where_is: the API's offers, cheapest paid first
            canon = "llama-3.3-70b-instruct"
            r = await call("where_is", {"model": canon})
            offers = [m for m in cat.where(canon) if not m.get("deprecated")]
            assert sorted(o["key"] for o in r["offers"]) == sorted(m["key"] for m in offers)
            paid = [o for o in r["offers"] if (o["prices"].get("input") or 0) + (o["prices"].get("output") or 0) > 0
                    and "input" in o["prices"] and "output" in o["prices"]]
            assert r["offers"][: len(paid)] == paid and len(paid) >= 2
            totals = [o["prices"]["input"] + o["prices"]["output"] for o in paid]
            assert totals == sorted(totals)

            two = [paid[0]["key"], paid[-1]["key"]]
            w = {"input_tokens": 2000, "output_tokens": 500, "requests": 1000}
            r = await call("compare_models", {"models": two, "workload": w})
            for row, k in zip(r["models"], two):
                assert row["cost"] == estimate(cat.model(k), Workload(2000, 500, 0, 1000))

            from knollm.query.recommend import recommend

            r = await call("recommend_for_use_case", {"use_case": "coding", "budget": 2.0, "needs": ["tools"]})
            api_rec = recommend(cat, "coding", budget=2.0, needs=["tools"], limit=5)
            assert [x["key"] for x in r["results"]] == [x["key"] for x in api_rec["results"]]
            assert all(x["cost_per_1k_requests"] <= 2.0 for x in r["results"]) and r["results"]
            _check_views([x["model"] for x in r["results"]], dd)

            unknown_price = next(m["key"] for m in cat.models if (m.get("prices") or {}).get("input") is None)
            r = await call("get_cost_analysis", {"models": two + [unknown_price], "usage": {**w, "requests": "10k"}})
            rows = cost_rows([cat.model(k) for k in two], Workload(2000, 500, 0, 10_000))
            assert [(x["key"], x["total"]) for x in r["costs"]] == [(x["key"], x["total"]) for x in rows]
            assert [u["key"] for u in r["unknown"]] == [unknown_price]   # listed, never $0

            # create_lockfile_binding: a diff without confirm, a write with it
            args = {"alias": "fast", "models": two, "requires": {"tools": True}}
            r = await call("create_lockfile_binding", args)
            assert r["written"] is False and "+alias = \"fast\"" in r["diff"] and not lock.exists()
            r = await call("create_lockfile_binding", {**args, "confirm": True})
            assert r["written"] is True and load_lock(lock).bindings("default")["fast"].models == two

            r = await call("validate_lockfile", {})
            from knollm.lock.ops import validate
            from knollm.mcp.tools import KnollmTools

            api_issues = validate(load_lock(lock), KnollmTools(cat, lock=lock).chooser())
            assert [i["code"] for i in r["issues"]] == [i["code"] for i in api_issues]
            assert r["exit_code"] == 1 and "no_key" in {i["code"] for i in r["issues"]}

            from knollm.libraries.query import list_libraries, recommend as recommend_libs

            r = await call("list_libraries", {})
            assert [x["slug"] for x in r["libraries"]] == [x.slug for x in list_libraries()]
            r = await call("recommend_library", {"needs": ["async", "streaming"]})
            assert [x["slug"] for x in r["libraries"]] == [x.row.slug for x in recommend_libs(["async", "streaming"])]
            assert all(x["features"]["async"]["value"] is True for x in r["libraries"])

            # resources
            res = {str(x.uri) for x in (await c.list_resources()).resources}
            assert res == {"knollm://schema", "knollm://providers", "knollm://lockfile"}
            schema = json.loads((await c.read_resource("knollm://schema")).contents[0].text)
            assert "models" in json.dumps(schema)
            provs = json.loads((await c.read_resource("knollm://providers")).contents[0].text)
            assert len(provs["providers"]) == len(cat.providers)
            text = (await c.read_resource("knollm://lockfile")).contents[0].text
            assert text == lock.read_text()

            # bad arguments: tool errors, and the server keeps answering
            bad = [("search_models", {"sort": "bogus"}, "sort must be one of"),
                   ("get_model", {"key": 5}, "valid string"),
                   ("get_model", {"key": "nope/nothing"}, "unknown model"),
                   ("where_is", {}, "model"),
                   ("recommend_for_use_case", {"use_case": "juggling"}, "unknown use case"),
                   ("get_cost_analysis", {"models": two, "usage": {"input_tokens": "lots"}}, "not a token count"),
                   ("create_lockfile_binding", {"alias": "deep", "models": two, "requires": {"min_context": 10**9},
                                                "confirm": True}, "requirements not met"),
                   ("create_lockfile_binding", {"alias": "x", "models": two, "path": str(tmp_path / "notes.txt"),
                                                "confirm": True}, "path must be a lockfile"),
                   ("recommend_library", {"needs": ["telepathy"]}, "unknown feature")]
            for name, args, needle in bad:
                r = await c.call_tool(name, args)
                assert r.is_error and needle in r.content[0].text, (name, r.content[0].text)
            assert "deep" not in load_lock(lock).bindings("default") and not (tmp_path / "notes.txt").exists()
            r = await c.call_tool("no_such_tool", {})
            assert r.is_error
            assert len((await c.list_tools()).tools) == len(TOOL_NAMES)

    asyncio.run(main())
    assert called == set(TOOL_NAMES)


@pytest.mark.shared
def test_real_catalog_over_stdio(shared_dumps, tmp_path):
    """The real dumps: list the tools and locate a widely served model."""
    async def main():
        async with Client(_server(shared_dumps, tmp_path / "knollm.lock", tmp_path), read_timeout_seconds=600) as c:
            assert len((await c.list_tools()).tools) == len(TOOL_NAMES)
            r = _data(await c.call_tool("where_is", {"model": "llama-3.3-70b-instruct"}))
            assert r["count"] >= 5 and {s["name"] for s in r["catalog_sources"]} >= {"dumps", "genai-prices"}
            assert len({o["provider"] for o in r["offers"]}) >= 5
            r = _data(await c.call_tool("search_models", {"text": "llama", "capabilities": ["tools"], "limit": 3}))
            assert r["count"] > 3 and len(r["models"]) == 3

    asyncio.run(main())


def test_http_transport(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "knollm", "mcp", "--transport", "http", "--port", str(port),
                             "--dumps", str(FIXTURES), "--lock", str(tmp_path / "k.lock")],
                            env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)

        async def main():
            async with Client(f"http://127.0.0.1:{port}/mcp") as c:
                assert [t.name for t in (await c.list_tools()).tools] == list(TOOL_NAMES)
                r = _data(await c.call_tool("get_model", {"key": "groq/llama-3.3-70b-versatile"}))
                assert r["model"]["provider"] == "groq"

        asyncio.run(main())
    finally:
        proc.terminate()
        proc.wait(timeout=20)
