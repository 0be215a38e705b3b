"""Docs checked by tests: every command is documented, every path the architecture page
names exists, every page in the nav exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from knollm.cli import COMMANDS

REPO = Path(__file__).resolve().parents[1]
CLI_MD = (REPO / "src_docs" / "cli.md").read_text(encoding="utf-8")
ARCH_MD = (REPO / "src_docs" / "architecture.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_is_documented(name):
    assert re.search(rf"`knollm {re.escape(name)}\b", CLI_MD), f"src_docs/cli.md does not document `knollm {name}`"


def test_architecture_paths_exist():
    paths = set(re.findall(r"`((?:knollm|tests|scripts|src_docs)/[\w./-]+)`", ARCH_MD))
    assert len(paths) >= 8
    missing = [p for p in sorted(paths) if not (REPO / p.rstrip("…")).exists() and "<" not in p]
    assert not missing, f"src_docs/architecture.md names paths that do not exist: {missing}"


def test_nav_pages_exist():
    nav = (REPO / "mkdocs.yml").read_text(encoding="utf-8").split("\nnav:", 1)[1]
    generated = ("providers/", "canonical/", "matrix/", "libraries/", "changes.md", "audit.md", "measured.md", "compare")
    for page in re.findall(r":\s*([\w/.-]+\.md)\s*$", nav, flags=re.M):
        if page.startswith(generated):
            continue  # written by the knollm plugin at build time
        assert (REPO / "src_docs" / page).is_file(), page
