"""``knollm fetch``: refresh provider dumps from their model-list APIs.

Exit code: 0 when no provider failed (providers without a key are *skipped* and
reported, which is not an error), 1 when at least one provider failed (its previous dump
kept; also an unknown ``--only`` id, as everywhere), 2 on a usage error (unknown option,
a missing ``--providers`` file), :data:`RUN_ERROR` (3) when the run itself failed: the registry is invalid, the
report, summary or history cannot be read or written, or an unexpected error. The report
and the summary are written as soon as the providers are fetched, before the history and
scores steps, so a later error still leaves them (the report then lists it in ``errors``).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from knollm.cli.output import emit, output_options
from knollm.errors import NotFoundError

__all__ = ["command", "DEFAULT_OUT", "RUN_ERROR"]

DEFAULT_OUT = "work/model_catalog"
#: exit code of a run-level error (not a provider's failure, which is 1)
RUN_ERROR = 3


@click.command("fetch")
@click.option("--providers", "providers_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None,
              help="Provider registry TOML (default: the packaged knollm/data/providers.toml).")
@click.option("--only", default=None, metavar="ID,…", help="Fetch only these providers (even disabled ones).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Dump directory to write (default: work/model_catalog; never $KNOLLM_DUMPS, which may be "
                   "a shared read-only copy).")
@click.option("--concurrency", type=click.IntRange(1, 64), default=None, help="Providers fetched at once.")
@click.option("--report", "report_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the fetch report as JSON to this file.")
@click.option("--summary", "summary_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report as markdown (e.g. $GITHUB_STEP_SUMMARY; appended).")
@click.option("--history", "history_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="First/last-seen history to update (default: <out>/history.json).")
@click.option("--no-history", is_flag=True, help="Do not update the first/last-seen history.")
@click.option("--dry-run", is_flag=True, help="Show what would be fetched (and which keys are missing); no network.")
@click.option("-v", "--verbose", is_flag=True, help="Log requests, retries and pages to stderr (keys redacted).")
@click.option("--force", is_flag=True, help="Accept an answer listing fewer than half the models of the previous dump "
                                         "(refused by default: the previous dump is kept); also a scores answer "
                                         "with fewer than half the models of the previous scores file.")
@click.option("--no-scores", is_flag=True, help="Do not fetch Artificial Analysis quality scores (fetched only "
                                                "when $ARTIFICIAL_ANALYSIS_API_KEY is set).")
@output_options
def command(providers_file, only, out_dir, concurrency, report_file, summary_file, history_file, no_history,
            dry_run, verbose, force, no_scores, output) -> int:
    """Refresh provider dumps from their model-list APIs.

    \b
    Keys come from the environment variables the registry names; providers without one
    are skipped. A dump is replaced (atomically) only when the answer parses into the
    expected shape, is not an API error answer, and lists at least half the models of the
    previous dump (--force accepts a smaller one); on any failure the previous dump stays.
    Exit code 0 if no provider failed, 1 if any failed, 2 on a usage error, 3 when the run
    itself failed (invalid registry, report / summary / history unreadable or unwritable).
    """
    try:
        return _run(providers_file, only, out_dir, concurrency, report_file, summary_file, history_file,
                    no_history, dry_run, verbose, force, no_scores, output)
    except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, BrokenPipeError, NotFoundError):
        raise
    except _RunError as e:
        click.echo(f"knollm: fetch failed: {e}", err=True)
        return RUN_ERROR
    except Exception as e:  # noqa: BLE001 - a crash must not look like "a provider failed" (1)
        click.echo(f"knollm: fetch failed: {_redactor()(f'{type(e).__name__}: {e}')}", err=True)
        return RUN_ERROR


class _RunError(Exception):
    """A run-level error, already worded (and redacted)."""


def _redactor():
    """A redactor for run-level messages: every environment value whose name ends in ``_KEY``,
    ``_TOKEN`` or ``_SECRET`` (the registry's key variables are added once it is loaded)."""
    from knollm.fetch.redact import Redactor

    r = Redactor()
    for name, value in os.environ.items():
        if name.endswith(("_KEY", "_TOKEN", "_SECRET")):
            r.add(value.strip() or None)
    return r


def _run(providers_file, only, out_dir, concurrency, report_file, summary_file, history_file, no_history,
         dry_run, verbose, force, no_scores, output) -> int:
    from knollm.errors import KnollmError, RegistryError
    from knollm.fetch import fetch_all, load_registry

    red = _redactor()
    try:
        reg = load_registry(providers_file)
    except RegistryError as e:
        raise _RunError(red(str(e))) from None
    for spec in reg.providers.values():
        for name in spec.key_env:
            red.add(os.environ.get(name, "").strip() or None)
    out = out_dir or Path(DEFAULT_OUT)
    ids = [x.strip() for x in only.split(",") if x.strip()] if only else None
    specs = reg.select(ids)  # an unknown --only id: NotFoundError, exit 1 with suggestions (as everywhere)

    if dry_run:
        rows = []
        for s in specs:
            has_key = s.auth == "none" or any(os.environ.get(k, "").strip() for k in s.key_env)
            rows.append({"provider": s.id, "auth": s.auth, "key_env": ",".join(s.key_env) or "-",
                         "key": "n/a" if s.auth == "none" else ("set" if has_key else "missing"),
                         "action": "skip (manual)" if s.manual else "fetch" if has_key else "skip (no key)",
                         "url": s.url.split("?", 1)[0]})
        emit(rows, ["provider", "auth", "key_env", "key", "action", "url"], output)
        return 0

    log = (lambda msg: click.echo(msg, err=True)) if verbose else None
    try:
        report = fetch_all(reg, out, only=ids, log=log, concurrency=concurrency, force=force)
    except (KnollmError, OSError) as e:
        raise _RunError(red(str(e))) from None
    doc = report.to_dict()
    # the report and the summary first: whatever fails below, the run's outcome is on record
    _write_report(doc, report_file, red)
    _append(summary_file, report.render_markdown(), red)

    errors: list[str] = []
    if not no_history:
        ok = [r.id for r in report.results if r.status == "ok"]
        if ok:
            from knollm.catalog.history import update_history

            hist = history_file or out / "history.json"
            try:
                update_history(hist, out, providers=ok)
            except Exception as e:  # noqa: BLE001 - reported; the dumps are written already
                errors.append(red(f"history {hist} not updated: {type(e).__name__}: {e}"))

    if not no_scores and not ids:
        from knollm.errors import FetchError
        from knollm.fetch.scores import fetch_scores

        try:
            got = fetch_scores(out, force=force)
            if got is not None:
                click.echo(f"quality scores (Artificial Analysis) -> {got}", err=True)
                doc["scores"] = {"status": "ok", "file": str(got)}
        except FetchError as e:  # scores are optional: reported, never fatal
            click.echo(f"knollm: quality scores not fetched: {red(e)}", err=True)
            doc["scores"] = {"status": "failed", "reason": red(e)}

    if errors:
        doc["errors"] = errors
        for e in errors:
            click.echo(f"knollm: {e}", err=True)
        _append(summary_file, "\n**Run errors:**\n\n" + "".join(f"- {e}\n" for e in errors), red)
    if errors or "scores" in doc:
        _write_report(doc, report_file, red)
    if output["format"] == "table":
        click.echo(report.render_text())
    else:
        emit(report.rows(), ["provider", "status", "models", "before", "retries", "pages", "time", "reason"], output,
             json_obj=doc)
    return RUN_ERROR if errors else report.exit_code


def _write_report(doc: dict, report_file: Path | None, red) -> None:
    if report_file is None:
        return
    import orjson

    from knollm.fsutil import atomic_write

    try:
        Path(report_file).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(report_file, orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    except OSError as e:
        raise _RunError(red(f"cannot write the report {report_file}: {e.strerror or e}")) from None


def _append(summary_file: Path | None, text: str, red) -> None:
    if summary_file is None:
        return
    try:
        Path(summary_file).parent.mkdir(parents=True, exist_ok=True)
        with open(summary_file, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise _RunError(red(f"cannot write the summary {summary_file}: {e.strerror or e}")) from None
