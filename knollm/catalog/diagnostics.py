"""Warnings collected while building a catalog.

Bad input never stops a build: each problem becomes one :class:`Diagnostic` naming the
file (and record), the rest of the catalog still builds, and ``--strict`` turns any
diagnostic into a :class:`~knollm.errors.StrictModeError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Diagnostic", "Diagnostics"]


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str  # machine-readable kind, e.g. "bad-json", "unknown-shape", "bad-value"
    file: str  # file name (or registry name) the problem is in
    message: str
    record: str | None = None  # record id / index within the file, when known
    #: "warning": input Knollm could not use as given (fails --strict);
    #: "data": a data-quality finding handled by a documented rule - a value kept but marked
    #: suspect, a conflicting duplicate resolved, a borrowed value dropped (reported, does not
    #: fail --strict: the input was read whole); "info": reported only
    level: str = "warning"

    def __str__(self) -> str:
        where = self.file if self.record is None else f"{self.file} [{self.record}]"
        return f"{where}: {self.message}"

    def as_dict(self) -> dict:
        return {"code": self.code, "file": self.file, "record": self.record, "message": self.message,
                "level": self.level}


@dataclass
class Diagnostics:
    items: list[Diagnostic] = field(default_factory=list)

    def warn(self, code: str, file: str, message: str, record: str | int | None = None) -> None:
        self.items.append(Diagnostic(code, file, message, None if record is None else str(record)))

    def info(self, code: str, file: str, message: str, record: str | int | None = None) -> None:
        self.items.append(Diagnostic(code, file, message, None if record is None else str(record), "info"))

    def data(self, code: str, file: str, message: str, record: str | int | None = None) -> None:
        self.items.append(Diagnostic(code, file, message, None if record is None else str(record), "data"))

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.level == "warning"]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def raise_if_strict(self, strict: bool) -> None:
        if strict and self.warnings:
            from knollm.errors import StrictModeError

            raise StrictModeError([str(d) for d in self.warnings])
