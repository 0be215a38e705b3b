"""Python LLM client libraries: schema, loading, rubric, queries, rendering, CLI."""

from __future__ import annotations

import json
import re
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


# ----------------------------------------------------------------------------- check (issue 19)
def _fake_wheel(directory: Path, name: str, version: str, *, license: str = "MIT", requires_python: str = ">=3.10",
                requires: tuple[str, ...] = ()) -> Path:
    """A minimal but real wheel: a zip holding NAME-VERSION.dist-info/METADATA (and RECORD)."""
    import zipfile

    stem = name.replace("-", "_")
    meta = [f"Metadata-Version: 2.4", f"Name: {name}", f"Version: {version}", f"License-Expression: {license}",
            f"Requires-Python: {requires_python}"] + [f"Requires-Dist: {r}" for r in requires]
    path = directory / f"{stem}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{stem}/__init__.py", "")
        zf.writestr(f"{stem}-{version}.dist-info/METADATA", "\n".join(meta) + "\n\n")
        zf.writestr(f"{stem}-{version}.dist-info/RECORD", "")
    return path


def _fake_library_dir(tmp_path: Path, *, measured_licence: str = "MIT", observability: bool | None = True,
                      source_ref: str = "fakellm 1.0.0: fakellm/client.py:10 (AsyncClient)") -> Path:
    """One library file (a copy of httpx's with the names changed) plus its measurements."""
    data = tmp_path / "libs"
    data.mkdir()
    lib = json.loads((DATA_DIR / "httpx.json").read_text())
    lib.update({"slug": "fakellm", "name": "FakeLLM", "pypi": "fakellm", "module": "fakellm"})
    lib["features"]["async"] = {"value": True, "how": "source", "ref": source_ref}
    lib["features"]["observability_hooks"] = {"value": observability, "how": "docs", "ref": "https://example.org/obs"}
    (data / "fakellm.json").write_text(json.dumps(lib))
    meas = {"measured_at": "2026-11-01", "python_version": "3.11", "platform": "test", "libraries": {"fakellm": {
        "pypi": "fakellm", "module": "fakellm", "version": "1.0.0", "license": measured_licence,
        "requires_python": ">=3.10", "direct_dependencies": 1, "direct_dependency_names": ["httpx"],
        "installed_distributions": 7, "installed_size_bytes": 1000, "import_time_ms": 5.0}}}
    (data / "measurements.json").write_text(json.dumps(meas))
    return data


def test_read_wheel_metadata_applies_markers(tmp_path):
    from knollm.libraries.check import read_wheel_metadata

    wheel = _fake_wheel(tmp_path, "fakellm", "1.0.0", license="Apache-2.0", requires=(
        "httpx>=0.27", "rich; extra == 'cli'", "tomli; python_version < '3.0'", "Typing_Extensions"))
    meta = read_wheel_metadata(wheel)
    assert (meta.name, meta.version, meta.license, meta.requires_python) == ("fakellm", "1.0.0", "Apache-2.0", ">=3.10")
    assert meta.direct_dependencies == ("httpx", "typing-extensions")
    assert len(meta.requires_dist) == 4
    bad = tmp_path / "broken-1.0-py3-none-any.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CatalogError, match="broken-1.0-py3-none-any.whl"):
        read_wheel_metadata(bad)


def test_check_flags_a_deliberately_wrong_cell(tmp_path):
    """The measured licence says MIT, the wheel says Apache-2.0; observability is marked
    no while the wheel requires opentelemetry-api: both are flagged, exit code 1."""
    data = _fake_library_dir(tmp_path, observability=False)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _fake_wheel(wheels, "fakellm", "1.0.0", license="Apache-2.0", requires=("httpx>=0.27", "opentelemetry-api>=1"))
    res = CliRunner().invoke(libcli.command, ["check", "--wheels", str(wheels), "--offline", "--data-dir", str(data),
                                              "--json"])
    assert res.exit_code == 1, res.output
    (check,) = json.loads(res.output)
    flagged = {(f["level"], f["field"]) for f in check["findings"]}
    assert ("contradiction", "license") in flagged
    assert ("contradiction", "features.observability_hooks") in flagged
    assert ("contradiction", "direct_dependencies") in flagged  # opentelemetry-api is new
    stored = load_libraries(data)[0].check
    assert stored is not None and stored.newest_version == "1.0.0" and stored.findings


