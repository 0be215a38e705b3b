"""Run ``knollm serve`` as a real subprocess on a free loopback port (tests and benchmarks).

    with GatewayProcess(env={...}) as gw:
        OpenAI(base_url=gw.base_url, api_key="unused")

``start()`` waits until ``GET /health`` answers (or the process dies, raising with its
stderr). ``rss_kb()`` is the resident memory of the server and its worker processes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

__all__ = ["GatewayProcess", "free_port", "ledger_rows"]

ROOT = Path(__file__).resolve().parents[2]


def ledger_rows(home: Path) -> list[dict]:
    """The ledger rows a gateway with ``KNOLLM_HOME=home`` (and no database URL) wrote."""
    import sqlite3

    con = sqlite3.connect(Path(home) / "knollm.db")
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM calls ORDER BY id")]
    finally:
        con.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GatewayProcess:
    def __init__(self, env: dict[str, str] | None = None, *, host: str = "127.0.0.1", port: int | None = None,
                 args: list[str] | None = None) -> None:
        self.host = host
        self.port = port or free_port()
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.args = list(args or [])
        self.proc: subprocess.Popen | None = None
        self._err = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "knollm", "serve", "--host", self.host, "--port", str(self.port), *self.args]

    def start(self, timeout: float = 60.0) -> GatewayProcess:
        import tempfile

        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.command(), env=self.env, stdout=subprocess.DEVNULL, stderr=self._err)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"knollm serve exited with {self.proc.returncode}: {self.stderr()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"knollm serve did not answer /health within {timeout}s: {self.stderr()[-2000:]}")

    def stderr(self) -> str:
        if self._err is None:
            return ""
        self._err.seek(0)
        return self._err.read().decode("utf-8", "replace")

    def rss_kb(self) -> int:
        """Resident memory (kB) of the server process and its children."""
        assert self.proc is not None
        pids = [self.proc.pid]
        try:
            out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
            pids += [int(p) for p in out.split()]
        except FileNotFoundError:
            pass
        total = 0
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
