"""Knollm for agents and people: the MCP server (``knollm mcp``) and the advisor (``knollm advisor``).

    from knollm.mcp import KnollmTools
    t = KnollmTools(dumps="../shared/model_catalog")
    t.where_is("llama-3.3-70b-instruct")["offers"][0]          # cheapest paid offer, with sources
    t.call("get_cost_analysis", {"models": ["groq/llama-3.3-70b-versatile"],
                                 "usage": {"input_tokens": 2000, "output_tokens": 500, "requests": 10000}})

:mod:`knollm.mcp.tools` (the tool functions; no SDK), :mod:`knollm.mcp.server`
(``MCPServer`` from the ``mcp`` extra), :mod:`knollm.mcp.advisor` (the conversation).
"""

from __future__ import annotations

from knollm.mcp.tools import TOOL_NAMES, WRITING_TOOLS, KnollmTools, ToolArgumentError

__all__ = ["KnollmTools", "ToolArgumentError", "TOOL_NAMES", "WRITING_TOOLS"]