def test_check_passes_a_matching_wheel_and_site_shows_checked_date(tmp_path):
    data = _fake_library_dir(tmp_path)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _fake_wheel(wheels, "fakellm", "1.0.0", requires=("httpx>=0.27", "rich; extra == 'cli'"))
    res = CliRunner().invoke(libcli.command, ["check", "--wheels", str(wheels), "--offline", "--data-dir", str(data)])
    assert res.exit_code == 0, res.output
    assert "fakellm" in res.output
    (rec,) = load_libraries(data)
    assert rec.check is not None and rec.check.findings == []
    rows = list_libraries(records=[rec])
    page = render_library_page(rows[0])
    assert f"Checked on **{rec.check.checked_at}**" in page
    assert "No cell contradicts" in page
    index = render_all(rows)["index.md"]
    assert rec.check.checked_at in index and "| Checked |" in index


def test_check_newer_wheel_is_behind_and_stale_not_contradiction(tmp_path):
    data = _fake_library_dir(tmp_path)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _fake_wheel(wheels, "fakellm", "1.0.0", requires=("httpx>=0.27",))
    _fake_wheel(wheels, "fakellm", "1.2.0", requires_python=">=3.11", requires=("httpx>=0.27",))
    res = CliRunner().invoke(libcli.command, ["check", "--wheels", str(wheels), "--offline", "--data-dir", str(data),
                                              "--json", "--no-write"])
    assert res.exit_code == 0, res.output  # nothing contradicts: the facts are only out of date
    (check,) = json.loads(res.output)
    assert check["newest_version"] == "1.2.0"  # the newest wheel in the directory is read
    levels = {(f["level"], f["field"]) for f in check["findings"]}
    assert ("behind", "version") in levels
    assert ("stale", "requires_python") in levels
    assert ("stale", "features.async") in levels  # read in the source of 1.0.0
    assert not (data / "checks.json").exists()


def test_check_missing_wheel_is_an_error_not_a_crash(tmp_path):
    data = _fake_library_dir(tmp_path)
    empty = tmp_path / "none"
    empty.mkdir()
    res = CliRunner().invoke(libcli.command, ["check", "--wheels", str(empty), "--offline", "--data-dir", str(data),
                                              "--json", "--no-write"])
    assert res.exit_code == 1
    (check,) = json.loads(res.output)
    assert "no wheel" in check["error"] and check["newest_version"] is None


def test_check_rejects_unknown_slug(tmp_path):
    data = _fake_library_dir(tmp_path)
    res = CliRunner().invoke(libcli.command, ["check", "nope", "--offline", "--data-dir", str(data)])
    assert res.exit_code == 2 and "unknown library slug" in res.output


def test_index_info_reads_dates_yanked_and_advisories():
    from knollm.libraries.check import index_info

    page = {"info": {"version": "2.0"}, "releases": {
        "1.0": [{"upload_time": "2025-01-02T00:00:00", "yanked": False}],
        "1.5": [{"upload_time": "2025-06-01T10:00:00", "yanked": True, "yanked_reason": "broken build"}],
        "2.0": [{"upload_time": "2026-03-04T00:00:00", "yanked": False},
                {"upload_time": "2026-03-03T23:00:00", "yanked": False}]},
        "vulnerabilities": [{"id": "GHSA-xxxx", "aliases": ["CVE-2026-1"], "fixed_in": ["2.1"], "link": "https://x"},
                            {"id": "PYSEC-old", "withdrawn": "2026-01-01"}]}
    seen = []
    info = index_info("Fake_LLM", "2.0", "1.0", get_json=lambda url: seen.append(url) or page)
    assert seen == ["https://pypi.org/pypi/fake-llm/json"]
    assert (info.newest_released, info.measured_released) == ("2026-03-03", "2025-01-02")
    assert info.yanked == ({"version": "1.5", "reason": "broken build"},)
    assert [a["id"] for a in info.advisories] == ["GHSA-xxxx"]  # withdrawn ones are left out


def test_open_advisory_is_flagged(tmp_path, records):
    from knollm.libraries.check import IndexInfo, WheelMetadata, check_record

    rec = next(r for r in records if r.slug == "requests")
    m = rec.measurement
    meta = WheelMetadata(name="requests", version=m.version, license=m.license, requires_python=m.requires_python,
                         requires_dist=(), direct_dependencies=tuple(m.direct_dependency_names), wheel="x.whl")
    idx = IndexInfo(source="https://pypi.org/pypi/requests/json", newest=m.version, newest_released="2026-01-01",
                    measured_released="2026-01-01", yanked=(), advisories=({"id": "GHSA-test", "aliases": [],
                                                                             "fixed_in": ["9.9"], "link": None},),
                    advisories_source="https://pypi.org/pypi/requests/json")
    check = check_record(rec, meta, idx, "2026-11-23")
    assert [f["field"] for f in check.contradictions] == ["security"]
    assert "GHSA-test" in check.contradictions[0]["message"]


