"""File helpers shared by the pipeline, the cache, fetch and diff."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_write", "exclusive_lock", "real_path"]


def real_path(path: str | Path) -> Path:
    """``path`` with its symbolic links followed (also a link to a file not there yet), so a
    write replaces the file the link points at, never the link."""
    p = Path(path)
    return Path(os.path.realpath(p)) if p.is_symlink() else p


def atomic_write(path: str | Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory, then rename.

    Readers see the old file or the new one, never a partial write; on any failure the
    old file is untouched and the temp file removed. ``durable`` also fsyncs the file
    and its directory (dumps, reports); caches can skip that.

    A symbolic link is written through (the file it points at is replaced; the link stays),
    and an existing file keeps its permission bits (a 0600 file stays 0600); a new file
    gets 0644.
    """
    path = real_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
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


@contextlib.contextmanager
def exclusive_lock(path: str | Path, *, timeout: float = 120.0) -> Iterator[Path]:
    """Hold an exclusive lock on ``path`` for the ``with`` block, across processes: an advisory
    ``flock`` on the sidecar file ``<path>.lck`` next to the real file (links followed, so
    every link to one file shares its lock). The sidecar is left in place (removing it would
    let two processes lock two different files). Windows: ``msvcrt.locking`` on the sidecar,
    best effort. Raises :class:`TimeoutError` after ``timeout`` seconds of waiting and
    :class:`OSError` when the sidecar cannot be created. Not re-entrant (a second ``with`` on
    the same path in the same process waits for the first)."""
    real = real_path(path)
    real.parent.mkdir(parents=True, exist_ok=True)
    side = real.with_name(real.name + ".lck")
    fd = os.open(side, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        try:
            import fcntl
        except ImportError:  # Windows
            fcntl = None  # type: ignore[assignment]
        if fcntl is not None:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{side}: still locked by another process after {timeout:g} s") from None
                    time.sleep(0.02)
            try:
                yield real
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        else:  # pragma: no cover - Windows
            import msvcrt

            locked = False
            while not locked:
                try:
                    os.lseek(fd, 0, os.SEEK_SET)
                    msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                    locked = True
                except OSError:
                    if time.monotonic() > deadline:
                        break  # best effort: go on unlocked rather than never edit
                    time.sleep(0.05)
            try:
                yield real
            finally:
                if locked:
                    try:
                        os.lseek(fd, 0, os.SEEK_SET)
                        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
                    except OSError:
                        pass
    finally:
        os.close(fd)
