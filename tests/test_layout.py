"""The package layout: every CLI command resolves; no import cycles; data flows one way.

Imports are read with :mod:`ast` over ``knollm/**`` (module-level and function-level imports
alike, except ``if TYPE_CHECKING:`` blocks), so a lazy import counts as an arrow too.
"""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path

import click
import pytest

from knollm.cli import COMMANDS, main

PKG = Path(__file__).resolve().parents[1] / "knollm"

BASE = {"errors", "fsutil", "fmt", "retry", "vocab", "providers", "data", "__init__"}
PRODUCTS = {"__main__", "cli", "site", "libraries", "fetch", "diff", "client", "gateway", "lock", "mcp", "probe", "browse", "client_cache"}
RANK = {"base": 0, "catalog": 1, "query": 2, "product": 3}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def stage(mod: str) -> str:
    parts = mod.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if top in ("catalog", "query"):
        return top
    if top in PRODUCTS:
        return "product"
    assert top in BASE, f"{mod}: not in a known stage - add it to tests/test_layout.py"
    return "base"


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imports_of(path: Path) -> set[str]:
    """The ``knollm.*`` modules ``path`` imports (``from knollm.x import y`` -> knollm.x.y when
    that is a module, else knollm.x)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    me = module_name(path)
    pkg = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                out.update(a.name for a in child.names if a.name.split(".")[0] == "knollm")
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = pkg.split(".")[: len(pkg.split(".")) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                if base.split(".")[0] != "knollm":
                    continue
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    out.add(sub if sub in MODULES else base)
            visit(child)

    visit(tree)
    out.discard(me)
    return out


FILES = sorted(PKG.rglob("*.py"))
MODULES = {module_name(p) for p in FILES}
GRAPH = {module_name(p): imports_of(p) for p in FILES}


CLI_SHARED = {"knollm.cli.output", "knollm.cli.filters"}


def _in_cli(mod: str) -> bool:
    """``knollm.cli`` or one of its modules (``knollm.client`` is not)."""
    return mod == "knollm.cli" or mod.startswith("knollm.cli.")


def is_cli_command_module(mod: str) -> bool:
    """A module that defines a command listed in COMMANDS (or is the CLI package itself)."""
    return _in_cli(mod) or mod in {t.split(":")[0] for t, _ in COMMANDS.values()}


def test_graph_is_read():
    # the parser must see known arrows, else the checks below prove nothing
    assert "knollm.query.index" in GRAPH["knollm.query.api"]
    assert "knollm.fsutil" in GRAPH["knollm.fetch.client"]
    assert "knollm.query.filters" in GRAPH["knollm.query.index"]


def test_no_import_cycles():
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def dfs(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(GRAPH.get(m, ())):
            if n not in GRAPH:
                continue
            # a module importing its own package's __init__ (or a parent package) is not a cycle
            if m.startswith(n + "."):
                continue
            if state.get(n) == 1:
                cycles.append(path[path.index(n):] + [n] if n in path else [m, n])
            elif n not in state:
                dfs(n, path + [n])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            dfs(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _in_cli(mod: str) -> bool:
    """``knollm.cli`` or below it (``knollm.client`` is not)."""
    return mod == "knollm.cli" or mod.startswith("knollm.cli.")


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Arrows against the flow: base < catalog < query < products; outside ``knollm.cli``
    only CLI command modules may import from the CLI, and then only its shared options
    (``knollm.cli.output``: --json/--csv, ``knollm.cli.filters``: --dumps, model filters).
    Products may use each other otherwise (the site renders libraries and diffs)."""
    bad = []
    for m, deps in graph.items():
        if m == "knollm":  # the package's lazy re-exports (knollm.Catalog, …)
            continue
        for d in deps:
            if d == "knollm":
                continue
            sm, sd = stage(m), stage(d)
            if RANK[sd] > RANK[sm]:
                bad.append(f"{m} ({sm}) imports {d} ({sd})")
            elif _in_cli(d) and not _in_cli(m) and m != "knollm.__main__":
                if not (d in CLI_SHARED and is_cli_command_module(m)):
                    bad.append(f"{m} imports {d} (only CLI command modules may use {', '.join(sorted(CLI_SHARED))})")
    return sorted(bad)


def test_client_is_not_the_cli():
    # knollm.client shares a prefix with knollm.cli but is a product, not the CLI
    assert violations({"knollm.mcp.advisor": {"knollm.client"}}) == []
    assert violations({"knollm.client.core": {"knollm.cli.output"}}) != []


def test_data_flows_one_way():
    bad = violations({m: {d for d in deps if d in MODULES} for m, deps in GRAPH.items()})
    assert not bad, "backward imports:\n" + "\n".join(bad)


def test_violations_are_caught():
    assert violations({"knollm.catalog.history": {"knollm.fetch.client"}}) == [
        "knollm.catalog.history (catalog) imports knollm.fetch.client (product)"]
    assert violations({"knollm.query.api": {"knollm.catalog.build", "knollm.errors"}}) == []
    assert len(violations({"knollm.diff.compare": {"knollm.cli.output"},
                           "knollm.fetch.report": {"knollm.cli.filters"}})) == 2
    assert violations({"knollm.fetch.cli": {"knollm.cli.output"}}) == []
    assert violations({"knollm.probe.common": {"knollm.client.routing"}}) == []  # not knollm.cli


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_resolves(name):
    target, help_text = COMMANDS[name]
    mod, attr = target.split(":")
    cmd = getattr(importlib.import_module(mod), attr)
    assert isinstance(cmd, click.Command), target
    assert help_text
    # and the CLI lists it and shows its help
    assert main([name, "--help"]) == 0


def test_bench_runs_on_fixture_dumps(fixture_dumps, capsys):
    assert main(["bench", "--dumps", str(fixture_dumps), "--repeat", "1", "--no-process", "--json"]) == 0
    f = json.loads(capsys.readouterr().out)
    assert f["files"] == len(list(fixture_dumps.glob("models_*.json"))) > 0
    assert f["baseline_s"] > 0 and f["pipeline_s"] > 0 and f["phases_s"]
    assert f["pipeline_ratio"] == pytest.approx(f["pipeline_s"] / f["baseline_s"])


def test_bench_without_dumps_fails_clearly(tmp_path, capsys):
    assert main(["bench", "--dumps", str(tmp_path), "--repeat", "1", "--no-process"]) == 1
    assert str(tmp_path) in capsys.readouterr().err