# ----------------------------------------------------------------------------- security, "not run here"
def test_security_notes_are_sourced_and_shown(records):
    lit = next(r for r in records if r.slug == "litellm")
    (note,) = lit.library.security
    assert note.kind == "compromised" and "1.82.7" in note.versions and "1.82.8" in note.versions
    assert all(s.startswith("https://") for s in note.sources)
    rows = list_libraries(records=records)
    matrix = render_matrix(rows)
    assert "| Security |" in matrix
    assert "compromised 1.82.7, 1.82.8" in matrix.replace("\u00a0", " ")  # one unbreakable link text
    page = render_library_page(next(r for r in rows if r.slug == "litellm"))
    assert "## Security" in page and "github.com/BerriAI/litellm/issues/24518" in page
    assert "**Not run here**" in page


def test_not_run_example_cannot_have_tested_cells():
    lib = json.loads((DATA_DIR / "openai.json").read_text())
    lib["example"]["runs"] = "not-run"
    lib["example"]["not_run_reason"] = "test"
    with pytest.raises(Exception, match="not run here"):
        Library.model_validate(lib)
    lib["example"]["not_run_reason"] = None
    with pytest.raises(Exception, match="not_run_reason"):
        Library.model_validate(lib)


def test_security_note_needs_https_sources():
    from knollm.libraries.schema import SecurityNote

    with pytest.raises(Exception):
        SecurityNote.model_validate({"kind": "compromised", "versions": "1.0", "summary": "x",
                                     "sources": ["http://insecure"], "checked": "2026-01-01"})


def test_show_prints_check_and_security():
    res = CliRunner().invoke(libcli.command, ["show", "litellm"])
    assert res.exit_code == 0
    assert "security: compromised 1.82.7, 1.82.8" in res.output
    assert "example: not run here" in res.output
    res = CliRunner().invoke(libcli.command, ["show", "litellm", "--json"])
    payload = json.loads(res.output)
    assert payload["security"][0]["kind"] == "compromised" and payload["example_runs"] == "not-run"


# ----------------------------------------------------------------------------- issue 19 facts
def _roots(lib) -> set[str]:
    return {u.rstrip("/") for u in (lib.homepage, lib.docs, lib.repository or "") if u}


@pytest.mark.parametrize("slug", ["anthropic", "aisuite", "langchain", "llama-index", "guidance", "outlines"])
def test_reviewed_cells_do_not_point_at_a_home_page(records, slug):
    """Each cell of these reviewed libraries names the page or source line that establishes it."""
    lib = next(r for r in records if r.slug == slug).library
    cells = [("openai_compatible_base_url", lib.openai_compatible_base_url)] + lib.features.items()
    vague = [name for name, c in cells if c.value is not None and c.ref.rstrip("/") in _roots(lib)]
    assert not vague, f"{slug}: cells pointing at a home page: {vague}"
    for name, c in cells:
        if c.how == "source":
            assert re.match(r"^[a-z0-9-]+ \d[^ :]*: \S", c.ref), f"{slug}.{name}: source ref without release: {c.ref}"


def test_issue_19_cells(records):
    by = {r.slug: r.library for r in records}
    ant = by["anthropic"].features
    assert ant.cell("structured_output").value is True and "parse" in ant.cell("structured_output").ref
    assert ant.cell("observability_hooks").value is True and "open_telemetry" in ant.cell("observability_hooks").ref
    assert ant.cell("local_models").value is True and ant.cell("local_models").how == "tested"
    ais = by["aisuite"].features
    assert ais.cell("retries").value is False and ais.cell("retries").how == "source"
    assert ais.cell("structured_output").value is False and ais.cell("structured_output").how == "source"
    lit = by["litellm"]
    assert lit.example.runs == "not-run" and lit.security
    assert all(c.how != "tested" for _, c in lit.features.items())
    for slug in ("instructor", "llama-index", "guidance"):
        assert by[slug].example.runs == "own-venv", slug
