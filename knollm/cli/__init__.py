"""The ``knollm`` command line.

``main(argv) -> int`` is the testable entry point; ``run()`` is the console script.
Commands live in their own modules and are imported only when invoked, so
``knollm --help`` and simple queries stay fast.

Exit codes: 0 ok, 1 nothing found / operation failed, 2 usage error.
"""

from __future__ import annotations

import importlib
import sys

import click

__all__ = ["main", "run", "cli", "COMMANDS"]

#: command name -> "module:attribute" of a click command; modules that do not exist
#: (yet) are simply not listed.
COMMANDS: dict[str, tuple[str, str]] = {
    "catalog": ("knollm.cli.cmd_catalog:command", "Build the normalized catalog JSON from dumps + registries."),
    "schema": ("knollm.cli.cmd_catalog:schema_command", "Print the catalog's JSON Schema."),
    "providers": ("knollm.cli.cmd_providers:command", "List providers or show one."),
    "models": ("knollm.cli.cmd_models:command", "Search, show and locate models."),
    "compare": ("knollm.cli.cmd_compare:command", "Compare models side by side."),
    "cost": ("knollm.cli.cmd_cost:command", "Estimate the cost of a token workload."),
    "recommend": ("knollm.cli.cmd_recommend:command", "Rank models for a use case, with reasons."),
    "export": ("knollm.cli.cmd_export:command", "Export (filtered) models as JSON, CSV or Parquet."),
    "build": ("knollm.cli.cmd_build:command", "Build the catalog and the static site."),
    "fetch": ("knollm.fetch.cli:command", "Refresh provider dumps from their model-list APIs."),
    "diff": ("knollm.diff.cli:command", "What changed between two dump dirs or catalogs."),
    "libraries": ("knollm.libraries.cli:command", "Python LLM client libraries: list, show, recommend, check."),
    "chat": ("knollm.cli.cmd_chat:command", "Call a model (routing, fallback, streaming, cost)."),
    "usage": ("knollm.cli.cmd_usage:command", "Calls, tokens and cost from the usage ledger."),
    "serve": ("knollm.cli.cmd_serve:command", "Run the OpenAI/Anthropic-compatible gateway; manage its keys."),
    "audit": ("knollm.cli.cmd_audit:command", "Where sources disagree: each value, the one shown and why."),
    "bench": ("knollm.cli.cmd_bench:command", "Benchmark the pipeline on real dumps."),
    "probe": ("knollm.probe.cli:probe_command", "Measure what a model does: tools, images, JSON, streams, context."),
    "benchmark": ("knollm.probe.cli:benchmark_command", "Measure TTFT, tokens/s, latency, success rate and cost."),
    "ask": ("knollm.probe.cli:ask_command", "One prompt to several models, side by side (optional judge)."),
    "lock": ("knollm.lock.cli:lock_group", "Semantic aliases bound to models in knollm.lock."),
    "roles": ("knollm.lock.cli:roles_group", "Built-in aliases; how a binding resolves now (explain)."),
    "local": ("knollm.lock.cli:local_group", "Models served on this machine (Ollama, local servers)."),
    "mcp": ("knollm.mcp.cli:mcp_command", "Serve the catalog to MCP clients (agents)."),
    "advisor": ("knollm.mcp.cli:advisor_command", "Choose aliases in a conversation; write knollm.lock."),
    "browse": ("knollm.browse.cli:command", "A full-screen terminal explorer of the catalog."),
    "cache": ("knollm.client_cache.cli:command", "The client's response cache: stats, clear, warm FILE."),
}


def _module_exists(target: str) -> bool:
    """True if the command's module file is present, without importing its package
    (``find_spec('knollm.fetch.cli')`` would import ``knollm.fetch`` and its HTTP stack)."""
    from pathlib import Path

    parts = target.split(":", 1)[0].split(".")
    base = Path(__file__).resolve().parents[1].joinpath(*parts[1:])
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, (target, _) in COMMANDS.items() if _module_exists(target)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        entry = COMMANDS.get(name)
        if entry is None or not _module_exists(entry[0]):
            return None
        mod_name, attr = entry[0].split(":", 1)
        cmd = getattr(importlib.import_module(mod_name), attr)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # help text from the table above, without importing every command module
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError:
            name = args[0] if args else ""
            import difflib

            close = difflib.get_close_matches(name, self.list_commands(ctx), n=3)
            if close:
                ctx.fail(f"No such command {name!r}. Did you mean: {', '.join(close)}?")
            raise


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="knollm", prog_name="knollm")
def cli() -> None:
    """Knollm: a sourced catalog of LLM models, providers and Python client libraries.

    \b
    Data: provider model-list dumps (--dumps DIR or $KNOLLM_DUMPS; default
    work/model_catalog) + the genai-prices and models.dev registries.
    Every command takes --json for a stable machine-readable shape.
    Exit codes: 0 ok, 1 nothing found / failed, 2 usage error.
    """


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` and return the exit code (never calls ``sys.exit``)."""
    from knollm.errors import KnollmError

    try:
        rv = cli.main(args=list(argv) if argv is not None else None, prog_name="knollm", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        return 1
    except KnollmError as e:
        click.echo(f"Error: {e}", err=True)
        return 1
    except BrokenPipeError:
        return 0
    return rv if isinstance(rv, int) else 0


def run() -> None:  # console-script entry point
    sys.exit(main())
