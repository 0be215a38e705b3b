"""Shared test setup: an isolated cache dir, and the real dumps in ../shared when present."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DUMPS = ROOT.parent / "shared" / "model_catalog"
FIXTURE_DUMPS = Path(__file__).parent / "fixtures" / "dumps"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Tests never read or write the user's ~/.cache/knollm."""
    d = tmp_path_factory.mktemp("knollm-cache")
    old = os.environ.get("KNOLLM_CACHE_DIR")
    os.environ["KNOLLM_CACHE_DIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("KNOLLM_CACHE_DIR", None)
    else:
        os.environ["KNOLLM_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def shared_dumps() -> Path:
    if not SHARED_DUMPS.is_dir():
        pytest.skip(f"real dumps not available: {SHARED_DUMPS} does not exist (CI has it beside the checkout)")
    return SHARED_DUMPS


@pytest.fixture(scope="session")
def shared_catalog(shared_dumps) -> dict:
    """The catalog built once from the real dumps + registries."""
    from knollm.catalog.build import build_catalog

    return build_catalog(shared_dumps)


@pytest.fixture(scope="session")
def fixture_dumps() -> Path:
    return FIXTURE_DUMPS


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server (Debian's postgresql package) on a free loopback port."""
    from tests.support.postgres import PostgresServer, unavailable

    reason = unavailable()
    if reason:
        pytest.skip(reason)
    try:
        server = PostgresServer().start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"PostgreSQL could not start here: {e}")
    yield server
    server.stop()
