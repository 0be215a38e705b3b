"""Markdown for the site's libraries section. Plain functions returning strings.

Every piece of data text is escaped with :func:`html.escape` (and ``|`` in table
cells), so a pro, con or note can never inject HTML or break a table. Example
code is put in a fence longer than any backtick run it contains.
"""

from __future__ import annotations

import html
import re

from knollm.libraries.query import Row
from knollm.libraries.rubric import CRITERIA
from knollm.libraries.schema import CATEGORIES, FEATURE_LABELS, FEATURES, USE_CASES, Cell, effective_import_ms

__all__ = ["write_section", "esc", "render_matrix", "render_library_page", "render_guide", "render_rubric", "render_index",
           "render_all", "page_name", "security_summary"]

HOW_MARK = {"docs": "D", "source": "S", "tested": "T", "measured": "M"}
HOW_TEXT = {"docs": "documented", "source": "read in source", "tested": "tested here", "measured": "measured"}


def esc(text: object) -> str:
    """Escape for Markdown/HTML inline text and table cells."""
    s = html.escape("" if text is None else str(text), quote=True)
    return s.replace("|", "&#124;").replace("\n", " ")


def page_name(slug: str) -> str:
    return f"{slug}.md"


def _link(text: str, url: str | None) -> str:
    if not url:
        return esc(text)
    return f"[{esc(text)}]({html.escape(url, quote=True)})"


def _ref(cell: Cell) -> str:
    if cell.ref.startswith("https://"):
        return _link("docs" if cell.how == "docs" else "source", cell.ref)
    return f"`{esc(cell.ref)}`"


def _mark(cell: Cell) -> str:
    sym = {True: "✓", False: "✗", None: "?"}[cell.value]
    title = esc(f"{HOW_TEXT[cell.how]}: {cell.ref}" + (f" — {cell.note}" if cell.note else ""))
    return f'<span title="{title}">{sym}<sup>{HOW_MARK[cell.how]}</sup></span>'


