"""The gateway's database: SQLite by default, PostgreSQL when ``KNOLLM_DATABASE_URL`` names
one (``postgresql://…`` or ``postgres://…``; needs the ``gateway`` extra, ``psycopg`` 3).

One small wrapper so the same SQL (written with ``?`` placeholders) runs on both: every
statement is its own transaction (autocommit) unless grouped with :meth:`Database.tx`.
SQLite connections are per thread; PostgreSQL's come from a bounded pool the threads
share (:class:`PostgresDatabase`). A connection closed under its user (a restart, a
failover) is replaced at the next statement, and the stores run their methods once more
when that happened during them (:func:`again_if_lost`).
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

from knollm.errors import GatewayError

__all__ = ["Database", "open_database", "database_url", "redact_url", "is_postgres", "again_if_lost"]

F = TypeVar("F", bound=Callable[..., Any])


def database_url() -> str:
    """``$KNOLLM_DATABASE_URL``, else the client's SQLite ledger file (``$KNOLLM_HOME/knollm.db``
    or the user data dir): gateway keys sit next to the ledger and budgets."""
    from knollm.client.store import default_db_path

    return os.environ.get("KNOLLM_DATABASE_URL") or f"sqlite:///{default_db_path()}"


#: query parameters whose values are masked: libpq takes ``?password=`` and ``?sslpassword=``
#: (names are percent-decoded and case-folded first, as libpq reads them); anything named like a
#: secret too
_SECRET_PARAM = re.compile(r"password|secret|token")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for messages and logs): the userinfo's
    (``user:pw@``) and the query's (``?password=…``, ``?sslpassword=…``, which libpq accepts).
    Generous with malformed URLs: the userinfo runs to the last ``@`` before the first ``/``."""
    from urllib.parse import unquote

    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority = rest.partition("/")[0]
    userinfo, at, _host = authority.rpartition("@")
    rest = rest[len(userinfo) + len(at):]
    if at and ":" in userinfo:
        userinfo = userinfo.partition(":")[0] + ":***"
    rest, qsep, query = rest.partition("?")  # to the end: libpq reads no #fragment
    if qsep:
        params = []
        for item in query.split("&"):
            name, eq, _value = item.partition("=")
            params.append(name + "=***" if eq and _SECRET_PARAM.search(unquote(name).strip().lower()) else item)
        query = "&".join(params)
    return scheme + sep + userinfo + at + rest + qsep + query


def again_if_lost(method: F) -> F:
    """A store method (of an object whose ``db`` is a :class:`Database`) run once more, on a
    new connection, when its connection was lost while it ran (a PostgreSQL restart or
    failover, a proxy's idle timeout): each thread keeps a connection, and every one of
    them finds it dead once. For methods that may run twice: reads, writes a repeat
    leaves as they are, and holds (one made twice expires unused)."""

    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception:
            if not self.db.conn_lost():
                raise
            return method(self, *args, **kwargs)

    return run  # type: ignore[return-value]


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://"))


