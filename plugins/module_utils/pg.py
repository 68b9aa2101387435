# SPDX-License-Identifier: GPL-3.0-or-later
"""PostgreSQL connection facts, friendly connection errors and the per-database operation lock.

A ``ConnInfo`` is the only way the library talks about a server. It never renders a DSN string with
the password in it: psycopg2 receives keyword arguments, SQLAlchemy a ``URL`` object (so passwords
holding ``%``, ``@`` or ``:`` work), and command-line clients a 0600 pgpass file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ansible_collections.tracehub.deploy.plugins.module_utils.errors import ConnectionFailedError, LockHeldError

try:
    import psycopg2
    from psycopg2 import sql

    HAS_PSYCOPG2 = True
except ImportError:  # pragma: no cover - reported by the modules through missing_required_lib
    HAS_PSYCOPG2 = False

# Advisory lock key shared by every phase that changes a database (backup, migrate, restore).
# Advisory locks are scoped to one database already, so one fixed key means "one lock per database".
OPERATION_LOCK_KEY = 0x7472_6163  # "trac"
APPLICATION_NAME_PREFIX = "tracehub.deploy"


@dataclass(frozen=True, slots=True)
class ConnInfo:
    """How to reach one database; ``password`` is never rendered into a string."""

    host: str = "localhost"
    port: int = 5432
    user: str = "postgres"
    password: str | None = None
    dbname: str = "postgres"
    sslmode: str = "prefer"
    connect_timeout: int = 10
    application_name: str = APPLICATION_NAME_PREFIX

    def describe(self) -> str:
        """Where this points, safe for messages: ``user@host:port/dbname``."""
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"

    def with_db(self, dbname: str) -> ConnInfo:
        """The same server and credentials, another database."""
        return replace(self, dbname=dbname)

    def with_application_name(self, application_name: str) -> ConnInfo:
        """The same target, seen in pg_stat_activity under another name."""
        return replace(self, application_name=application_name[:63])

    def psycopg2_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``psycopg2.connect``."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
            "sslmode": self.sslmode,
            "connect_timeout": self.connect_timeout,
            "application_name": self.application_name,
        }
        if self.password is not None:
            kwargs["password"] = self.password
        return kwargs

    def sqlalchemy_url(self) -> Any:
        """A SQLAlchemy ``URL`` object: components are escaped by SQLAlchemy, never by string glue."""
        from sqlalchemy.engine import URL

        return URL.create(
            "postgresql+psycopg2",
            username=self.user,
            password=self.password,
            host=self.host,
            port=self.port,
            database=self.dbname,
            query={
                "sslmode": self.sslmode,
                "connect_timeout": str(self.connect_timeout),
                "application_name": self.application_name,
            },
        )

    def libpq_env(self, passfile: str | None) -> dict[str, str]:
        """Environment for libpq clients (pg_dump, pg_restore); the password only via ``passfile``."""
        env = {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGDATABASE": self.dbname,
            "PGSSLMODE": self.sslmode,
            "PGCONNECT_TIMEOUT": str(self.connect_timeout),
            "PGAPPNAME": self.application_name,
        }
        if passfile:
            env["PGPASSFILE"] = passfile
        return env


def _pgpass_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


@contextlib.contextmanager
def pgpass_file(conn: ConnInfo) -> Iterator[str | None]:
    """A 0600 pgpass file holding ``conn``'s password for any database, removed on exit."""
    if conn.password is None:
        yield None
        return
    fd, path = tempfile.mkstemp(prefix="tracehub-pgpass-")
    try:
        os.fchmod(fd, 0o600)
        line = ":".join(_pgpass_escape(p) for p in (conn.host, str(conn.port), "*", conn.user, conn.password))
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(line + "\n")
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def explain_connection_error(conn: ConnInfo, exc: Exception) -> ConnectionFailedError:
    """Turn a driver error into a message naming the cause and the fix; never echoes the password."""
    text = str(exc).strip()
    where = conn.describe()
    if "password authentication failed" in text or "no password supplied" in text:
        cause = (
            f"the server rejected the credentials of user {conn.user!r}. "
            "Check login_user/login_password (in playbooks the inventory's db_user and db_password, and the "
            "vault variable behind it, vault_db_password) and pg_hba.conf."
        )
    elif "does not exist" in text and "database" in text:
        cause = f"database {conn.dbname!r} does not exist on {conn.host}:{conn.port}. Check db_name or create it."
    elif "Connection refused" in text or "could not connect" in text or "timeout expired" in text:
        cause = (
            f"no PostgreSQL server answered at {conn.host}:{conn.port}. "
            "Check that the server runs, the host and port, and any firewall between."
        )
    elif "could not translate host name" in text:
        cause = f"host name {conn.host!r} does not resolve. Check db_host."
    else:
        first_line = text.splitlines()[0] if text else type(exc).__name__
        cause = first_line
    return ConnectionFailedError(f"Connecting to {where} failed: {cause}", host=conn.host, port=conn.port)


def connect(conn: ConnInfo) -> Any:
    """Open a psycopg2 connection, or raise ``ConnectionFailedError`` with an actionable message."""
    try:
        return psycopg2.connect(**conn.psycopg2_kwargs())
    except psycopg2.OperationalError as exc:
        raise explain_connection_error(conn, exc) from exc


