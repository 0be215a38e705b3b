"""``knollm diff OLD NEW``: what changed between two dump directories or catalog files.

Exit code 0 (with ``--exit-code``: 1 when anything changed, like ``git diff``).
"""

from __future__ import annotations

from pathlib import Path

import click

from knollm.cli.output import emit, output_options

__all__ = ["command"]


@click.command("diff")
@click.argument("old", type=click.Path(exists=True, path_type=Path))
@click.argument("new", type=click.Path(exists=True, path_type=Path))
@click.option("--markdown", "as_markdown", is_flag=True, help="Output markdown (for a PR, commit or the site).")
@click.option("--date", default=None, help="Date of the change (YYYY-MM-DD; default today, UTC).")
@click.option("--save", "save_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also save the diff as <DIR>/<date>.json (the site's change history).")
@click.option("--registries", is_flag=True,
              help="Build dump directories with the registries joined (default: dumps only).")
@click.option("--exit-code", is_flag=True, help="Exit 1 when anything changed.")
@output_options
def command(old: Path, new: Path, as_markdown: bool, date: str | None, save_dir: Path | None, registries: bool,
            exit_code: bool, output: dict) -> int:
    """Models added, removed, renamed, repriced (with % change) or changed between OLD and NEW.

    \b
    OLD and NEW are dump directories (built into catalogs, dumps only) or catalog JSON files.
    Renames: same provider, a removed and an added model with the same canonical id (or name).
    """
    from knollm.diff import compare as D

    if date is not None:
        import datetime as _dt

        try:
            date = _dt.date.fromisoformat(date).isoformat()
        except ValueError:
            raise click.BadParameter("expected YYYY-MM-DD", param_hint="--date") from None
    d = D.diff_paths(old, new, date=date, registries=registries)
    if save_dir is not None and D.has_changes(d):
        D.save_diff(d, save_dir)
    if as_markdown and output["format"] != "table":
        raise click.UsageError("--markdown cannot be combined with --json / --csv")
    if as_markdown:
        click.echo(D.render_markdown(d), nl=False)
    elif output["format"] == "table":
        click.echo(D.render_text(d), nl=False)
    else:
        emit(D.change_rows(d), ["change", "key", "field", "old", "new", "pct"], output, json_obj=d)
    return 1 if exit_code and D.has_changes(d) else 0
