"""``knollm diff OLD NEW``: what changed between two dump directories or catalog files.

Exit code 0 (with ``--exit-code``: 1 when anything changed, like ``git diff``); 3 when the
diff is incomplete: building a side warned (an unreadable dump or record, printed on stderr),
so models may show as removed or added when they were only not read; ``--save`` then writes
nothing.
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
    A side whose build warns (unreadable dump or record) makes the diff incomplete: the
    warnings go to stderr, --save writes nothing and the exit code is 3.
    """
    from knollm.diff import compare as D

    if date is not None:
        import datetime as _dt

        try:
            date = _dt.date.fromisoformat(date).isoformat()
        except ValueError:
            raise click.BadParameter("expected YYYY-MM-DD", param_hint="--date") from None
    if as_markdown and output["format"] != "table":
        raise click.UsageError("--markdown cannot be combined with --json / --csv")
    d = D.diff_paths(old, new, date=date, registries=registries)
    incomplete = bool(d.get("incomplete"))
    if incomplete:
        for w in d.get("warnings") or []:
            click.echo(f"warning: {D.format_warning(w)}", err=True)
        click.echo(f"knollm: the diff is incomplete: {len(d.get('warnings') or [])} warning(s) building the "
                   "inputs; removed/added models may only be unread"
                   + (f"; not saved to {save_dir}" if save_dir is not None else ""), err=True)
    elif save_dir is not None and D.has_changes(d):
        D.save_diff(d, save_dir)
    if as_markdown:
        click.echo(D.render_markdown(d), nl=False)
    elif output["format"] == "table":
        click.echo(D.render_text(d), nl=False)
    else:
        emit(D.change_rows(d), ["change", "key", "field", "old", "new", "pct"], output, json_obj=d)
    if incomplete:
        return 3
    return 1 if exit_code and D.has_changes(d) else 0
