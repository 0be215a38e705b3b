"""``knollm libraries check``: compare each library file with the newest wheel on the index.

For every library with a PyPI name the check

1. gets the newest wheel: ``pip download --no-deps --only-binary=:all:`` into a cache
   directory, or, with ``wheels_dir``, a wheel already there (tests build their own);
2. reads the wheel's ``*.dist-info/METADATA``: version, licence (``License-Expression``,
   else ``License``, else the ``License ::`` classifiers), ``Requires-Python`` and the
   ``Requires-Dist`` entries that apply with no extra;
3. unless ``offline``, reads PyPI's JSON API page (``https://pypi.org/pypi/NAME/json``):
   the upload date of the newest and of the measured version, every yanked release with
   its reason, and the open advisories (``vulnerabilities``) of the newest release;
4. flags the cells that contradict the metadata (:data:`CONTRADICTION`), the cells read
   in an older release's source (:data:`STALE`) and a measured version older than the
   newest (:data:`BEHIND`).

The result is one :class:`knollm.libraries.schema.Check` per library; :func:`write_checks` stores them in
``work/api_inference/checks.json``, which the site and ``knollm libraries show`` read
("checked" date, newest release, findings, yanked releases).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from email.parser import HeaderParser
from pathlib import Path
from typing import Callable

from knollm.errors import CatalogError
from knollm.fsutil import atomic_write
from knollm.libraries.load import CHECKS_FILE, LibraryRecord
from knollm.libraries.schema import Check

__all__ = ["CONTRADICTION", "STALE", "BEHIND", "WheelMetadata", "IndexInfo", "Finding",
           "read_wheel_metadata", "find_wheel", "download_wheel", "index_info", "check_record",
           "check_libraries", "write_checks", "CHECKS_FILE", "OBSERVABILITY_DEPENDENCIES"]

# PyPI's JSON API: every release's files (upload time, yanked, reason) and the known
# vulnerabilities (OSV: PYSEC, GHSA) of the current release
PROJECT_URL = "https://pypi.org/pypi/{name}/json"
CONTRADICTION, STALE, BEHIND = "contradiction", "stale", "behind"

# a hard dependency on one of these means the library emits telemetry itself
OBSERVABILITY_DEPENDENCIES = ("opentelemetry-api", "opentelemetry-sdk", "logfire-api", "logfire", "langsmith")


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class WheelMetadata:
    name: str
    version: str
    license: str | None
    requires_python: str | None
    requires_dist: tuple[str, ...]  # every Requires-Dist line, as written
    direct_dependencies: tuple[str, ...]  # canonical names of those that apply with no extra
    wheel: str  # file name of the wheel read


@dataclass(frozen=True)
class IndexInfo:
    source: str  # the index page read
    newest: str | None  # the version the dates and advisories refer to
    newest_released: str | None  # upload date (YYYY-MM-DD) of the newest version's files
    measured_released: str | None
    yanked: tuple[dict, ...]  # {"version", "reason"}
    advisories: tuple[dict, ...] = ()  # open advisories of the newest release: {"id", "aliases", "fixed_in", "link"}
    advisories_source: str | None = None


@dataclass(frozen=True)
class Finding:
    level: str  # CONTRADICTION | STALE | BEHIND
    field: str
    message: str


# ----------------------------------------------------------------------------- wheel metadata
def _licence(headers) -> str | None:
    expr = headers.get("License-Expression")
    if expr and expr.strip():
        return expr.strip()
    lic = headers.get("License")
    if lic and lic.strip() and lic.strip().upper() != "UNKNOWN":
        first = lic.strip().splitlines()[0].strip()
        return first if len(first) <= 80 else first[:77] + "..."
    classifiers = [c.split("::")[-1].strip() for c in headers.get_all("Classifier") or []
                   if c.startswith("License ::")]
    return "; ".join(classifiers) or None


def _direct(requires: list[str]) -> tuple[str, ...]:
    from packaging.requirements import InvalidRequirement, Requirement

    out = set()
    for raw in requires:
        try:
            req = Requirement(raw)
        except InvalidRequirement:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        out.add(canonical(req.name))
    return tuple(sorted(out))


def read_wheel_metadata(path: str | Path) -> WheelMetadata:
    """The METADATA of a wheel (a zip holding ``NAME-VERSION.dist-info/METADATA``)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
            if len(names) != 1:
                raise CatalogError(f"{path}: expected one *.dist-info/METADATA in the wheel, found {len(names)}")
            text = zf.read(names[0]).decode("utf-8", "replace")
    except (OSError, zipfile.BadZipFile) as exc:
        raise CatalogError(f"{path}: not a readable wheel: {exc}") from exc
    headers = HeaderParser().parsestr(text)
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        raise CatalogError(f"{path}: METADATA has no Name or Version")
    requires = [r.strip() for r in headers.get_all("Requires-Dist") or []]
    return WheelMetadata(name=name.strip(), version=version.strip(), license=_licence(headers),
                         requires_python=(headers.get("Requires-Python") or "").strip() or None,
                         requires_dist=tuple(requires), direct_dependencies=_direct(requires), wheel=path.name)


