"""``knollm mcp`` (the MCP server) and ``knollm advisor`` (the lockfile conversation)."""

from __future__ import annotations

import click

from knollm.cli.filters import dumps_option

__all__ = ["mcp_command", "advisor_command"]

_lock_option = click.option("--lock", "lock_path", type=click.Path(dir_okay=False), default=None,
                            envvar="KNOLLM_LOCK", help="Lockfile (default $KNOLLM_LOCK, then ./knollm.lock).")


@click.command("mcp")
@click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio", show_default=True,
              help="stdio (for a client that starts the server) or streamable HTTP.")
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP: address to listen on.")
@click.option("--port", type=int, default=8765, show_default=True, help="HTTP: port.")
@_lock_option
@dumps_option
def mcp_command(transport: str, host: str, port: int, lock_path: str | None, dumps: str) -> int:
    """Serve the catalog to MCP clients: search, where, compare, recommend, cost, lockfile tools.

    \b
    Tools: search_models, get_provider_models, get_model, where_is, compare_models,
    recommend_for_use_case, get_cost_analysis, validate_lockfile, create_lockfile_binding
    (writes only with confirm=true), list_libraries, recommend_library.
    Resources: knollm://schema, knollm://providers, knollm://lockfile.
    Needs the mcp extra (pip install -e '.[mcp]' in the Knollm checkout).
    """
    from knollm.mcp.server import build_server

    server = build_server(dumps=dumps, lock=lock_path)
    if transport == "stdio":
        server.run("stdio")
    else:
        click.echo(f"knollm mcp: streamable HTTP on http://{host}:{port}/mcp", err=True)
        server.run("streamable-http", host=host, port=port)
    return 0


@click.command("advisor")
@_lock_option
@click.option("--profile", "-p", default=None, help="Profile to write (default: the lock's default_profile).")
@click.option("--answers", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Answer the questions from a JSON/TOML file (non-interactive).")
@click.option("--advisor-lock", type=click.Path(dir_okay=False), envvar="KNOLLM_ADVISOR_LOCK", default=None,
              help="Lockfile whose `advisor` alias runs the conversation (default: the project lock, "
                   "else a bootstrap lock from your keys / local models).")
@click.option("--no-model", is_flag=True, help="Skip the advisor model: the deterministic guided flow.")
@dumps_option
def advisor_command(lock_path, profile, answers, advisor_lock, no_model, dumps) -> int:
    """Choose models for your aliases in a conversation, then write knollm.lock.

    Asks about use cases, volume, budget, capabilities, providers and privacy; proposes an
    alias per use case with monthly costs and reasons (from the MCP tools); lets you change
    them; shows the diff; writes on confirmation. Exit 0 written, 1 not written.
    """
    from knollm.mcp.advisor import run_advisor

    return run_advisor(dumps=dumps, lock=lock_path, profile=profile, answers=answers, advisor_lock=advisor_lock,
                       use_model=not no_model)
