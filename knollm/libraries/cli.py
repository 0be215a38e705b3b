"""``knollm libraries list|show NAME|recommend --needs a,b|check``.

Exit codes: 0 ok, 1 not found (or a data error; for ``check``: a contradiction or a
wheel that could not be read), 2 usage error.
Every subcommand takes ``--json``; otherwise it prints a readable table.
"""

from __future__ import annotations

import json

import click

from knollm.fmt import format_table

from knollm.errors import KnollmError, NotFoundError
from knollm.libraries.query import get_library, list_libraries, recommend
from knollm.libraries.schema import CATEGORIES, FEATURE_LABELS, FEATURES, USE_CASES, effective_import_ms

__all__ = ["command"]


def _emit_json(payload: object) -> None:
    click.echo(json.dumps(payload, indent=2, ensure_ascii=False))


def _table(headers: list[str], rows: list[list[str]]) -> str:
    return format_table([dict(zip(headers, r)) for r in rows], headers, max_width=10_000)


def _fail(exc: KnollmError) -> int:
    click.echo(f"error: {exc}", err=True)
    return 1


def _summary(row) -> dict:
    lib, m = row.record.library, row.record.measurement
    return {
        "slug": lib.slug,
        "name": lib.name,
        "pypi": lib.pypi,
        "category": lib.category,
        "rating": row.rating.rating,
        "score": round(row.rating.score, 2),
        "version": m.version if m else None,
        "direct_dependencies": m.direct_dependencies if m else None,
        "installed_distributions": m.installed_distributions if m else None,
        "installed_size_mb": round(m.installed_size_bytes / 1e6, 1) if m and m.installed_size_bytes is not None else None,
        "import_time_ms": m.import_time_ms if m else None,
        "entry_import_ms": m.entry_import_ms if m else None,
        "effective_import_ms": effective_import_ms(m),
        "measured_at": row.record.measured_at,
        "newest_version": row.record.check.newest_version if row.record.check else None,
        "checked_at": row.record.check.checked_at if row.record.check else None,
        "security": [n.kind + " " + n.versions for n in lib.security],
        "example_runs": lib.example.runs,
        "features": {f: lib.features.cell(f).value for f in FEATURES},
    }


def _s(v: object) -> str:
    return "-" if v is None else str(v)


@click.group(name="libraries", help="Python LLM client libraries: list, show, recommend, check.")
def command() -> None:
    pass


@command.result_callback()
def _exit_code(rv: int | None) -> int:
    """Subcommands return their exit code; pass it on as click's ``Exit`` (so ``knollm.cli.main``
    returns it and ``python -m knollm.libraries`` exits with it), never via ``sys.exit``."""
    if rv:
        raise click.exceptions.Exit(rv)
    return 0