def _wheel_version(path: Path) -> tuple:
    from packaging.version import InvalidVersion, Version

    try:
        return (Version(path.name.split("-")[1]),)
    except (IndexError, InvalidVersion):
        return ()


def find_wheel(directory: str | Path, pypi: str) -> Path | None:
    """The newest wheel of ``pypi`` in ``directory`` (file names use ``_`` for ``-``)."""
    stem = canonical(pypi).replace("-", "_")
    found = [p for p in Path(directory).glob("*.whl") if canonical(p.name.split("-")[0]).replace("-", "_") == stem]
    return max(found, key=_wheel_version) if found else None


def download_wheel(pypi: str, dest: str | Path, timeout: float = 300) -> Path:
    """``pip download --no-deps --only-binary=:all: NAME`` into ``dest``; the wheel's path."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--disable-pip-version-check", "-d", str(dest), pypi]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise CatalogError(f"{pypi}: pip download timed out after {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise CatalogError(f"{pypi}: pip download failed: {proc.stderr.strip()[-500:]}")
    wheel = find_wheel(dest, pypi)
    if wheel is None:
        raise CatalogError(f"{pypi}: pip download wrote no wheel into {dest}")
    return wheel


# ----------------------------------------------------------------------------- the index page
def _get_json(url: str, timeout: float = 60) -> dict:
    import urllib.request

    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (fixed https URL)
        return json.loads(resp.read())


def index_info(pypi: str, newest: str | None, measured: str | None,
               get_json: Callable[[str], dict] = _get_json) -> IndexInfo:
    """Upload dates, yanked releases and open advisories from PyPI's JSON API page
    (``newest`` None: the page's current release)."""
    url = PROJECT_URL.format(name=canonical(pypi))
    page = get_json(url)
    newest = newest or (page.get("info") or {}).get("version")
    uploaded: dict[str, str] = {}
    yanked: dict[str, str] = {}
    for ver, files in (page.get("releases") or {}).items():
        times = sorted((f.get("upload_time_iso_8601") or f.get("upload_time") or "")[:10] for f in files or [])
        times = [t for t in times if t]
        if times:
            uploaded[ver] = times[0]
        if files and all(f.get("yanked") for f in files):
            yanked[ver] = next((f.get("yanked_reason") for f in files if f.get("yanked_reason")), "") or ""
    info_version = (page.get("info") or {}).get("version")
    # ``vulnerabilities`` describes the project's current release (info.version)
    vulns = page.get("vulnerabilities") or [] if info_version == newest else []
    advisories = tuple({"id": v.get("id"), "aliases": list(v.get("aliases") or []),
                        "fixed_in": list(v.get("fixed_in") or []), "link": v.get("link")}
                       for v in vulns if not v.get("withdrawn"))
    return IndexInfo(source=url, newest=newest, newest_released=uploaded.get(newest),
                     measured_released=uploaded.get(measured) if measured else None,
                     yanked=tuple({"version": v, "reason": r} for v, r in sorted(yanked.items())),
                     advisories=advisories, advisories_source=url if info_version == newest else None)


# ----------------------------------------------------------------------------- the comparison
def _norm_licence(text: str | None) -> str:
    s = (text or "").upper()
    s = re.sub(r"\(.*?\)", "", s)  # "MIT (from LICENSE; ...)" -> "MIT"
    s = s.replace("LICENSE", "").replace("SOFTWARE", "")
    return re.sub(r"[^A-Z0-9.]+", "", s)


def _base(record: LibraryRecord, today: str | None, error: str | None = None) -> dict:
    m = record.measurement
    return {"slug": record.library.slug, "pypi": record.library.pypi or "",
            "checked_at": today or dt.date.today().isoformat(), "measured_version": m.version if m else None,
            "measured_at": record.measured_at, "error": error}


def _index_fields(index: IndexInfo) -> dict:
    return {"newest_released": index.newest_released, "measured_released": index.measured_released,
            "yanked": [dict(y) for y in index.yanked], "advisories": [dict(a) for a in index.advisories],
            "advisories_source": index.advisories_source}


def check_record(record: LibraryRecord, meta: WheelMetadata, index: IndexInfo | None = None,
                 today: str | None = None, error: str | None = None) -> Check:
    """Pure: the findings for one library given the newest wheel's metadata."""
    lib, m = record.library, record.measurement
    out = {**_base(record, today, error), "newest_version": meta.version, "license": meta.license,
           "newest_source": f"pip download --no-deps {lib.pypi} ({meta.wheel}, *.dist-info/METADATA)",
           "requires_python": meta.requires_python, "requires_dist": list(meta.requires_dist), "yanked": []}
    if index is not None:
        out.update(_index_fields(index))
        out["newest_source"] += f"; upload dates from {index.source}"
    findings: list[Finding] = []
    add = findings.append
    if canonical(meta.name) != canonical(lib.pypi or ""):
        add(Finding(CONTRADICTION, "pypi", f"the wheel is {meta.name!r}, the file says {lib.pypi!r}"))
    if m is not None and m.version and m.version != meta.version:
        add(Finding(BEHIND, "version", f"measured {m.version}, newest on the index is {meta.version}"))
    # the measured facts describe the measured version: the same version must agree with the wheel
    # (a contradiction); a newer wheel that differs only means the facts are out of date (stale)
    same = m is not None and m.version == meta.version
    level, since = (CONTRADICTION, "") if same else (STALE, f" (measured {m.version if m else '?'})")
    if m is not None and m.license and meta.license and _norm_licence(m.license) != _norm_licence(meta.license):
        add(Finding(level, "license", f"recorded {m.license!r}{since}, the newest wheel says {meta.license!r}"))
    if m is not None and m.version and (m.requires_python or None) != meta.requires_python:
        add(Finding(level, "requires_python",
                    f"recorded {m.requires_python!r}{since}, the newest wheel says {meta.requires_python!r}"))
    recorded = getattr(m, "direct_dependency_names", None) if m is not None else None
    if isinstance(recorded, list):
        rec = {canonical(n) for n in recorded}
        new, gone = sorted(set(meta.direct_dependencies) - rec), sorted(rec - set(meta.direct_dependencies))
        if new or gone:
            bits = ([f"added {', '.join(new)}"] if new else []) + ([f"removed {', '.join(gone)}"] if gone else [])
            add(Finding(level, "direct_dependencies",
                        f"recorded {len(rec)}{since}, the newest wheel requires {len(meta.direct_dependencies)} "
                        f"({'; '.join(bits)})"))
    otel = [d for d in meta.direct_dependencies if d in OBSERVABILITY_DEPENDENCIES]
    obs = lib.features.cell("observability_hooks")
    if otel and obs.value is False:
        add(Finding(CONTRADICTION, "features.observability_hooks",
                    f"marked no, but the newest wheel requires {', '.join(otel)}"))
    cells = [("openai_compatible_base_url", lib.openai_compatible_base_url)] + lib.features.items()
    pattern = re.compile(rf"^{re.escape(lib.pypi or '')}(?:\[[^\]]*\])? (\d[^\s:]*):", re.IGNORECASE)
    for name, cell in cells:
        hit = pattern.match(cell.ref) if cell.how == "source" else None
        if hit and hit.group(1) != meta.version:
            add(Finding(STALE, f"features.{name}" if name != "openai_compatible_base_url" else name,
                        f"read in the source of {hit.group(1)}; newest is {meta.version}"))
    for adv in out.get("advisories", []):
        add(Finding(CONTRADICTION, "security", f"open advisory {adv['id']} affects the newest release {meta.version}"
                    + (f" (fixed in {', '.join(adv['fixed_in'])})" if adv.get("fixed_in") else "")))
    if any(y["version"] == meta.version for y in out["yanked"]):
        add(Finding(CONTRADICTION, "version", f"the newest version {meta.version} is yanked on the index"))
    return Check.model_validate({**out, "findings": [asdict(f) for f in findings]})


def check_libraries(records: list[LibraryRecord], wheels_dir: str | Path | None = None, offline: bool = False,
                    cache_dir: str | Path | None = None, today: str | None = None,
                    get_json: Callable[[str], dict] = _get_json,
                    progress: Callable[[str], None] | None = None) -> list[Check]:
    """One :class:`~knollm.libraries.schema.Check` per library with a PyPI name (curl has none).

    ``wheels_dir`` holds the wheels to read (nothing is downloaded); otherwise the newest
    wheel is downloaded into ``cache_dir`` (a temporary directory by default). A library
    whose wheel cannot be had gets a check with ``error`` set; the others still run.
    """
    today = today or dt.date.today().isoformat()
    out: list[Check] = []
    with tempfile.TemporaryDirectory(prefix="knollm-wheels-") as tmp:
        for rec in records:
            lib = rec.library
            if lib.pypi is None:
                continue
            if progress:
                progress(lib.slug)
            m = rec.measurement
            try:
                if wheels_dir is not None:
                    wheel = find_wheel(wheels_dir, lib.pypi)
                    if wheel is None:
                        raise CatalogError(f"{lib.pypi}: no wheel in {wheels_dir}")
                else:
                    wheel = download_wheel(lib.pypi, Path(cache_dir or tmp) / canonical(lib.pypi))
                meta = read_wheel_metadata(wheel)
                index, err = None, None
                if not offline:
                    try:
                        index = index_info(lib.pypi, meta.version, m.version if m else None, get_json)
                    except (OSError, ValueError) as exc:  # the metadata comparison still stands
                        err = f"PyPI JSON page unavailable: {type(exc).__name__}: {exc}"
                out.append(check_record(rec, meta, index, today, err))
            except CatalogError as exc:  # no wheel: the index page still tells the newest release
                out.append(_without_wheel(rec, str(exc), today, None if offline or wheels_dir else get_json))
    return out


def _without_wheel(rec: LibraryRecord, error: str, today: str, get_json: Callable[[str], dict] | None) -> Check:
    out = _base(rec, today, error)
    findings: list[Finding] = []
    index = None
    if get_json is not None:
        try:
            index = index_info(rec.library.pypi or "", None, out["measured_version"], get_json)
        except (OSError, ValueError):
            index = None
    if index is not None:
        out.update(_index_fields(index), newest_version=index.newest,
                   newest_source=f"{index.source} (no wheel read: the metadata was not compared)")
        if out["measured_version"] and index.newest and out["measured_version"] != index.newest:
            findings.append(Finding(BEHIND, "version", f"measured {out['measured_version']}, "
                                    f"newest on the index is {index.newest}"))
    return Check.model_validate({**out, "findings": [asdict(f) for f in findings]})


def write_checks(path: str | Path, checks: list[Check], offline: bool = False) -> None:
    """Merge ``checks`` into ``path`` (one entry per slug; other slugs are kept)."""
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    libs = data.get("libraries", {})
    for c in checks:
        libs[c.slug] = c.model_dump()
    data.update({
        "checked_at": max([c.checked_at for c in checks] + [data.get("checked_at") or ""]),
        "method": ("newest wheel from `pip download --no-deps --only-binary=:all: NAME`, its *.dist-info/METADATA "
                   "compared with the library file and measurements.json"
                   + ("" if offline else "; upload dates, yanked releases and open advisories from "
                                         "https://pypi.org/pypi/NAME/json")),
        "libraries": dict(sorted(libs.items())),
    })
    atomic_write(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
