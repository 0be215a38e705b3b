"""Scratch directories for benchmark scripts: removed when the process exits.

A benchmark run fills ledgers of 100,000 rows and more (35 MB for ``bench_gateway.py``);
left in ``/tmp`` they pile up run after run."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path


def scratch_dir(prefix: str = "knollm-") -> Path:
    """A new temporary directory, removed (with what is in it) when this process exits."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, True)
    return path