def describe_lock_holder(cur: Any) -> str:
    """Who holds the operation lock on the current database, from pg_stat_activity."""
    cur.execute(
        """
        SELECT a.pid, a.application_name, a.usename, a.client_addr::text, a.backend_start, a.state
          FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND ((l.classid::bigint << 32) | l.objid::bigint) = %s
        """,
        (OPERATION_LOCK_KEY,),
    )
    row = cur.fetchone()
    if row is None:
        return "another session (it has just finished or is not visible to this user)"
    pid, app, user, addr, started, state = row
    since = f"{started:%Y-%m-%d %H:%M:%S %Z}"
    return (
        f"{app or 'an unnamed client'} (pid {pid}, user {user}, from {addr or 'local socket'}, since {since}, {state})"
    )


@contextlib.contextmanager
def operation_lock(conn: ConnInfo, operation: str, wait_seconds: float = 0.0) -> Iterator[Any]:
    """Hold the per-database operation lock for the duration of a phase's work.

    The lock lives in its own session, named ``tracehub.deploy <operation>`` in pg_stat_activity, so a
    second run can name the first. With ``wait_seconds`` > 0 the second run waits that long first.
    Yields the connection that holds the lock (autocommit) so callers can run cheap queries on it.
    """
    locked = conn.with_application_name(f"{APPLICATION_NAME_PREFIX} {operation}")
    connection = connect(locked)
    connection.autocommit = True
    try:
        with connection.cursor() as cur:
            if wait_seconds > 0:
                cur.execute("SET lock_timeout = %s", (f"{int(wait_seconds * 1000)}ms",))
                try:
                    cur.execute("SELECT pg_advisory_lock(%s)", (OPERATION_LOCK_KEY,))
                    acquired = True
                except psycopg2.errors.LockNotAvailable:
                    acquired = False
                cur.execute("RESET lock_timeout")
            else:
                cur.execute("SELECT pg_try_advisory_lock(%s)", (OPERATION_LOCK_KEY,))
                acquired = bool(cur.fetchone()[0])
            if not acquired:
                holder = describe_lock_holder(cur)
                raise LockHeldError(
                    f"Cannot {operation} {conn.describe()}: another tracehub.deploy run is changing this database: "
                    f"{holder}. Wait for it to finish, or stop it if it is stuck, then run again.",
                    lock_holder=holder,
                )
        yield connection
    finally:
        connection.close()


def quote_ident(connection: Any, name: str) -> str:
    """A safely quoted identifier, rendered by psycopg2."""
    return sql.Identifier(name).as_string(connection)


def server_version(connection: Any) -> tuple[int, str]:
    """(server_version_num, full version string) of the connected server."""
    with connection.cursor() as cur:
        cur.execute("SELECT current_setting('server_version_num')::int, version()")
        num, text = cur.fetchone()
    return int(num), str(text)


def table_row_counts(connection: Any, schema: str = "public") -> dict[str, int]:
    """Exact row count of every ordinary table in ``schema``, sorted by table name.

    Exact (``count(*)``), not the planner's estimate: backups and migrations compare these figures for
    equality, so an estimate would either hide lost rows or report losses that did not happen.
    """
    with connection.cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY c.relname",
            (schema,),
        )
        tables = [row[0] for row in cur.fetchall()]
        counts: dict[str, int] = {}
        for table in tables:
            cur.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table)))
            counts[table] = int(cur.fetchone()[0])
    return counts


def create_database_like(connection: Any, name: str, like: str, owner: str | None = None) -> None:
    """``CREATE DATABASE`` ``name`` from template0 with ``like``'s encoding and locale, owned by ``owner`` if given.

    A copy restored into it then sorts and compares text as the original did, so its unique indexes accept
    exactly the original's rows. ``connection`` is an autocommit connection to any database of the server.
    """
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database WHERE datname = %s", (like,)
        )
        encoding, collate, ctype = cur.fetchone()
        statement = sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING %s LC_COLLATE %s LC_CTYPE %s").format(
            sql.Identifier(name)
        )
        if owner:
            statement = statement + sql.SQL(" OWNER {}").format(sql.Identifier(owner))
        cur.execute(statement, (encoding, collate, ctype))


def count_differences(expected: Mapping[str, int], restored: Mapping[str, int]) -> dict[str, dict[str, int | None]]:
    """Tables whose row counts differ, each as {expected, restored}; a table missing on one side has None there."""
    return {
        table: {"expected": expected.get(table), "restored": restored.get(table)}
        for table in sorted(set(expected) | set(restored))
        if expected.get(table) != restored.get(table)
    }


# Client sessions the connected role may terminate. Other backends (autovacuum on a freshly restored database,
# other roles' sessions without pg_signal_backend) make pg_terminate_backend and DROP ... WITH (FORCE) raise for
# a non-superuser; RENAME and plain DROP DATABASE stop autovacuum workers by themselves.
TERMINATE_SESSIONS_SQL = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE datname = ANY(%s) AND pid <> pg_backend_pid() AND NOT (pid = ANY(%s)) "
    "AND backend_type = 'client backend' "
    "AND (pg_has_role(usesysid, 'MEMBER') OR pg_has_role('pg_signal_backend', 'MEMBER'))"
)


def drop_database(connection: Any, name: str, attempts: int = 10) -> None:
    """Terminate the sessions this role may end, then ``DROP DATABASE IF EXISTS``, retried while in use.

    ``connection`` is an autocommit connection to another database of the same server.
    """
    for attempt in range(attempts):
        with connection.cursor() as cur:
            try:
                cur.execute(TERMINATE_SESSIONS_SQL, ([name], []))
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
                return
            except psycopg2.errors.ObjectInUse:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
