"""``llms.txt`` / ``llms-full.txt``: written by the site build's data step, from the catalog."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from knollm.query.api import Catalog
from knollm.site.llms import render_llms_full_txt, render_llms_txt
from knollm.site.plugin import write_data_files

FIXTURES = Path(__file__).parent / "fixtures" / "dumps"


@pytest.fixture(scope="module")
def cat() -> dict:
    return Catalog.load(dumps=FIXTURES).data


def _check(cat: dict, site: Path) -> None:
    written = write_data_files(cat, site)
    llms = (site / "llms.txt").read_text("utf-8")
    assert llms.startswith("# Knollm\n\n> A sourced catalog of ") and f"{len(cat['models']):,} LLM models" in llms
    assert cat["data_date"] in llms
    links = re.findall(r"^- \[([^\]]+)\]\(([^)]+)\)", llms, re.M)
    data_links = [url for _, url in links if not url.endswith("/")]
    assert {"catalog.json", "schema.json", "models.csv", "data/index.json", "llms-full.txt"} <= set(data_links)
    for url in data_links:                      # every data link points at a file the build wrote
        assert url in written and (site / url).is_file()
    full = (site / "llms-full.txt").read_text("utf-8")
    lines = full.splitlines()
    assert sum(1 for x in lines if x.startswith("- ")) == len(cat["models"])
    assert sum(1 for x in lines if x.startswith("## ")) == len(cat["providers"])
    m = next(m for m in cat["models"] if (m["prices"] or {}).get("input") is not None)
    line = next(x for x in lines if x.startswith(f"- {m['key']} |"))
    assert f"({m['sources']['prices.input']})" in line
    unknown = next(m for m in cat["models"] if (m["prices"] or {}).get("input") is None)
    assert "in $? out $" in next(x for x in lines if x.startswith(f"- {unknown['key']} |"))


def test_llms_files_from_the_fixture_catalog(cat, tmp_path):
    _check(cat, tmp_path)


def test_untrusted_text_cannot_start_a_line(cat):
    c = copy.deepcopy(cat)
    c["providers"][0]["name"] = "Evil\n## injected heading\r\n- [x](javascript:alert(1))"
    c["models"][0]["key"] = c["models"][0]["key"] + "\n- fake model line"
    full = render_llms_full_txt(c)
    assert "\n## injected" not in full and "\n- fake model line" not in full
    assert sum(1 for x in full.splitlines() if x.startswith("- ")) == len(c["models"])
    assert render_llms_txt(c).count("\n## ") == 3


@pytest.mark.shared
def test_llms_files_from_the_real_catalog(shared_catalog, tmp_path):
    _check(shared_catalog, tmp_path)
