"""``knollm fetch``: refresh provider dumps from their model-list APIs.

Exit code: 0 when no provider failed (providers without a key are *skipped* and
reported, which is not an error), 1 when at least one provider failed, 2 on a usage
error. Failed providers keep their previous dump untouched.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from knollm.cli.output import emit, output_options

__all__ = ["command", "DEFAULT_OUT"]

DEFAULT_OUT = "work/model_catalog"


@click.command("fetch")
@click.option("--providers", "providers_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
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
                                         "(refused by default: the previous dump is kept).")
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
    Exit code 0 if no provider failed, 1 if any failed.
    """
    from knollm.fetch import fetch_all, load_registry

    reg = load_registry(providers_file)
    out = out_dir or Path(DEFAULT_OUT)
    ids = [x.strip() for x in only.split(",") if x.strip()] if only else None
    specs = reg.select(ids)

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
    report = fetch_all(reg, out, only=ids, log=log, concurrency=concurrency, force=force)

    if not no_history:
        ok = [r.id for r in report.results if r.status == "ok"]
        if ok:
            from knollm.catalog.history import update_history

            update_history(history_file or out / "history.json", out, providers=ok)

    if not no_scores and not ids:
        from knollm.errors import FetchError
        from knollm.fetch.scores import fetch_scores

        try:
            got = fetch_scores(out)
            if got is not None:
                click.echo(f"quality scores (Artificial Analysis) -> {got}", err=True)
        except FetchError as e:  # scores are optional: reported, never fatal
            click.echo(f"knollm: quality scores not fetched: {e}", err=True)

    doc = report.to_dict()
    if report_file is not None:
        import orjson

        from knollm.fsutil import atomic_write

        atomic_write(report_file, orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    if summary_file is not None:
        with open(summary_file, "a", encoding="utf-8") as f:
            f.write(report.render_markdown())
    if output["format"] == "table":
        click.echo(report.render_text())
    else:
        emit(report.rows(), ["provider", "status", "models", "before", "retries", "pages", "time", "reason"], output,
             json_obj=doc)
    return report.exit_code
