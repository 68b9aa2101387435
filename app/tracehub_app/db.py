"""Database access: one small connection pool per worker process, and the schema revision."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.extras
import psycopg2.pool

from tracehub_app.config import AppConfig


class DatabaseUnavailableError(RuntimeError):
    """The database could not be reached; requests answer 503."""


class Database:
    """A lazily created pool, re-created after a fork (gunicorn workers never share connections)."""

    def __init__(self, config: AppConfig, max_connections: int = 8) -> None:
        self._config = config
        self._max = max_connections
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _get_pool(self) -> psycopg2.pool.ThreadedConnectionPool:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                try:
                    self._pool = psycopg2.pool.ThreadedConnectionPool(0, self._max, **self._config.psycopg2_kwargs())
                except psycopg2.Error as exc:
                    raise DatabaseUnavailableError(str(exc).strip().splitlines()[0]) from exc
                self._pid = os.getpid()
            return self._pool

    @contextlib.contextmanager
    def cursor(self) -> Iterator[Any]:
        """A dict cursor in its own transaction: committed on success, rolled back on error."""
        pool = self._get_pool()
        try:
            connection = pool.getconn()
        except psycopg2.Error as exc:
            raise DatabaseUnavailableError(str(exc).strip().splitlines()[0]) from exc
        broken = False
        try:
            with connection.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                yield cur
            connection.commit()
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            broken = True
            raise DatabaseUnavailableError(str(exc).strip().splitlines()[0]) from exc
        except BaseException:
            with contextlib.suppress(psycopg2.Error):
                connection.rollback()
            raise
        finally:
            pool.putconn(connection, close=broken or bool(connection.closed))


def read_revision(cur: Any) -> str | None:
    """The Alembic revision of the database, or None when it has none."""
    cur.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL AS present")
    if not cur.fetchone()["present"]:
        return None
    cur.execute("SELECT version_num FROM alembic_version")
    rows = cur.fetchall()
    return rows[0]["version_num"] if len(rows) == 1 else None


def revision_at_least(revision: str | None, minimum: str) -> bool:
    """True when ``revision`` is ``minimum`` or later (revisions are numbered 001, 002, ...)."""
    if revision is None:
        return False
    try:
        return int(revision) >= int(minimum)
    except ValueError:
        return False


def check_revision_once(config: AppConfig, minimum: str) -> str | None:
    """Read the revision over a short-lived connection and refuse when it is below ``minimum``."""
    try:
        connection = psycopg2.connect(**config.psycopg2_kwargs())
    except psycopg2.Error as exc:
        raise DatabaseUnavailableError(str(exc).strip().splitlines()[0]) from exc
    try:
        with connection.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            revision = read_revision(cur)
    finally:
        connection.close()
    return revision
