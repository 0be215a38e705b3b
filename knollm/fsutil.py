"""File helpers shared by the pipeline, the cache, fetch and diff."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write"]


def atomic_write(path: str | Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory, then rename.

    Readers see the old file or the new one, never a partial write; on any failure the
    old file is untouched and the temp file removed. ``durable`` also fsyncs the file
    and its directory (dumps, reports); caches can skip that.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        try:  # make the rename durable; best effort (not every FS allows opening a dir)
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
