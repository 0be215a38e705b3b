"""A throw-away PostgreSQL server for tests (Debian's ``postgresql`` package).

``PostgresServer(tmpdir).start()`` runs ``initdb`` and ``pg_ctl start`` from
``/usr/lib/postgresql/*/bin`` into ``tmpdir`` on a free loopback port (as ``nobody`` when
running as root, since PostgreSQL refuses to run as root). ``url`` is a
``postgresql://`` URL with trust auth on 127.0.0.1 only. ``unavailable()`` returns the
reason it cannot start here (for ``pytest.skip``), or None.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
from pathlib import Path

__all__ = ["PostgresServer", "unavailable", "pg_bin"]


def pg_bin() -> Path | None:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(Path(d).parent.name)
                  if Path(d).parent.name.isdigit() else 0)
    for d in reversed(dirs):
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unavailable() -> str | None:
    if pg_bin() is None:
        return "PostgreSQL server binaries not found (apt-get install postgresql; see .ci/install)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (Knollm's gateway extra)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: cannot start PostgreSQL as an unprivileged user"
    return None


class PostgresServer:
    def __init__(self, root: str | Path | None = None) -> None:
        import tempfile

        # default: a fresh directory directly under /tmp, reachable by the unprivileged user
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="knollm-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.bin = pg_bin()

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        cmd = list(args)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "nobody", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.root)

    def start(self) -> PostgresServer:
        assert self.bin is not None
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "nobody")
        r = self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                      "-E", "UTF8", "--no-sync")
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed: {r.stderr.strip()[-500:]}")
        return self.resume()

    def resume(self) -> PostgresServer:
        """Start the server on its data directory (after :meth:`start` made it, or :meth:`pause`)."""
        assert self.bin is not None
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        r = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"),
                      "-w", "-t", "60", "start")
        if r.returncode != 0:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {r.stderr.strip()[-300:]} {log[-500:]}")
        return self

    def pause(self) -> None:
        """Stop the server, keeping its data (an outage): :meth:`resume` starts it again."""
        assert self.bin is not None
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def drop_connections(self, url: str) -> int:
        """End every session on ``url``'s database, as a restart or a failover would (the
        clients find their connections dead at their next statement); how many ended."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as c:
            return c.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                             "WHERE datname = %s AND pid <> pg_backend_pid()", (url.rsplit("/", 1)[1],)).fetchone()[0]

    def stop(self) -> None:
        if self.bin is not None and self.data.exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
