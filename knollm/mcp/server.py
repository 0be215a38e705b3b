"""``knollm mcp``: the catalog as a Model Context Protocol server (official SDK 2.x, ``MCPServer``).

Tools are :class:`knollm.mcp.tools.KnollmTools` methods registered as they are (their
signatures and docstrings become the tool schemas and descriptions). A Knollm error or
a bad argument becomes a tool error (``is_error`` with the message), never a crash.
Annotations: every tool is ``readOnlyHint`` except ``create_lockfile_binding``, which
writes only with ``confirm=true``. Resources: ``knollm://schema`` (the catalog JSON
Schema), ``knollm://providers`` (the provider list with sources), ``knollm://lockfile``
(the active lockfile's text).

Needs the optional extra ``knollm[mcp]``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from knollm.errors import KnollmError
from knollm.mcp.tools import WRITING_TOOLS, KnollmTools, price_units_text

__all__ = ["build_server", "INSTRUCTIONS"]

INSTRUCTIONS = (
    "Knollm: a sourced catalog of LLM models, providers and Python LLM client libraries. "
    + price_units_text()  # the units of knollm.vocab.PRICE_TABLE
    + " Each model view repeats the unit of each of its prices in `price_units`. A missing price is "
    "unknown (never 0). Every answer has the catalog's data_date and sources; every model its `sources` "
    "map. Use search_models / where_is / recommend_for_use_case to find models, get_cost_analysis for "
    "a workload's cost (token prices and the per-request fee only), and create_lockfile_binding "
    "(confirm=true to write) to record a choice in knollm.lock.")


def _import_sdk() -> tuple[Any, Any, Any]:
    try:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
        from mcp_types import ToolAnnotations
    except ImportError as e:  # pragma: no cover - depends on the install
        raise KnollmError("knollm mcp needs the MCP SDK: install Knollm's mcp extra "
                          "(pip install -e '.[mcp]' in the Knollm checkout)") from e
    return MCPServer, ToolError, ToolAnnotations


def _as_tool(fn: Callable[..., dict[str, Any]], tool_error: type[Exception]) -> Callable[..., dict[str, Any]]:
    """``fn`` with Knollm errors, ValueError and LookupError turned into the SDK's ToolError
    (the caller sees the message; anything else stays a crash the SDK reports generically)."""

    @functools.wraps(fn)
    def tool(**kwargs: Any) -> dict[str, Any]:
        try:
            return fn(**kwargs)
        except (KnollmError, ValueError, LookupError) as e:
            raise tool_error(str(e)) from e

    return tool


def build_server(tools: KnollmTools | None = None, **kwargs: Any) -> Any:
    """An ``MCPServer`` exposing ``tools`` (default: :class:`KnollmTools` built from ``kwargs``)."""
    MCPServer, ToolError, ToolAnnotations = _import_sdk()
    tools = tools or KnollmTools(**kwargs)
    from knollm import __version__

    server = MCPServer("knollm", title="Knollm catalog", instructions=INSTRUCTIONS, version=__version__)
    for name, fn in tools.functions().items():
        writes = name in WRITING_TOOLS
        ann = ToolAnnotations(title=name.replace("_", " "), read_only_hint=not writes,
                              destructive_hint=False if writes else None,
                              idempotent_hint=True, open_world_hint=False)
        server.add_tool(_as_tool(fn, ToolError), name=name, annotations=ann)

    @server.resource("knollm://schema", name="schema", mime_type="application/json",
                     description="JSON Schema of the catalog (every model field and its meaning).")
    def schema() -> str:
        from knollm.catalog.schema import json_schema

        return json.dumps(json_schema(), indent=1)

    @server.resource("knollm://providers", name="providers", mime_type="application/json",
                     description="Every provider: id, name, base URL, key variables, model count, sources.")
    def providers() -> str:
        data = tools.catalog.data
        return json.dumps({"data_date": data.get("data_date"), "providers": data["providers"]}, indent=1)

    @server.resource("knollm://lockfile", name="lockfile", mime_type="application/toml",
                     description="The active knollm.lock (--lock, $KNOLLM_LOCK, ./knollm.lock).")
    def lockfile() -> str:
        from knollm.lock import find_lock

        p = find_lock(tools.lock)
        if p is None or not Path(p).is_file():
            return "# no lockfile found (create one with create_lockfile_binding or `knollm lock init`)\n"
        return Path(p).read_text("utf-8")

    return server