@command.command("list", help="List the libraries, best rated first.")
@click.option("--category", type=click.Choice(sorted(CATEGORIES)), default=None, help="Only this category.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(category: str | None, as_json: bool) -> int:
    try:
        rows = list_libraries(category=category)
    except KnollmError as exc:
        return _fail(exc)
    if as_json:
        _emit_json([_summary(r) for r in rows])
        return 0
    table = [[s["slug"], CATEGORIES[s["category"]], f"{s['rating']}/7", _s(s["version"]), _s(s["newest_version"]),
              _s(s["checked_at"]), _s(s["direct_dependencies"]), _s(s["installed_distributions"]),
              _s(s["installed_size_mb"]), _s(s["effective_import_ms"]), "; ".join(s["security"]) or "-"]
             for s in map(_summary, rows)]
    click.echo(_table(["library", "category", "rating", "measured", "newest", "checked", "direct", "all deps", "MB",
                       "import ms", "security"], table))
    return 0


@command.command("show", help="Everything about one library.")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def show_cmd(name: str, as_json: bool) -> int:
    try:
        row = get_library(name)
    except NotFoundError as exc:
        if as_json:
            _emit_json({"error": "not_found", "kind": exc.kind, "name": exc.name, "suggestions": exc.suggestions})
        click.echo(f"error: {exc}", err=True)
        return 1
    except KnollmError as exc:
        return _fail(exc)
    lib, m = row.record.library, row.record.measurement
    if as_json:
        payload = _summary(row)
        payload.update({
            "summary": lib.summary,
            "homepage": lib.homepage,
            "docs": lib.docs,
            "features": {f: c.model_dump() for f, c in lib.features.items()},
            "openai_compatible_base_url": lib.openai_compatible_base_url.model_dump(),
            "measurement": m.model_dump(exclude={"installed_distribution_names"}) if m else None,
            "rubric": row.rating.as_dict(),
            "pros": lib.pros,
            "cons": lib.cons,
            "use_cases": lib.use_cases,
            "example": lib.example.model_dump(),
            "security": [n.model_dump() for n in lib.security],
            "security_reviewed": lib.security_reviewed,
            "check": row.record.check.model_dump() if row.record.check else None,
        })
        _emit_json(payload)
        return 0
    click.echo(f"{lib.name} ({lib.slug}) — {CATEGORIES[lib.category]} — rated {row.rating.rating}/7 "
               f"(score {row.rating.score:.2f})")
    click.echo(lib.summary)
    click.echo(f"docs: {lib.docs}")
    if m is not None:
        click.echo(f"measured {row.record.measured_at}: version {_s(m.version)}, licence {_s(m.license)}, "
                   f"requires-python {_s(m.requires_python)}, direct deps {_s(m.direct_dependencies)}, "
                   f"all deps {_s(m.installed_distributions)}, size "
                   f"{_s(None if m.installed_size_bytes is None else round(m.installed_size_bytes / 1e6, 1))} MB, "
                   f"import {_s(m.import_time_ms)} ms ({_s(m.entry_statement)}: {_s(m.entry_import_ms)} ms)")
    chk = row.record.check
    if chk is not None:
        click.echo(f"checked {chk.checked_at}: newest {_s(chk.newest_version)} (released {_s(chk.newest_released)}); "
                   f"measured {_s(chk.measured_version)} (released {_s(chk.measured_released)})"
                   + (f"; error: {chk.error}" if chk.error else ""))
        for f in chk.findings:
            click.echo(f"  {f.get('level')}: {f.get('field')}: {f.get('message')}")
    else:
        click.echo("not checked against the index yet: knollm libraries check " + lib.slug)
    for n in lib.security:
        click.echo(f"security: {n.kind} {n.versions}: {n.summary} ({', '.join(n.sources)})")
    if lib.example.runs == "not-run":
        click.echo(f"example: not run here ({lib.example.not_run_reason})")
    click.echo("")
    click.echo(_table(["feature", "value", "how", "ref"],
                      [[FEATURE_LABELS[f], {True: "yes", False: "no", None: "?"}[c.value], c.how, c.ref]
                       for f, c in lib.features.items()]))
    click.echo("")
    click.echo(_table(["criterion", "weight", "score", "why"],
                      [[c.label, str(c.weight), "n/a" if c.score is None else f"{c.score:.2f}", c.explanation]
                       for c in row.rating.criteria]))
    click.echo("")
    click.echo("pros: " + "; ".join(lib.pros))
    click.echo("cons: " + "; ".join(lib.cons))
    return 0


@command.command("recommend", help="Libraries that have every needed feature, best first.")
@click.option("--needs", default="", help="Comma-separated features: " + ",".join(FEATURES))
@click.option("--use-case", type=click.Choice(list(USE_CASES)), default=None, help="Only libraries fit for this.")
@click.option("--partial", is_flag=True, help="Also list libraries missing some needs.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def recommend_cmd(needs: str, use_case: str | None, partial: bool, as_json: bool) -> int:
    try:
        recs = recommend(needs=needs, use_case=use_case, include_partial=partial)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except KnollmError as exc:
        return _fail(exc)
    if as_json:
        _emit_json([r.as_dict() for r in recs])
        return 0
    if not recs:
        click.echo("no library has all of: " + (needs or "(nothing)"))
        return 0
    click.echo(_table(["library", "rating", "why"],
                      [[r.row.slug, f"{r.row.rating.rating}/7", r.explanation] for r in recs]))
    return 0


@command.command("check", help="Compare each library file with the newest wheel on the index "
                 "(pip download --no-deps) and flag cells its metadata contradicts.")
@click.argument("slugs", nargs=-1)
@click.option("--wheels", "wheels_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Read the wheels in DIR instead of downloading them.")
@click.option("--offline", is_flag=True, help="Do not read the index page (no upload dates, no yanked list).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Keep downloaded wheels here (default: a temporary directory).")
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Library files to check (default: work/api_inference).")
@click.option("--write/--no-write", default=True, show_default=True,
              help="Store the results in DATA_DIR/checks.json (the site shows them).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check_cmd(slugs: tuple[str, ...], wheels_dir: str | None, offline: bool, cache_dir: str | None,
              data_dir: str | None, write: bool, as_json: bool) -> None:
    from pathlib import Path

    from knollm.libraries.check import check_libraries, write_checks
    from knollm.libraries.load import CHECKS_FILE, DATA_DIR, load_libraries

    try:
        records = load_libraries(data_dir)
    except KnollmError as exc:
        _fail(exc)
    if slugs:
        known = {r.slug for r in records}
        unknown = [s for s in slugs if s not in known]
        if unknown:
            raise click.UsageError(f"unknown library slug(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        records = [r for r in records if r.slug in slugs]
    progress = None if as_json else (lambda slug: click.echo(f"checking {slug}", err=True))
    checks = check_libraries(records, wheels_dir=wheels_dir, offline=offline, cache_dir=cache_dir,
                             progress=progress)
    if write:
        write_checks(Path(data_dir or DATA_DIR) / CHECKS_FILE, checks, offline=offline)
    bad = [c for c in checks if c.error or c.contradictions]
    if as_json:
        _emit_json([c.model_dump() for c in checks])
    else:
        rows = []
        for c in checks:
            counts = {lvl: sum(f["level"] == lvl for f in c.findings) for lvl in ("contradiction", "stale", "behind")}
            rows.append([c.slug, _s(c.newest_version), _s(c.newest_released), _s(c.measured_version),
                         str(counts["contradiction"]), str(counts["stale"]), str(counts["behind"]),
                         (c.error or "")[:60]])
        click.echo(_table(["library", "newest", "released", "measured", "contradictions", "stale", "behind",
                           "error"], rows))
        for c in checks:
            for f in c.contradictions:
                click.echo(f"{c.slug}: {f['field']}: {f['message']}")
    return 1 if bad else 0


if __name__ == "__main__":
    command()