def _fence(code: str, lang: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{code.rstrip()}\n{fence}"


def _fmt(v: object, unit: str = "") -> str:
    if v is None:
        return "—"
    return f"{esc(v)}{unit}"


def render_matrix(rows: list[Row]) -> str:
    head = "| Library | Category | " + " | ".join(FEATURE_LABELS[f] for f in FEATURES) + " | Security | Rating |"
    sep = "|" + "---|" * (len(FEATURES) + 4)
    lines = [
        "# Library × feature matrix",
        "",
        "✓ yes, ✗ no, ? unknown. The letter says how each cell was established: "
        "**T** tested here against a local OpenAI-compatible server, **D** documented, "
        "**S** read in the source, **M** measured. Hover a cell for its reference. "
        "**T** means the example exercised the feature: streaming chunks counted, a tool-call round "
        "trip, the reply's type asserted; examples marked *not run here* prove nothing. Security: known "
        "compromised releases and open advisories (sourced on each library's page).",
        "",
        head,
        sep,
    ]
    for row in rows:
        lib = row.record.library
        cells = " | ".join(_mark(lib.features.cell(f)) for f in FEATURES)
        lines.append(f"| [{esc(lib.name)}]({page_name(lib.slug)}) | {esc(CATEGORIES[lib.category])} | {cells} | "
                     f"{security_summary(row)} | {row.rating.rating}/7 |")
    return "\n".join(lines) + "\n"


def security_summary(row: Row) -> str:
    """One table cell: compromised releases and open advisories, else "none known"."""
    lib, chk = row.record.library, row.record.check
    bits = [f"⚠ {esc(n.kind)} {esc(n.versions)}" for n in lib.security]
    if chk is not None and chk.advisories:
        bits.append(f"⚠ {len(chk.advisories)} open advisor{'y' if len(chk.advisories) == 1 else 'ies'}")
    if bits:  # one unbreakable link text: the table scrolls sideways rather than wrap it mid-phrase
        text = " · ".join(bits).replace(" ", "\u00a0")
        return f"[{text}]({page_name(lib.slug)}#security)"
    if lib.pypi is None:
        return "n/a"
    if chk is None:
        return "not checked"
    return f"none known ({esc(chk.checked_at)})"


def _facts(row: Row) -> list[str]:
    m = row.record.measurement
    lib = row.record.library
    out = ["## Measured facts", ""]
    if m is None:
        out += ["Not measured yet: run `python scripts/measure_libraries.py " + esc(lib.slug) + "`.", ""]
        return out
    out.append(f"Measured on **{esc(row.record.measured_at)}** by `scripts/measure_libraries.py` "
               "in a fresh virtual environment.")
    out.append("")
    if lib.pypi is None:
        out += ["| Fact | Value |", "|---|---|", f"| Version | {_fmt(m.version)} |"]
        if m.note:
            out.append(f"| Note | {esc(m.note)} |")
        return out + [""]
    if m.error:
        out += [f"Measurement failed: `{esc(m.error[:300])}`", ""]
        return out
    size = None if m.installed_size_bytes is None else f"{m.installed_size_bytes / 1_000_000:.1f}"
    chk = row.record.check
    released = m.version_released or (chk.measured_released if chk and chk.measured_version == m.version else None)
    out += [
        "| Fact | Value |",
        "|---|---|",
        f"| PyPI | [{esc(lib.pypi)}](https://pypi.org/project/{html.escape(lib.pypi)}/) |",
        f"| Version measured | {_fmt(m.version)}"
        + (f" (released {esc(released)})" if released else "")
        + f", measured {_fmt(row.record.measured_at)}: {esc(m.version_source or 'the newest release uv resolved for this Python in a fresh venv')} |",
        f"| Newest release | {_newest(row)} |",
        f"| Licence | {_fmt(m.license)} |",
        f"| Requires-Python | {_fmt(m.requires_python)} |",
        f"| Direct dependencies | {_fmt(m.direct_dependencies)} |",
        f"| All installed dependencies | {_fmt(m.installed_distributions)} |",
        f"| Installed size | {_fmt(size, ' MB')} |",
        f"| Cold import of `{esc(lib.module)}` | {_fmt(m.import_time_ms, ' ms')} (median) |",
        f"| Cold import of `{esc(m.entry_statement)}` | {_fmt(m.entry_import_ms, ' ms')} (median) |",
    ]
    for v in getattr(m, "import_variants", None) or []:
        env = " ".join(f"{k}={val}" for k, val in (v.get("env") or {}).items())
        out.append(f"| Cold import with `{esc(env)}` | {_fmt(v.get('import_time_ms'), ' ms')} "
                   f"(entry {_fmt(v.get('entry_import_ms'), ' ms')}) |")
    if m.note:
        out.append(f"| Note | {esc(m.note)} |")
    out.append("")
    return out


def _newest(row: Row) -> str:
    chk = row.record.check
    if chk is None:
        return "not checked yet (`knollm libraries check`)"
    if chk.newest_version is None:
        return f"unknown: check of {esc(chk.checked_at)} failed ({esc((chk.error or '')[:200])})"
    rel = f" (released {esc(chk.newest_released)})" if chk.newest_released else ""
    return f"{esc(chk.newest_version)}{rel}, checked {esc(chk.checked_at)}: {esc(chk.newest_source)}"


def _check_section(row: Row) -> list[str]:
    lib, chk = row.record.library, row.record.check
    if lib.pypi is None:
        return []
    out = ["## Checked against the index", ""]
    if chk is None:
        return out + ["Not checked yet: `knollm libraries check " + esc(lib.slug) + "` reads the newest wheel's "
                      "metadata and flags the cells it contradicts.", ""]
    out.append(f"Checked on **{esc(chk.checked_at)}** by `knollm libraries check`: the newest wheel's METADATA "
               "(version, licence, Requires-Python, Requires-Dist) compared with this page.")
    out.append("")
    if chk.error:
        out += [f"Problem: `{esc(chk.error[:300])}`", ""]
    if chk.findings:
        out += ["| Finding | Field | Detail |", "|---|---|---|"]
        out += [f"| {esc(f.get('level'))} | {esc(f.get('field'))} | {esc(f.get('message'))} |" for f in chk.findings]
    else:
        out.append("No cell contradicts the newest wheel's metadata.")
    return out + [""]


def _security_section(row: Row) -> list[str]:
    lib, chk = row.record.library, row.record.check
    out = ["## Security", ""]
    for n in lib.security:
        links = ", ".join(_link(f"source {i + 1}", u) for i, u in enumerate(n.sources))
        out.append(f"- **{esc(n.kind)}: {esc(n.versions)}** — {esc(n.summary)} ({links}; read {esc(n.checked)})"
                   + (f" {esc(n.note)}" if n.note else ""))
    if chk is not None:
        src = _link("PyPI JSON", chk.advisories_source) if chk.advisories_source else "PyPI JSON"
        if chk.advisories:
            for a in chk.advisories:
                aka = f" ({esc(', '.join(a.get('aliases') or []))})" if a.get("aliases") else ""
                fixed = f", fixed in {esc(', '.join(a.get('fixed_in') or []))}" if a.get("fixed_in") else ""
                out.append(f"- **open advisory {_link(str(a.get('id')), a.get('link'))}**{aka} affects "
                           f"{esc(chk.newest_version)}{fixed} ({src}, {esc(chk.checked_at)})")
        elif chk.advisories_source:
            out.append(f"- No open advisory for {esc(chk.newest_version)} ({src}, {esc(chk.checked_at)}).")
        if chk.yanked:
            shown = ", ".join(esc(y["version"]) + (f" ({esc(y['reason'])})" if y.get("reason") else "")
                              for y in chk.yanked[:10])
            more = f" and {len(chk.yanked) - 10} more" if len(chk.yanked) > 10 else ""
            out.append(f"- Yanked releases: {shown}{more} (PyPI JSON, {esc(chk.checked_at)}).")
    if len(out) == 2:
        out.append("No compromised release or advisory recorded"
                   + (f"; advisory sources searched {esc(lib.security_reviewed)}." if lib.security_reviewed else
                      "; not checked against the index yet." if lib.pypi else "."))
    return out + [""]


def _rubric_rows(row: Row) -> list[str]:
    out = [f"## Rating: {row.rating.rating}/7", "",
           f"Weighted score {row.rating.score:.2f}, computed from the data by the [rubric](rubric.md); "
           "never set by hand.", "",
           "| Criterion | Weight | Score | Why |", "|---|---|---|---|"]
    for c in row.rating.criteria:
        score = "n/a" if c.score is None else f"{c.score:.2f}"
        out.append(f"| {esc(c.label)} | {c.weight} | {score} | {esc(c.explanation)} |")
    return out + [""]


def render_library_page(row: Row) -> str:
    lib = row.record.library
    lines = [
        f"# {esc(lib.name)}",
        "",
        esc(lib.summary),
        "",
        f"**Category:** {esc(CATEGORIES[lib.category])} · "
        f"**Home:** {_link('homepage', lib.homepage)} · **Docs:** {_link('documentation', lib.docs)}"
        + (f" · **Code:** {_link('repository', lib.repository)}" if lib.repository else ""),
        "",
    ]
    lines += _facts(row)
    lines += _check_section(row)
    lines += _security_section(row)
    lines += _rubric_rows(row)
    lines += ["## Features", "", "| Feature | Value | How established | Reference | Note |", "|---|---|---|---|---|"]
    base = lib.openai_compatible_base_url
    for label, cell in [("OpenAI-compatible base URL", base)] + [(FEATURE_LABELS[f], c) for f, c in lib.features.items()]:
        val = {True: "✓ yes", False: "✗ no", None: "? unknown"}[cell.value]
        lines.append(f"| {esc(label)} | {val} | {esc(HOW_TEXT[cell.how])} | {_ref(cell)} | {esc(cell.note or '')} |")
    lines += ["", "## Minimal example", ""]
    ex = lib.example
    covered = ", ".join(ex.covers) or "—"
    venv = " in its own venv (built from PyPI by `.ci/install`)" if ex.runs == "own-venv" else ""
    if ex.runs == "not-run":
        lines.append(f"Covers: {esc(covered)}. **Not run here**: {esc(ex.not_run_reason)} "
                     "No feature of this library is marked tested.")
    elif ex.targets_base_url and ex.api == "anthropic":
        lines.append(f"Covers: {esc(covered)}. Executed by `tests/test_library_examples.py`{venv} against the local "
                     "test server's Anthropic-compatible `/v1/messages` endpoint on 127.0.0.1 (`ANTHROPIC_BASE_URL`, "
                     "`ANTHROPIC_API_KEY`); skipped there when the library is not installed.")
    elif ex.targets_base_url:
        lines.append(f"Covers: {esc(covered)}. Executed by `tests/test_library_examples.py`{venv} against a local "
                     "OpenAI-compatible server on 127.0.0.1 (`OPENAI_BASE_URL`, `OPENAI_API_KEY`); skipped there "
                     "when the library is not installed.")
    else:
        lines.append(f"Covers: {esc(covered)}. Not run by the test suite: it cannot target a local "
                     "OpenAI-compatible server.")
    if ex.requires:
        lines += ["", "Install: `pip install " + esc(" ".join(ex.requires)) + "`"]
    if ex.note:
        lines += ["", esc(ex.note)]
    lines += ["", _fence(ex.code, ex.language), ""]
    lines += ["## Pros", ""] + [f"- {esc(p)}" for p in lib.pros] + [""]
    lines += ["## Cons", ""] + [f"- {esc(c)}" for c in lib.cons] + [""]
    lines += ["## Best fit", ""] + [f"- {esc(USE_CASES[u])}" for u in lib.use_cases] + [""]
    return "\n".join(lines)


def render_guide(rows: list[Row]) -> str:
    lines = ["# Which library?", "",
             "By use case, the libraries whose data lists it, best rated first. Ratings come from the "
             "[rubric](rubric.md); features from the [matrix](matrix.md).", ""]
    for key, label in USE_CASES.items():
        fits = [r for r in rows if key in r.record.library.use_cases]
        lines += [f"## {esc(label)}", ""]
        if not fits:
            lines += ["No library in the catalog lists this use case.", ""]
            continue
        for r in sorted(fits, key=lambda r: (-r.rating.score, r.slug)):
            lib = r.record.library
            lines.append(f"- [{esc(lib.name)}]({page_name(lib.slug)}) — {r.rating.rating}/7, "
                         f"{esc(CATEGORIES[lib.category])}. {esc(lib.pros[0])}")
        lines.append("")
    lines += ["From the command line: `knollm libraries recommend --needs async,streaming,tool_calling`.", ""]
    return "\n".join(lines)


def render_rubric(rows: list[Row] | None = None) -> str:
    lines = ["# Rating rubric", "",
             "Every library's rating (1–7) is computed by `knollm.libraries.rubric.rate` from its data file "
             "and the measured facts; none is set by hand. Each criterion scores 1–7, the rating is the "
             "weighted mean rounded half up. A criterion without data (e.g. install size of curl, which is "
             "not a Python package) is left out and the other weights renormalised.", "",
             "| Criterion | Weight | How it is scored |", "|---|---|---|"]
    for c in CRITERIA:
        lines.append(f"| {esc(c.label)} | {c.weight} | {esc(c.description)} |")
    lines.append("")
    if rows:
        keys = [c.key for c in CRITERIA]
        lines += ["## Scores", "",
                  "| Library | " + " | ".join(esc(c.label) for c in CRITERIA) + " | Score | Rating |",
                  "|" + "---|" * (len(keys) + 3)]
        for r in rows:
            by = {c.key: c for c in r.rating.criteria}
            vals = " | ".join("n/a" if by[k].score is None else f"{by[k].score:.1f}" for k in keys)
            lines.append(f"| [{esc(r.record.library.name)}]({page_name(r.slug)}) | {vals} | "
                         f"{r.rating.score:.2f} | **{r.rating.rating}** |")
        lines.append("")
    return "\n".join(lines)


def render_index(rows: list[Row]) -> str:
    dates = sorted({r.record.measured_at for r in rows if r.record.measured_at})
    lines = ["# Python LLM client libraries", "",
             "Developers pick the library as well as the model. This section compares "
             f"{len(rows)} ways to call an LLM from Python, from raw HTTP to agent frameworks. "
             "Install and import facts are measured, features are sourced cell by cell, each library "
             "file is checked against the newest wheel on the index, and the examples run in the test "
             "suite against a local server speaking the library's API (those that cannot are marked "
             "*not run here*).", "",
             "- [Feature matrix](matrix.md)", "- [Which library?](guide.md)", "- [Rating rubric](rubric.md)", "",
             "## How the cells are established", "",
             "- **Tested here**: the library's example ran in this project's tests against a server on "
             "127.0.0.1 speaking the library's API (OpenAI Chat Completions, or Anthropic Messages) and "
             "exercised the feature: streaming counts the chunks it received, tool calling completes a "
             "round trip (the tool result goes back and the model's answer is read), typed responses "
             "assert the reply's class. Examples that need a conflicting dependency run in their own venv "
             "(built from PyPI); an example marked *not run here* proves nothing and no cell of it is "
             "tested.",
             "- **Read in source / documented**: the reference names the file and line of the release "
             "read, or the documentation page that states it.",
             "- **Checked**: `knollm libraries check` (run daily by the refresh workflow) reads the newest "
             "wheel's metadata and PyPI's JSON API and flags what contradicts the library's page; each "
             "page shows the date, the newest release and the version measured, each with its date and source.",
             "- **Security**: known compromised releases (sourced notes) and the open advisories and yanked "
             "releases PyPI lists.", "",
             "## Measured side by side", ""]
    if dates:
        lines += [f"Measured on {esc(', '.join(dates))} (Python, fresh venv per library).", ""]
    lines += ["Import (ms) is the larger of the bare module import and the entry statement "
              "(e.g. `from openai import OpenAI`), median of fresh processes.", "",
              "Version measured is what the measurement installed; newest is the newest release on the "
              "index when `knollm libraries check` last ran (checked date).", "",
              "| Library | Category | Measured | Newest | Checked | Direct deps | All deps | Size (MB) | Import (ms) "
              "| Security | Rating |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lib, m, chk = r.record.library, r.record.measurement, r.record.check
        size = None if m is None or m.installed_size_bytes is None else f"{m.installed_size_bytes / 1e6:.1f}"
        lines.append(
            f"| [{esc(lib.name)}]({page_name(lib.slug)}) | {esc(CATEGORIES[lib.category])} | "
            f"{_fmt(m.version if m else None)} | {_fmt(chk.newest_version if chk else None)} | "
            f"{_fmt(chk.checked_at if chk else None)} | {_fmt(m.direct_dependencies if m else None)} | "
            f"{_fmt(m.installed_distributions if m else None)} | {_fmt(size)} | "
            f"{_fmt(effective_import_ms(m))} | {security_summary(r)} | {r.rating.rating}/7 |")
    return "\n".join(lines) + "\n"


def render_all(rows: list[Row]) -> dict[str, str]:
    """``{relative path: markdown}`` for the whole section (under ``libraries/``)."""
    pages = {
        "index.md": render_index(rows),
        "matrix.md": render_matrix(rows),
        "guide.md": render_guide(rows),
        "rubric.md": render_rubric(rows),
    }
    for r in rows:
        pages[page_name(r.slug)] = render_library_page(r)
    return pages


def write_section(directory, rows: list[Row] | None = None) -> list[str]:
    """Write the whole libraries section as Markdown files into ``directory``
    (created if missing); returns the written file names. ``rows`` default to
    :func:`knollm.libraries.query.list_libraries`."""
    from pathlib import Path

    from knollm.libraries.query import list_libraries

    rows = rows if rows is not None else list_libraries()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all(rows).items():
        (out / name).write_text(text, encoding="utf-8")
        written.append(name)
    return sorted(written)
