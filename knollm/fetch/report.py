"""The fetch report: per provider ok / skipped / failed with the reason, models before →
after, attempts, retries, pages, bytes and duration; as JSON (:meth:`FetchReport.to_dict`)
and as text (:meth:`FetchReport.render_text`, :meth:`FetchReport.render_markdown`).

Every string in a report has already been through the run's redactor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

__all__ = ["FetchReport", "ProviderResult", "REPORT_VERSION"]

REPORT_VERSION = 1
Status = Literal["ok", "skipped", "failed"]


@dataclass
class ProviderResult:
    id: str
    status: Status
    reason: str | None = None
    url: str | None = None  # without query string
    models_before: int | None = None
    models_after: int | None = None
    duration: float = 0.0
    attempts: int = 0
    retries: int = 0
    pages: int = 0
    bytes: int = 0
    http_status: int | None = None
    dump: str | None = None  # file name written (ok only)
    changed: bool | None = None  # dump bytes differ from the previous dump
    legacy_url: str | None = None  # the legacy list URL that answered (current one gave 404/410)
    fallback: str | None = None  # why the legacy URL was used (text)
    events: list[str] = field(default_factory=list)  # retry/backoff log, redacted
    #: per-record problems in the answer (a record without an id, a duplicate id…), each naming
    #: the file and the record; the catalog build warns about the same records
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["duration"] = round(self.duration, 3)
        return d


@dataclass
class FetchReport:
    started_at: str
    finished_at: str = ""
    duration: float = 0.0
    out_dir: str = ""
    registry: str = ""
    concurrency: int = 0
    results: list[ProviderResult] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        c = {"ok": 0, "skipped": 0, "failed": 0}
        for r in self.results:
            c[r.status] += 1
        return c

    @property
    def failed(self) -> list[ProviderResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def exit_code(self) -> int:
        """0 when no provider failed (skipped ones are fine), 1 otherwise."""
        return 1 if self.failed else 0

    def to_dict(self) -> dict:
        return {
            "report_version": REPORT_VERSION,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration": round(self.duration, 3),
            "out_dir": self.out_dir,
            "registry": self.registry,
            "concurrency": self.concurrency,
            "counts": self.counts,
            "retries": sum(r.retries for r in self.results),
            "changed": sorted(r.id for r in self.results if r.changed),
            "fallbacks": {r.id: r.legacy_url for r in self.results if r.legacy_url},
            "warnings": {r.id: len(r.warnings) for r in self.results if r.warnings},
            "providers": [r.to_dict() for r in self.results],
        }

    def rows(self) -> list[dict]:
        out = []
        for r in self.results:
            out.append({
                "provider": r.id,
                "status": r.status,
                "models": _count_now(r),
                "before": "-" if r.models_before is None else r.models_before,
                "retries": r.retries,
                "pages": r.pages,
                "time": f"{r.duration:.2f}s",
                "reason": r.reason or "; ".join(x for x in (
                    r.fallback, "changed" if r.changed else "unchanged" if r.status == "ok" else "",
                    f"{len(r.warnings)} warning(s)" if r.warnings else "") if x),
            })
        return out

    def render_text(self) -> str:
        from knollm.fmt import format_table

        c = self.counts
        head = (f"Fetched {len(self.results)} provider(s) in {self.duration:.1f}s: "
                f"{c['ok']} ok, {c['skipped']} skipped, {c['failed']} failed; "
                f"{sum(r.retries for r in self.results)} retries")
        if not self.results:
            return head
        cols = ["provider", "status", "models", "before", "retries", "pages", "time", "reason"]
        rows = self.rows()
        text = format_table(rows, cols, max_width=60)
        # a long reason is cut in the table: every failure's reason in full below it
        full = [f"  {r['provider']}: {r['reason']}" for r in rows if r["status"] == "failed" and len(str(r["reason"])) > 59]
        if full:
            text += "\n\nFailure reasons:\n" + "\n".join(full)
        warns = self._warning_lines()
        if warns:
            text += "\n\nWarnings (records skipped or counted once):\n" + "\n".join(f"  {w}" for w in warns)
        return text + "\n\n" + head

    def _warning_lines(self, limit: int = 20) -> list[str]:
        out = []
        for r in self.results:
            out += [f"{r.id}: {w}" for w in r.warnings[:limit]]
            if len(r.warnings) > limit:
                out.append(f"{r.id}: … and {len(r.warnings) - limit} more")
        return out

    def render_markdown(self) -> str:
        c = self.counts
        lines = [
            "## Fetch report",
            "",
            f"{len(self.results)} provider(s) in {self.duration:.1f}s: **{c['ok']} ok**, "
            f"{c['skipped']} skipped, **{c['failed']} failed**.",
            "",
            "| provider | status | models | before | retries | time | reason |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in self.rows():
            reason = str(row["reason"]).replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {row['provider']} | {row['status']} | {row['models']} | {row['before']} | {row['retries']} "
                         f"| {row['time']} | {reason} |")
        warns = self._warning_lines()
        if warns:
            lines += ["", "**Warnings** (records skipped or counted once):", ""]
            lines += ["- " + w.replace("\n", " ").replace("<", "&lt;").replace("`", "'") for w in warns]
        return "\n".join(lines) + "\n"


def _count_now(r: ProviderResult) -> int | str:
    """The number of models in the dump after this fetch: the new count when it succeeded,
    the kept dump's count otherwise."""
    if r.status == "ok":
        return "?" if r.models_after is None else r.models_after
    return "-" if r.models_before is None else r.models_before
