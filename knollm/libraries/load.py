"""Load and validate every library file of ``work/api_inference/`` and merge measurements.

A file that does not parse or validate raises :class:`knollm.errors.CatalogError`
whose message starts with the file's path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from knollm.errors import CatalogError
from knollm.libraries.schema import Check, Checks, Library, Measurement, Measurements

__all__ = ["DATA_DIR", "LibraryRecord", "load_libraries", "load_library_file", "load_measurements", "load_checks"]

DATA_DIR = Path(__file__).resolve().parent.parent.parent / "work" / "api_inference"
MEASUREMENTS_FILE = "measurements.json"
CHECKS_FILE = "checks.json"  # written by ``knollm libraries check``
NOT_LIBRARIES = {MEASUREMENTS_FILE, CHECKS_FILE}


@dataclass(frozen=True)
class LibraryRecord:
    """A validated library file plus its measured facts (``None`` if never measured)."""

    library: Library
    measurement: Measurement | None
    measured_at: str | None
    path: str
    check: Check | None = None  # the last ``knollm libraries check`` of this library

    @property
    def slug(self) -> str:
        return self.library.slug


def _format_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def load_library_file(path: str | Path) -> Library:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read library file: {exc}") from exc
    try:
        json.loads(text)
    except ValueError as exc:
        raise CatalogError(f"{path}: not valid JSON: {exc}") from exc
    try:
        lib = Library.model_validate_json(text)
    except ValidationError as exc:
        raise CatalogError(f"{path}: invalid library file: {_format_validation(exc)}") from exc
    if lib.slug != path.stem:
        raise CatalogError(f"{path}: slug {lib.slug!r} does not match the file name {path.stem!r}")
    return lib


def _load_optional(path: str | Path, model, what: str):
    path = Path(path)
    if not path.exists():
        return None
    try:
        return model.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        raise CatalogError(f"{path}: invalid {what} file: {_format_validation(exc)}") from exc
    except (OSError, ValueError) as exc:
        raise CatalogError(f"{path}: cannot read {what}: {exc}") from exc


def load_measurements(path: str | Path) -> Measurements | None:
    return _load_optional(path, Measurements, "measurements")


def load_checks(path: str | Path) -> Checks | None:
    return _load_optional(path, Checks, "checks")


def load_libraries(directory: str | Path | None = None) -> list[LibraryRecord]:
    """All libraries of ``directory`` (default ``work/api_inference``), sorted by slug."""
    directory = Path(directory) if directory is not None else DATA_DIR
    if not directory.is_dir():
        raise CatalogError(f"{directory}: library data directory does not exist")
    meas = load_measurements(directory / MEASUREMENTS_FILE)
    checks = load_checks(directory / CHECKS_FILE)
    records = []
    for path in sorted(directory.glob("*.json")):
        if path.name in NOT_LIBRARIES:
            continue
        lib = load_library_file(path)
        m = meas.libraries.get(lib.slug) if meas else None
        when = (m.measured_at if m and m.measured_at else None) or (meas.measured_at if meas and m else None)
        records.append(LibraryRecord(library=lib, measurement=m, measured_at=when, path=str(path),
                                     check=checks.libraries.get(lib.slug) if checks else None))
    return records