class Database:
    """Base class; ``dialect`` is ``"sqlite"`` or ``"postgres"``."""

    dialect = ""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()

    def _connect(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _sql(self, sql: str) -> str:
        return sql

    @property
    def conn(self) -> Any:
        """This thread's connection; a new one when it has none, or when the last one was
        closed under it (a PostgreSQL restart or failover, a proxy's idle timeout): the
        statement that met the dead connection failed, the next one connects again."""
        c = getattr(self._local, "conn", None)
        if c is None or getattr(c, "closed", False):
            c = self._local.conn = self._connect()
        return c

    def conn_lost(self) -> bool:
        """True when this thread's connection was closed under it (the next statement
        connects again)."""
        c = getattr(self._local, "conn", None)
        return c is not None and bool(getattr(c, "closed", False))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        cur = self.conn.execute(self._sql(sql), tuple(params))
        rows = cur.fetchall() if cur.description else []
        return rows

    def rowcount(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a write and return how many rows it changed."""
        cur = self.conn.execute(self._sql(sql), tuple(params))
        return cur.rowcount

    @contextmanager
    def tx(self) -> Iterator[None]:  # pragma: no cover - overridden
        yield

    def close(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url
        self.path = Path(path)
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def _connect(self) -> sqlite3.Connection:
        c = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=NORMAL")
        c.execute("PRAGMA busy_timeout=30000")
        return c

    @contextmanager
    def tx(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")


class PostgresDatabase(Database):
    """PostgreSQL through a bounded pool of connections that the process's threads share:
    at most ``$KNOLLM_DATABASE_POOL_SIZE`` (default 8) per process, whatever the number of
    threads calling the store (the gateway's worker threads were dozens of connections per
    process: replicas times workers times that would pass PostgreSQL's limit). A thread
    that finds every connection busy waits for one (30 s at most). A connection found
    closed (a restart, a failover) is dropped with the idle ones, which share its fate;
    :meth:`conn_lost` then tells :func:`again_if_lost` to run the method once more."""

    dialect = "postgres"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.pool_size = max(1, int(os.environ.get("KNOLLM_DATABASE_POOL_SIZE") or 8))
        self._slots = threading.BoundedSemaphore(self.pool_size)
        self._idle: list[Any] = []
        self._idle_lock = threading.Lock()

    def _connect(self) -> Any:
        try:
            import psycopg
        except ImportError as e:  # pragma: no cover - depends on the install
            raise GatewayError("KNOLLM_DATABASE_URL names PostgreSQL but psycopg is not installed: install "
                               "Knollm's gateway extra (pip install -e '.[gateway]' in the Knollm checkout)",
                               status=500, type="server_error") from e
        url = self.url.replace("postgresql+psycopg://", "postgresql://", 1)
        try:
            return psycopg.connect(url, autocommit=True)
        except psycopg.Error as e:
            raise GatewayError(f"cannot connect to {redact_url(self.url)}: {type(e).__name__}",
                               status=503, type="server_error") from None

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s")

    @property
    def conn(self) -> Any:  # pragma: no cover - the pool hands connections out (see _checkout)
        raise AttributeError("PostgresDatabase connections come from its pool")

    @contextmanager
    def _checkout(self) -> Iterator[Any]:
        """A connection for one statement, or this thread's transaction's (see :meth:`tx`)."""
        pinned = getattr(self._local, "tx_conn", None)
        if pinned is not None:
            yield pinned
            return
        if not self._slots.acquire(timeout=30):
            raise GatewayError(f"no connection to {redact_url(self.url)} free within 30 s "
                               f"(KNOLLM_DATABASE_POOL_SIZE={self.pool_size})", status=503, type="server_error")
        c = None
        try:
            with self._idle_lock:
                c = self._idle.pop() if self._idle else None
            if c is None:
                c = self._connect()
            yield c
        finally:
            if c is not None:
                self._put_back(c)
            self._slots.release()

    def _put_back(self, c: Any) -> None:
        if c.closed:  # lost under us: a restart or failover ends the idle ones too
            self._local.lost = True
            with self._idle_lock:
                stale, self._idle = self._idle, []
            for old in stale:
                old.close()
            return
        if c.info.transaction_status != 0:  # (not idle: left mid-transaction) never handed out again
            c.close()
            return
        with self._idle_lock:
            self._idle.append(c)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._checkout() as c:
            cur = c.execute(self._sql(sql), tuple(params))
            return cur.fetchall() if cur.description else []

    def rowcount(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._checkout() as c:
            return c.execute(self._sql(sql), tuple(params)).rowcount

    @contextmanager
    def tx(self) -> Iterator[None]:
        with self._checkout() as c:
            self._local.tx_conn = c
            try:
                with c.transaction():
                    yield
            finally:
                self._local.tx_conn = None

    def conn_lost(self) -> bool:
        lost = getattr(self._local, "lost", False)
        self._local.lost = False
        return lost

    def close(self) -> None:
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for c in idle:
            c.close()


def open_database(url: str | None = None) -> Database:
    """The database named by ``url`` (default :func:`database_url`)."""
    url = url or database_url()
    return PostgresDatabase(url) if is_postgres(url) else SqliteDatabase(url)
