"""Python LLM client libraries: schema, loading, rubric, queries, rendering, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from knollm.errors import CatalogError, NotFoundError
from knollm.libraries import cli as libcli
from knollm.libraries.load import DATA_DIR, load_libraries, load_library_file, load_measurements
from knollm.libraries.query import get_library, list_libraries, parse_needs, recommend
from knollm.libraries.render import esc, render_all, render_guide, render_library_page, render_matrix, render_rubric
from knollm.libraries.rubric import CRITERIA, rate
from knollm.libraries.schema import FEATURES, Cell, Library

REQUIRED = {"curl", "requests", "httpx", "aiohttp", "openai", "anthropic", "litellm", "instructor", "mirascope",
            "pydantic-ai", "langchain", "llama-index", "aisuite", "guidance", "outlines", "portkey-ai"}


@pytest.fixture(scope="module")
def records():
    return load_libraries()


def _copy_data(tmp_path: Path) -> Path:
    dest = tmp_path / "api_inference"
    shutil.copytree(DATA_DIR, dest)
    return dest


# ----------------------------------------------------------------------------- data
def test_every_file_loads_and_required_libraries_present(records):
    slugs = {r.slug for r in records}
    assert REQUIRED <= slugs, REQUIRED - slugs
    assert len(slugs) >= 16


def test_every_cell_says_how_it_was_established(records):
    for r in records:
        for name, cell in r.library.features.items():
            assert cell.how in {"docs", "source", "tested", "measured"}, (r.slug, name)
            assert cell.ref
            if cell.how == "docs":
                assert cell.ref.startswith("https://"), (r.slug, name)


def test_measurements_present_for_every_pypi_library(records):
    meas = load_measurements(DATA_DIR / "measurements.json")
    assert meas is not None and meas.measured_at and meas.python_version
    for r in records:
        m = r.measurement
        assert m is not None, r.slug
        if r.library.pypi:
            assert m.error is None, (r.slug, m.error)
            assert m.version and m.direct_dependencies is not None and m.installed_distributions is not None
            assert m.installed_size_bytes and m.import_time_ms is not None
            assert m.installed_distributions >= m.direct_dependencies or r.slug == "pydantic-ai"
            assert r.measured_at
        else:
            assert m.python_package is False


def test_schema_rejects_unknown_keys_and_bad_how():
    with pytest.raises(Exception):
        Cell.model_validate({"value": True, "how": "guessed", "ref": "x"})
    with pytest.raises(Exception):
        Cell.model_validate({"value": True, "how": "docs", "ref": "not-a-url"})
    with pytest.raises(Exception):
        Cell.model_validate({"value": True, "how": "tested", "ref": "https://example.org"})
    with pytest.raises(Exception):
        Cell.model_validate({"value": True, "how": "docs", "ref": "https://x.org", "extra": 1})
    with pytest.raises(Exception):  # strict: "yes" is not a bool
        Cell.model_validate({"value": "yes", "how": "docs", "ref": "https://x.org"})


def test_malformed_file_error_names_the_file(tmp_path):
    data = _copy_data(tmp_path)
    bad = data / "openai.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(CatalogError) as exc:
        load_libraries(data)
    assert str(bad) in str(exc.value)


def test_invalid_file_error_names_file_and_field(tmp_path):
    data = _copy_data(tmp_path)
    path = data / "httpx.json"
    obj = json.loads(path.read_text())
    obj["features"]["streaming"]["how"] = "vibes"
    path.write_text(json.dumps(obj))
    with pytest.raises(CatalogError) as exc:
        load_libraries(data)
    assert str(path) in str(exc.value) and "streaming" in str(exc.value)


def test_slug_must_match_file_name(tmp_path):
    data = _copy_data(tmp_path)
    src = data / "httpx.json"
    (data / "httpx2.json").write_text(src.read_text())
    with pytest.raises(CatalogError, match="httpx2.json"):
        load_libraries(data)


# ----------------------------------------------------------------------------- rubric
def test_rubric_weights_and_ratings_in_range(records):
    assert sum(c.weight for c in CRITERIA) == 100
    for r in records:
        rating = rate(r.library, r.measurement)
        assert 1 <= rating.rating <= 7 and 1.0 <= rating.score <= 7.0


def test_rating_is_computed_from_features(records):
    rec = next(r for r in records if r.slug == "requests")
    before = rate(rec.library, rec.measurement)
    raw = rec.library.model_dump(by_alias=True)
    for f in FEATURES:
        raw["features"][f] = {"value": False, "how": "docs", "ref": "https://example.org"}
    worse = Library.model_validate_json(json.dumps(raw))
    after = rate(worse, rec.measurement)
    assert after.score < before.score
    raw2 = rec.library.model_dump(by_alias=True)
    raw2["features"]["async"] = {"value": True, "how": "docs", "ref": "https://example.org"}
    better = rate(Library.model_validate_json(json.dumps(raw2)), rec.measurement)
    assert better.score > before.score


def test_rating_is_computed_from_measurements(records):
    rec = next(r for r in records if r.slug == "openai")
    base = rate(rec.library, rec.measurement)
    heavier = rec.measurement.model_copy(update={"installed_distributions": 400, "import_time_ms": 9000.0,
                                                 "entry_import_ms": 9000.0})
    assert rate(rec.library, heavier).score < base.score
    # no measurement: those criteria are left out, not invented
    none = rate(rec.library, None)
    assert {c.key for c in none.criteria if c.score is None} >= {"dependencies", "size", "import_time"}


def test_no_hand_set_rating_in_data_files():
    for path in DATA_DIR.glob("*.json"):
        text = path.read_text()
        if path.name != "measurements.json":
            obj = json.loads(text)
            assert "rating" not in obj and "score" not in obj, path


# ----------------------------------------------------------------------------- queries
def test_list_sorted_by_score(records):
    rows = list_libraries(records)
    scores = [r.rating.score for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert all(r.record.library.category == "raw-http" for r in list_libraries(records, category="raw-http"))


def test_get_by_slug_pypi_and_module(records):
    assert get_library("langchain-openai", records).slug == "langchain"
    assert get_library("pydantic_ai", records).slug == "pydantic-ai"
    assert get_library("OpenAI", records).slug == "openai"


def test_get_unknown_suggests(records):
    with pytest.raises(NotFoundError) as exc:
        get_library("opnai", records)
    assert exc.value.kind == "library" and "openai" in exc.value.suggestions


def test_recommend_filters_and_explains(records):
    recs = recommend(["async", "streaming"], records=records)
    assert recs
    for r in recs:
        lib = r.row.record.library
        assert lib.features.cell("async").value is True and lib.features.cell("streaming").value is True
        assert "async" in r.explanation and "streaming" in r.explanation
    slugs = {r.row.slug for r in recs}
    assert "requests" not in slugs  # requests is synchronous
    by_case = recommend(["structured_output"], use_case="structured-extraction", records=records)
    assert by_case and all("structured-extraction" in r.row.record.library.use_cases for r in by_case)
    partial = recommend(["async"], records=records, include_partial=True)
    assert any(r.missing for r in partial) and not partial[0].missing


def test_parse_needs_aliases_and_errors():
    assert parse_needs("async, tools,json") == ["async", "tool_calling", "structured_output"]
    with pytest.raises(ValueError, match="teleport"):
        parse_needs("async,teleport")


# ----------------------------------------------------------------------------- render
def test_render_contains_every_library(records):
    rows = list_libraries(records)
    matrix = render_matrix(rows)
    pages = render_all(rows)
    for r in rows:
        assert r.record.library.name.split(" (")[0].replace("&", "&amp;") in matrix
        assert f"{r.slug}.md" in pages
    page = pages["openai.md"]
    for needle in ("Measured facts", "Rating:", "Minimal example", "## Pros", "## Cons", rows[0].record.measured_at):
        assert needle in pages[f"{rows[0].slug}.md"] or needle in page
    assert "rubric" in render_rubric(rows).lower()
    guide = render_guide(rows)
    assert "Which library" in guide


def test_write_section(tmp_path, records):
    from knollm.libraries.render import write_section

    names = write_section(tmp_path / "libraries", list_libraries(records))
    assert {"index.md", "matrix.md", "guide.md", "rubric.md", "openai.md", "curl.md"} <= set(names)
    assert "Measured side by side" in (tmp_path / "libraries" / "index.md").read_text()


def test_render_escapes_html(records):
    rec = next(r for r in records if r.slug == "httpx")
    raw = rec.library.model_dump(by_alias=True)
    raw["pros"] = ["<script>alert(1)</script> | pipe"]
    raw["summary"] = "<b>bold</b>"
    lib = Library.model_validate_json(json.dumps(raw))
    from knollm.libraries.load import LibraryRecord
    from knollm.libraries.query import Row
    row = Row(LibraryRecord(lib, rec.measurement, rec.measured_at, rec.path), rate(lib, rec.measurement))
    page = render_library_page(row)
    assert "<script>" not in page and "&lt;script&gt;" in page and "<b>bold" not in page
    assert "&#124; pipe" in page
    assert esc("a|b<c") == "a&#124;b&lt;c"


def test_example_fence_survives_backticks(records):
    rec = next(r for r in records if r.slug == "httpx")
    raw = rec.library.model_dump(by_alias=True)
    raw["example"]["code"] = "print('```')\n"
    lib = Library.model_validate_json(json.dumps(raw))
    from knollm.libraries.load import LibraryRecord
    from knollm.libraries.query import Row
    page = render_library_page(Row(LibraryRecord(lib, None, None, rec.path), rate(lib, None)))
    assert "````python" in page


# ----------------------------------------------------------------------------- CLI
def test_cli_list_table_and_json():
    runner = CliRunner()
    res = runner.invoke(libcli.command, ["list"])
    assert res.exit_code == 0 and "openai" in res.output and "import ms" in res.output
    res = runner.invoke(libcli.command, ["list", "--json"])
    assert res.exit_code == 0
    data = json.loads(res.output)
    assert {d["slug"] for d in data} >= REQUIRED
    assert {"slug", "rating", "version", "installed_distributions", "import_time_ms", "features"} <= set(data[0])


def test_cli_show():
    runner = CliRunner()
    res = runner.invoke(libcli.command, ["show", "httpx"])
    assert res.exit_code == 0 and "HTTPX" in res.output and "Feature coverage" in res.output
    res = runner.invoke(libcli.command, ["show", "httpx", "--json"])
    data = json.loads(res.output)
    assert data["slug"] == "httpx" and data["rubric"]["rating"] == data["rating"]
    assert data["features"]["async"]["how"] in {"docs", "source", "tested"}


def test_cli_show_not_found_exit_1():
    runner = CliRunner()
    res = runner.invoke(libcli.command, ["show", "langchian"])
    assert res.exit_code == 1
    res = runner.invoke(libcli.command, ["show", "langchian", "--json"])
    assert res.exit_code == 1
    payload = json.loads(res.stdout)
    assert payload["error"] == "not_found" and "langchain" in payload["suggestions"]


def test_cli_recommend_and_usage_errors():
    runner = CliRunner()
    res = runner.invoke(libcli.command, ["recommend", "--needs", "async,streaming,tool_calling", "--json"])
    assert res.exit_code == 0
    data = json.loads(res.output)
    assert data and all(not d["missing"] for d in data) and "explanation" in data[0]
    res = runner.invoke(libcli.command, ["recommend", "--needs", "async,streaming"])
    assert res.exit_code == 0 and "rated" in res.output
    res = runner.invoke(libcli.command, ["recommend", "--needs", "telepathy"])
    assert res.exit_code == 2
    res = runner.invoke(libcli.command, ["recommend", "--use-case", "nope"])
    assert res.exit_code == 2
    res = runner.invoke(libcli.command, ["show"])
    assert res.exit_code == 2
