# SPDX-License-Identifier: GPL-3.0-or-later
"""Verified pg_dump backups: dump, checksum, verify by test restore, manifest; list and re-check them.

A backup is two files in the backup directory (mode 0700): ``<name>.dump`` (pg_dump custom format,
0600) and ``<name>.json`` (the manifest, 0600). The dump is written to ``<name>.dump.partial``,
checksummed and verified (``pg_restore --list`` and a test restore into a scratch database whose row
counts must equal the source's); only then is it renamed to ``<name>.dump`` and the manifest written
(temp file + rename). A failed run removes everything it wrote, so a file that looks like a backup is
one. The row counts and the dump come from the same exported snapshot, so they agree exactly even
while the application keeps writing.

Side effects are injected: commands through a ``Run`` callable, SQL through a ``Database`` adapter
(``PgDatabase`` for real servers), time through a clock.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ansible_collections.tracehub.deploy.plugins.module_utils.errors import BackupError, DeployError
from ansible_collections.tracehub.deploy.plugins.module_utils.pg import (
    ConnInfo,
    connect,
    count_differences,
    create_database_like,
    drop_database,
    operation_lock,
    pgpass_file,
    table_row_counts,
)
from ansible_collections.tracehub.deploy.plugins.module_utils.runner import CommandResult, Run

try:
    import psycopg2

    HAS_PSYCOPG2 = True
    _DB_ERRORS: tuple[type[BaseException], ...] = (psycopg2.Error,)
except ImportError:  # pragma: no cover - reported by the modules through missing_required_lib
    HAS_PSYCOPG2 = False
    _DB_ERRORS = ()

FORMAT_VERSION = 1
VERIFY_CHOICES = ("none", "list", "restore")
# pg_dump formats the collection writes: one file (custom), or a directory of files that pg_dump and
# pg_restore can process in parallel (directory, with jobs > 1).
FORMAT_CHOICES = ("custom", "directory")
DIRECTORY_SUFFIX = ".dir"
DIRECTORY_PARTIAL_SUFFIX = ".dir.partial"
SCRATCH_PREFIX = "tracehub_verify_"
DUMP_SUFFIX = ".dump"
PARTIAL_SUFFIX = ".dump.partial"
MANIFEST_SUFFIX = ".json"
LOCK_OPERATION = "back up"
SNAPSHOT_PLACEHOLDER = "<exported-at-run-time>"

MANIFEST_KEYS = (
    "format_version",
    "name",
    "environment",
    "database",
    "host",
    "port",
    "created_at",
    "finished_at",
    "path",
    "format",
    "size_bytes",
    "sha256",
    "server_version",
    "pg_dump_version",
    "alembic_revision",
    "database_oid",
    "row_counts",
    "git_commit",
    "verified",
    "verification",
    "pre_migration",
)

# Lines that make a run a failure even when the exit code is 0 (pg_restore without --exit-on-error
# exits 0 after "warning: errors ignored on restore"; never trust the exit code alone).
_DUMP_ERROR_MARKERS = ("pg_dump: error:", "pg_dump: fatal:")
_RESTORE_ERROR_MARKERS = ("pg_restore: error:", "pg_restore: fatal:", "warning: errors ignored on restore")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_HASH_CHUNK = 1024 * 1024


# --- value objects ---


@dataclass(frozen=True, slots=True)
class BackupRequest:
    """What to back up, where, and how carefully."""

    conn: ConnInfo
    dest: Path
    environment: str
    name: str | None = None
    verify: str = "restore"
    max_age: float | None = None
    force: bool = False
    pre_migration: bool = False
    git_commit: str | None = None
    pg_bin_dir: Path | None = None
    # "custom" (one file) or "directory" (parallel dump and restore with ``jobs`` workers).
    format: str = "custom"
    jobs: int = 1


@dataclass(frozen=True, slots=True)
class ServerFacts:
    """Cheap facts about the source database, read before anything else."""

    server_version_num: int
    server_version: str
    alembic_revision: str | None
    # Which database this is: a database dropped and recreated under the same name gets a new oid.
    database_oid: int | None = None
    # Tables pg_dump would dump but the connected role may not read: refused before dumping, not midway.
    unreadable_tables: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SnapshotFacts:
    """What the dump will contain, read inside the snapshot that pg_dump imports.

    ``row_counts`` may be filled while the snapshot context is open (``PgDatabase`` counts beside pg_dump):
    read it once the context has exited.
    """

    snapshot: str | None
    alembic_revision: str | None
    row_counts: dict[str, int]


@dataclass(slots=True)
class BackupResult:
    """Outcome of ``create``: the manifest (reused, written or predicted) and the commands run."""

    changed: bool
    msg: str
    backup: dict[str, Any]
    commands: list[list[str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Seconds per stage of a real run (dump_s, checksum_s, verify_s), for benchmarks; not in the module result.
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Module result keys."""
        return {"changed": self.changed, "msg": self.msg, "backup": self.backup, "commands": self.commands}


@dataclass(frozen=True, slots=True)
class BackupListing:
    """Manifests found in a backup directory, newest first, and the files that are not readable manifests."""

    backups: list[dict[str, Any]]
    unreadable: list[dict[str, str]]

    def as_dict(self) -> dict[str, Any]:
        """Plain dict form."""
        return {"backups": self.backups, "unreadable": self.unreadable}


@dataclass(frozen=True, slots=True)
class IntegrityReport:
    """Result of re-checking an existing dump against its manifest."""

    ok: bool
    sha256_ok: bool | None
    list_ok: bool | None
    reason: str | None
    commands: list[list[str]]

    def as_dict(self) -> dict[str, Any]:
        """Plain dict form."""
        return {
            "integrity_ok": self.ok,
            "sha256_ok": self.sha256_ok,
            "list_ok": self.list_ok,
            "integrity_reason": self.reason,
        }


# --- the database side, injectable ---


class Database(Protocol):
    """What ``create`` needs from the server; ``PgDatabase`` is the real one, tests pass fakes."""

    def lock(self, operation: str) -> AbstractContextManager[Any]:
        """Hold the per-database operation lock."""

    def probe(self) -> ServerFacts:
        """Server version and Alembic revision."""

    def snapshot(self, export: bool) -> AbstractContextManager[SnapshotFacts]:
        """A read-only repeatable-read transaction, exported for pg_dump when ``export``; its row counts are
        complete when the context exits."""

    def create_scratch(self, name: str) -> None:
        """Create an empty database for the test restore."""

    def drop_scratch(self, name: str) -> None:
        """Drop the scratch database, terminating its sessions."""

    def idle_databases(self, prefix: str) -> list[str]:
        """Databases whose name starts with ``prefix`` and that nobody is connected to."""

    def row_counts(self, dbname: str) -> dict[str, int]:
        """Exact row counts of every public table of ``dbname`` on the same server."""


# The tables of every schema pg_dump dumps by default that the connected role has no SELECT privilege on.
_UNREADABLE_TABLES_SQL = (
    "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' "
    "AND NOT has_table_privilege(c.oid, 'SELECT') ORDER BY 1"
)


def _alembic_revision(connection: Any) -> str | None:
    with connection.cursor() as cur:
        cur.execute("SELECT to_regclass('alembic_version') IS NOT NULL")
        if not cur.fetchone()[0]:
            return None
        cur.execute("SELECT version_num FROM alembic_version ORDER BY version_num")
        heads = [str(row[0]) for row in cur.fetchall()]
    # Several rows only with branched histories; keep them all, in a stable order.
    return ",".join(heads) if heads else None


class PgDatabase:
    """``Database`` backed by psycopg2 connections to the server ``conn`` points at."""

    def __init__(self, conn: ConnInfo) -> None:
        self.conn = conn

    def lock(self, operation: str) -> AbstractContextManager[Any]:
        """The shared per-database operation lock (see ``pg.operation_lock``)."""
        return operation_lock(self.conn, operation)

    def _connect(self, suffix: str, dbname: str | None = None) -> Any:
        target = self.conn if dbname is None else self.conn.with_db(dbname)
        return connect(target.with_application_name(f"{self.conn.application_name} ({suffix})"))

    def probe(self) -> ServerFacts:
        """Server version, Alembic revision and database oid, from a short read-only session.

        No row counts: counting every table costs as much as a good part of the dump, and only a reuse
        candidate needs them (``_reusable`` asks ``row_counts`` then).
        """
        connection = self._connect("probe")
        try:
            connection.set_session(readonly=True)
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT current_setting('server_version_num')::int, current_setting('server_version'), "
                    "(SELECT oid::bigint FROM pg_database WHERE datname = current_database())"
                )
                num, text, oid = cur.fetchone()
                cur.execute(_UNREADABLE_TABLES_SQL)
                unreadable = tuple(row[0] for row in cur.fetchall())
            revision = _alembic_revision(connection)
            connection.rollback()
        finally:
            connection.close()
        return ServerFacts(int(num), str(text), revision, int(oid), unreadable)

    @contextlib.contextmanager
    def snapshot(self, export: bool) -> Iterator[SnapshotFacts]:
        """Export a snapshot and read the revision in it; hold it open for pg_dump while counting its rows.

        The exporting connection would sit idle while pg_dump runs: counting every table on it meanwhile, in
        a thread, takes the exact counts off the backup's wall time instead of adding them before the dump.
        ``row_counts`` is complete once the context has exited; a failure inside the context cancels the count.
        """
        connection = self._connect("snapshot")
        try:
            connection.set_session(isolation_level="REPEATABLE READ", readonly=True)
            snapshot_id = None
            if export:
                with connection.cursor() as cur:
                    cur.execute("SELECT pg_export_snapshot()")
                    snapshot_id = str(cur.fetchone()[0])
            facts = SnapshotFacts(snapshot_id, _alembic_revision(connection), {})
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot-row-counts") as worker:
                counting = worker.submit(table_row_counts, connection)
                try:
                    yield facts
                except BaseException:
                    connection.cancel()  # the dump failed: its counts are not needed
                    with contextlib.suppress(Exception):
                        counting.result()
                    raise
            facts.row_counts.update(counting.result())
        finally:
            with contextlib.suppress(Exception):
                connection.rollback()
            connection.close()

    def create_scratch(self, name: str) -> None:
        """``CREATE DATABASE`` from template0 with the source's encoding and locale."""
        connection = self._connect("verify")
        connection.autocommit = True
        try:
            create_database_like(connection, name, self.conn.dbname)
        except psycopg2.Error as exc:
            cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            fix = ""
            if "permission denied" in cause:
                fix = f" Grant CREATEDB to {self.conn.user!r}, or set verify to 'list' (weaker: no test restore)."
            raise BackupError(
                f"Creating the scratch database {name} on {self.conn.host}:{self.conn.port} for the test restore "
                f"failed: {cause}.{fix}",
                scratch_database=name,
            ) from exc
        finally:
            connection.close()

    def drop_scratch(self, name: str) -> None:
        """Drop the scratch database, ending the sessions this role may end (never ``WITH (FORCE)``).

        FORCE raises for a non-superuser while autovacuum works on the freshly restored scratch, which left
        scratch copies of the data behind.
        """
        connection = self._connect("verify cleanup")
        connection.autocommit = True
        try:
            drop_database(connection, name)
        except psycopg2.Error as exc:
            raise BackupError(
                f"Dropping the scratch database {name} failed: {str(exc).strip()}. Drop it by hand.",
                scratch_database=name,
            ) from exc
        finally:
            connection.close()

    def idle_databases(self, prefix: str) -> list[str]:
        """Databases whose name starts with ``prefix`` and that nobody is connected to."""
        connection = self._connect("sweep")
        try:
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT d.datname FROM pg_database d WHERE starts_with(d.datname, %s) "
                    "AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname) ORDER BY 1",
                    (prefix,),
                )
                return [row[0] for row in cur.fetchall()]
        finally:
            connection.close()

    def row_counts(self, dbname: str) -> dict[str, int]:
        """Exact row counts of ``dbname``'s public tables."""
        connection = self._connect("row counts", dbname)
        try:
            connection.set_session(readonly=True)
            return table_row_counts(connection)
        finally:
            connection.close()


# --- small pure helpers ---


def utc_now() -> datetime:
    """The default clock."""
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """UTC ISO-8601 with a ``Z``, to the second."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def parse_time(text: str) -> datetime:
    """Inverse of ``format_time`` (accepts any ISO-8601 with offset or Z)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def parse_duration(value: Any) -> float | None:
    """Seconds from ``900``, ``"900"``, ``"15m"``, ``"1h30m"``, ``"2d"``; ``None``/``""`` mean no duration."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise BackupError(f"Invalid max_age {value!r}: give seconds or a duration such as '15m', '1h', '2d'.")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION_RE.findall(text)
            if not parts or _DURATION_RE.sub("", text).strip():
                raise BackupError(
                    f"Invalid max_age {value!r}: give seconds or a duration such as '15m', '1h', '1h30m', '2d'."
                ) from None
            seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
    if seconds < 0:
        raise BackupError(f"Invalid max_age {value!r}: it cannot be negative.")
    return seconds


def major_from_version_num(num: int) -> int:
    """Major version from ``server_version_num``: 150004 -> 15, 90624 -> 906 (9.6)."""
    return num // 10000 if num >= 100000 else num // 100


def major_from_version_output(text: str) -> tuple[int, str]:
    """(major, version text) from ``pg_dump --version`` output: 'pg_dump (PostgreSQL) 15.4' -> (15, '15.4')."""
    match = _VERSION_RE.search(text)
    if match is None:
        raise BackupError(f"Cannot read the version from {text.strip()!r}.")
    first = int(match.group(1))
    second = int(match.group(2) or 0)
    major = first if first >= 10 else first * 100 + second
    return major, text[match.start(1) :].strip()


def _major_label(major: int) -> str:
    return str(major) if major >= 10 else f"{major // 100}.{major % 100}"


def sha256_file(path: Path) -> tuple[str, int]:
    """(hex sha256, size in bytes) of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def sha256_path(path: Path) -> tuple[str, int]:
    """(hex sha256, size in bytes) of a dump: a file's own hash, or for a directory-format dump a hash
    over the sorted ``<relative name> <file sha256>`` lines of its files and their total size."""
    path = Path(path)
    if not path.is_dir():
        return sha256_file(path)
    members = sorted(p for p in path.rglob("*") if p.is_file())
    # One file per core at a time: hashlib releases the GIL on large buffers, and a parallel dump has
    # a file per table to hash. map() keeps the sorted order, so the digest does not depend on timing.
    with ThreadPoolExecutor(max_workers=max(1, min(len(members), os.cpu_count() or 1))) as pool:
        file_digests = list(pool.map(sha256_file, members))
    digest = hashlib.sha256()
    total = 0
    for member, (file_digest, size) in zip(members, file_digests, strict=True):
        digest.update(f"{member.relative_to(path).as_posix()} {file_digest}\n".encode())
        total += size
    return digest.hexdigest(), total


def default_name(environment: str, database: str, moment: datetime) -> str:
    """``<environment>-<db>-<UTC yyyymmddThhmmssZ>`` with unsafe characters replaced by ``_``."""
    env = _UNSAFE_NAME_CHARS.sub("_", environment).strip("._-") or "env"
    db = _UNSAFE_NAME_CHARS.sub("_", database).strip("._-") or "db"
    return f"{env}-{db}-{moment.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def resolve_tool(tool: str, pg_bin_dir: Path | None) -> str:
    """Absolute path of a PostgreSQL client program, or a ``BackupError`` with the fix."""
    if pg_bin_dir is not None:
        candidate = Path(pg_bin_dir) / tool
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
        raise BackupError(
            f"{tool} not found in pg_bin_dir {pg_bin_dir}: point pg_bin_dir at the bin directory of the PostgreSQL "
            "client (for example /usr/lib/postgresql/16/bin).",
            pg_bin_dir=str(pg_bin_dir),
        )
    found = shutil.which(tool)
    if found is None:
        raise BackupError(
            f"{tool} not found on PATH: install the PostgreSQL client (package postgresql-client-<server major>) "
            "or set pg_bin_dir to its bin directory."
        )
    return found


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _run_checked(
    run: Run,
    argv: Sequence[str],
    env: Mapping[str, str],
    commands: list[list[str]],
    what: str,
    markers: Sequence[str],
) -> CommandResult:
    """Run a command; fail on a non-zero exit OR on error lines in stderr."""
    commands.append(list(argv))
    try:
        result = run(list(argv), dict(env))
    except OSError as exc:
        raise BackupError(f"{what} failed: cannot run {argv[0]}: {exc.strerror or exc}", command=list(argv)) from exc
    error_lines = [line.strip() for line in result.stderr.splitlines() if any(m in line for m in markers)]
    if result.rc != 0 or error_lines:
        if error_lines:
            cause = error_lines[0]
            if result.rc == 0:
                cause += " (exit code 0, but errors were reported)"
        else:
            last = _tail(result.stderr, 1)
            cause = f"exit code {result.rc}" + (f": {last}" if last else "")
        raise BackupError(f"{what} failed: {cause}", rc=result.rc, stderr=_tail(result.stderr), command=list(argv))
    return result


def _connection_args(conn: ConnInfo, dbname: str) -> list[str]:
    args = ["--no-password", "--host", conn.host, "--port", str(conn.port), "--username", conn.user]
    # libpq reads a --dbname holding "=" or a URI prefix as a connection string; such names come from PGDATABASE.
    if "=" not in dbname and not dbname.startswith(("postgres://", "postgresql://")):
        args.append(f"--dbname={dbname}")
    return args


def dump_argv(
    pg_dump: str, conn: ConnInfo, path: Path, snapshot: str | None, fmt: str = "custom", jobs: int = 1
) -> list[str]:
    """The pg_dump command line (password-free); ``jobs`` > 1 only with the directory format."""
    argv = [pg_dump, f"--format={fmt}", f"--file={path}"]
    if fmt == "directory" and jobs > 1:
        argv.append(f"--jobs={jobs}")
    if snapshot:
        argv.append(f"--snapshot={snapshot}")
    return argv + _connection_args(conn, conn.dbname)


def list_argv(pg_restore: str, path: Path) -> list[str]:
    """``pg_restore --list`` of an archive: reads the whole table of contents, touches no server."""
    return [pg_restore, "--list", str(path)]


def restore_argv(
    pg_restore: str, conn: ConnInfo, dbname: str, path: Path, jobs: int = 1, options: Sequence[str] = ()
) -> list[str]:
    """pg_restore of ``path`` into ``dbname`` (password-free), stopping at the first error; ``options`` added.

    Test restores and real restores (plugins/module_utils/restore.py) share it: a restore runs what the
    backup's verification proved works.
    """
    parallel = [f"--jobs={jobs}"] if jobs > 1 else []
    return [
        pg_restore,
        "--no-owner",
        "--exit-on-error",
        *options,
        *parallel,
        *_connection_args(conn, dbname),
        str(path),
    ]


def _check_archive_listing(result: CommandResult, path: Path, fmt: str = "custom") -> None:
    if f"Format: {fmt.upper()}" not in result.stdout:
        raise BackupError(
            f"pg_restore --list cannot read {path} as a {fmt}-format archive.",
            stderr=_tail(result.stderr),
        )


def _restrict_dump(path: Path) -> None:
    """Mode 0600 on a dump file, or 0700/0600 on a directory-format dump and its files."""
    if not path.is_dir():
        os.chmod(path, 0o600)
        return
    os.chmod(path, 0o700)
    for member in path.rglob("*"):
        os.chmod(member, 0o700 if member.is_dir() else 0o600)


def _fsync_dump(path: Path) -> None:
    """Flush a dump file (or every file of a directory-format dump) to disk before the rename."""
    members = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for member in members:
        with open(member, "rb") as handle:
            os.fsync(handle.fileno())
    if path.is_dir():
        _fsync_dir(path)


def _ensure_private_dir(dest: Path) -> None:
    try:
        dest.mkdir(mode=0o700, parents=True, exist_ok=True)
        if dest.stat().st_mode & 0o077:
            dest.chmod(0o700)
    except OSError as exc:
        raise BackupError(
            f"Preparing the backup directory {dest} failed: {exc.strerror or exc}. Give a directory that this user "
            "can create and write, on a filesystem with room for the dump (module option dest; roles: backup_dir, "
            "inventory: tracehub_backup_dir).",
            path=str(dest),
        ) from exc


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_manifest(path: Path, manifest: Mapping[str, Any]) -> None:
    """Write the manifest through a 0600 temp file in the same directory, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".json.tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(dict(manifest), handle, indent=2, sort_keys=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _remove_quietly(*paths: Path) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            continue
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            path.unlink()


# --- listing and re-checking existing backups ---


def load_manifest(path: Path) -> dict[str, Any]:
    """Load one manifest, or raise ``BackupError`` saying why it is not one."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BackupError(f"{path} is not a readable JSON manifest: {exc}", path=str(path)) from exc
    if not isinstance(data, dict):
        raise BackupError(f"{path} is not a backup manifest (not a JSON object).", path=str(path))
    missing = [key for key in MANIFEST_KEYS if key not in data]
    if missing:
        raise BackupError(f"{path} is not a backup manifest: missing {', '.join(missing)}.", path=str(path))
    if data["format_version"] != FORMAT_VERSION:
        raise BackupError(f"{path} has unsupported format_version {data['format_version']!r}.", path=str(path))
    try:
        parse_time(str(data["created_at"]))
    except ValueError as exc:
        raise BackupError(f"{path} has an unreadable created_at {data['created_at']!r}.", path=str(path)) from exc
    return data | {"manifest_path": str(path)}


def list_backups(dest: Path | str, environment: str | None = None, database: str | None = None) -> BackupListing:
    """Manifests in ``dest`` (optionally of one environment/database), newest first.

    Unreadable or foreign ``*.json`` files are listed as unreadable with a reason; a missing directory has no backups.
    """
    directory = Path(dest)
    backups: list[dict[str, Any]] = []
    unreadable: list[dict[str, str]] = []
    if not directory.is_dir():
        return BackupListing([], [])
    for path in sorted(directory.glob(f"*{MANIFEST_SUFFIX}")):
        if path.name.startswith("."):
            continue
        try:
            manifest = load_manifest(path)
        except BackupError as exc:
            unreadable.append({"path": str(path), "reason": exc.msg})
            continue
        if environment is not None and manifest["environment"] != environment:
            continue
        if database is not None and manifest["database"] != database:
            continue
        backups.append(manifest)
    backups.sort(key=lambda m: (parse_time(str(m["created_at"])), str(m["name"])), reverse=True)
    return BackupListing(backups, unreadable)


def age_seconds(manifest: Mapping[str, Any], now: datetime) -> float:
    """Seconds since the backup's ``created_at``."""
    return (now - parse_time(str(manifest["created_at"]))).total_seconds()


def select_backups(
    backups: Sequence[Mapping[str, Any]],
    now: datetime,
    verified_only: bool = False,
    max_age: float | None = None,
) -> list[dict[str, Any]]:
    """Keep the (already newest-first) manifests that are verified / younger than ``max_age``; add ``age_seconds``."""
    selected = []
    for manifest in backups:
        if verified_only and not manifest["verified"]:
            continue
        age = age_seconds(manifest, now)
        if max_age is not None and age > max_age:
            continue
        selected.append(dict(manifest) | {"age_seconds": int(age)})
    return selected


def verify_existing(
    manifest: Mapping[str, Any],
    run: Run | None = None,
    pg_bin_dir: Path | None = None,
    list_archive: bool = True,
) -> IntegrityReport:
    """Re-check a stored dump: size and sha256 against the manifest, then ``pg_restore --list``.

    Detects corruption and truncation. ``run`` is needed only for the listing; without it (or with
    ``list_archive=False``) only the checksum is checked.
    """
    commands: list[list[str]] = []
    path = Path(str(manifest["path"]))
    try:
        digest, size = sha256_path(path)
    except OSError as exc:
        return IntegrityReport(False, False, None, f"cannot read {path}: {exc.strerror or exc}", commands)
    if size != manifest.get("size_bytes"):
        reason = (
            f"size mismatch (manifest {manifest.get('size_bytes')} bytes, file {size} bytes): truncated or replaced"
        )
        return IntegrityReport(False, False, None, reason, commands)
    if digest != manifest.get("sha256"):
        reason = f"checksum mismatch (expected {str(manifest.get('sha256'))[:12]}…, got {digest[:12]}…)"
        return IntegrityReport(False, False, None, reason, commands)
    if not list_archive or run is None:
        return IntegrityReport(True, True, None, None, commands)
    try:
        pg_restore = resolve_tool("pg_restore", pg_bin_dir)
        result = _run_checked(
            run, list_argv(pg_restore, path), {}, commands, "Listing the archive", _RESTORE_ERROR_MARKERS
        )
        _check_archive_listing(result, path, str(manifest.get("format") or "custom"))
    except BackupError as exc:
        return IntegrityReport(False, True, False, exc.msg, commands)
    return IntegrityReport(True, True, True, None, commands)


# --- creating a backup ---


def _check_client_versions(
    run: Run, pg_dump: str, pg_restore: str | None, facts: ServerFacts, commands: list[list[str]], where: str
) -> str:
    """Refuse, before dumping, a pg_dump (or pg_restore) older than the server; return pg_dump's version."""
    server_major = major_from_version_num(facts.server_version_num)
    fix = (
        f"Install the postgresql-client-{_major_label(server_major)} package (or newer) or set pg_bin_dir to the "
        "newer binaries."
    )
    dump_out = _run_checked(run, [pg_dump, "--version"], {}, commands, f"Backing up {where}: pg_dump --version", ())
    dump_major, dump_version = major_from_version_output(dump_out.stdout)
    if dump_major < server_major:
        raise BackupError(
            f"Backing up {where} refused before dumping: {pg_dump} is version {dump_version}, older than the server "
            f"({facts.server_version}); pg_dump cannot dump a newer server. {fix}",
            pg_dump_version=dump_version,
            server_version=facts.server_version,
        )
    if pg_restore is not None:
        restore_out = _run_checked(
            run, [pg_restore, "--version"], {}, commands, f"Backing up {where}: pg_restore --version", ()
        )
        restore_major, restore_version = major_from_version_output(restore_out.stdout)
        if restore_major < dump_major:
            raise BackupError(
                f"Backing up {where} refused before dumping: {pg_restore} is version {restore_version}, older than "
                f"pg_dump {dump_version}, and could not read the archive to verify it. Use pg_restore from the same "
                "installation as pg_dump (pg_bin_dir).",
                pg_dump_version=dump_version,
                pg_restore_version=restore_version,
            )
    return dump_version


def _reusable(
    request: BackupRequest,
    name: str | None,
    facts: ServerFacts,
    now: datetime,
    live_row_counts: Callable[[], dict[str, int]],
) -> tuple[dict[str, Any] | None, str]:
    """A backup that makes this run unnecessary, and why (or why not).

    A backup is only reused while the data it holds is still the data there is: ``live_row_counts`` (exact
    counts of the live database, taken at most once) is called only for a candidate that passed every cheaper
    test, so a run that will dump anyway never pays for counting.
    """
    if request.force:
        return None, "force is set"
    conn = request.conn
    if name is not None:
        manifest_path = request.dest / f"{name}{MANIFEST_SUFFIX}"
        if not manifest_path.exists():
            return None, f"no backup named {name}"
        manifest = load_manifest(manifest_path)
        if (manifest["environment"], manifest["database"]) != (request.environment, conn.dbname):
            raise BackupError(
                f"Backing up {conn.describe()} as {name} refused: {manifest_path} is a backup of "
                f"{manifest['environment']}/{manifest['database']}. Choose another name.",
                path=str(manifest_path),
            )
        report = verify_existing(manifest, list_archive=False)
        if not manifest["verified"] or not report.ok:
            why = "is not verified" if not manifest["verified"] else f"is damaged: {report.reason}"
            raise BackupError(
                f"Backing up {conn.describe()} as {name} refused: the existing backup {manifest_path} {why}. "
                "Set force to replace it, or choose another name.",
                path=str(manifest_path),
            )
        return manifest, f"backup {name} already exists and is verified"
    if request.max_age is None:
        return None, "no max_age given"
    counts: dict[str, int] | None = None
    for manifest in list_backups(request.dest, request.environment, conn.dbname).backups:
        if not manifest["verified"] or manifest["alembic_revision"] != facts.alembic_revision:
            continue
        if manifest.get("database_oid") != facts.database_oid:
            continue  # another incarnation of the database
        if age_seconds(manifest, now) > request.max_age:
            break  # newest first: every later one is older still
        if counts is None:
            counts = live_row_counts()
        if manifest.get("row_counts") != counts:
            continue  # the data moved on since
        if verify_existing(manifest, list_archive=False).ok:
            return manifest, (
                f"verified backup {manifest['name']} is younger than max_age and holds the same revision and row counts"
            )
    return None, "no verified backup younger than max_age at this revision"


def _new_manifest(
    request: BackupRequest,
    name: str,
    dump_path: Path,
    started: datetime,
    facts: ServerFacts,
    snap: SnapshotFacts,
    pg_dump_version: str,
) -> dict[str, Any]:
    conn = request.conn
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "environment": request.environment,
        "database": conn.dbname,
        "host": conn.host,
        "port": conn.port,
        "created_at": format_time(started),
        "finished_at": None,
        "path": str(dump_path),
        "format": request.format,
        "size_bytes": None,
        "sha256": None,
        "server_version": facts.server_version,
        "pg_dump_version": pg_dump_version,
        "alembic_revision": snap.alembic_revision,
        "database_oid": facts.database_oid,
        "row_counts": dict(snap.row_counts),
        "git_commit": request.git_commit or None,
        "verified": False,
        "verification": {"list_ok": None, "restore_ok": None, "restored_row_counts_match": None, "verified_at": None},
        "pre_migration": bool(request.pre_migration),
    }


def _scratch_token_for(database_oid: int, token: Callable[[], str]) -> Callable[[], str]:
    return lambda: f"{database_oid}_{token()}"


def _sweep_leftovers(db: Database, dest: Path, environment: str, dbname: str, database_oid: int | None) -> list[str]:
    """Remove what an interrupted backup of this database left behind, and say so.

    A killed run (SIGKILL, an async timeout) cannot clean up: its partial dump stays in ``dest`` and its
    scratch database, a full copy of the data, on the server. The caller holds the per-database lock, so no
    other backup of this database is running: every partial dump of it and every scratch database named
    after it that nobody is connected to is a leftover.
    """
    swept: list[str] = []
    for path in sorted(dest.glob(f"{glob.escape(f'{environment}-{dbname}-')}*")):
        if path.name.endswith((PARTIAL_SUFFIX, DIRECTORY_PARTIAL_SUFFIX)):
            _remove_quietly(path)
            swept.append(f"Removed {path}, left by an interrupted backup.")
    if database_oid is not None:
        for name in db.idle_databases(f"{SCRATCH_PREFIX}{database_oid}_"):
            try:
                db.drop_scratch(name)
            except BackupError as exc:  # a leftover must not stop today's backup
                swept.append(f"Found scratch database {name}, left by an interrupted backup: {exc.msg}")
                continue
            swept.append(f"Dropped scratch database {name}, left by an interrupted backup.")
    return swept


def _test_restore(
    request: BackupRequest,
    db: Database,
    run: Run,
    pg_restore: str,
    path: Path,
    env: Mapping[str, str],
    expected: Mapping[str, int],
    commands: list[list[str]],
    token: Callable[[], str],
    warnings: list[str],
) -> None:
    """Restore into a scratch database, compare row counts, always drop the scratch."""
    scratch = f"{SCRATCH_PREFIX}{token()}"
    failure: BaseException | None = None
    try:
        db.create_scratch(scratch)
        _run_checked(
            run,
            restore_argv(pg_restore, request.conn, scratch, path, request.jobs),
            env,
            commands,
            f"Test restore of {path.name} into scratch database {scratch}",
            _RESTORE_ERROR_MARKERS,
        )
        restored = db.row_counts(scratch)
        differences = count_differences(expected, restored)
        if differences:
            raise BackupError(
                f"Test restore of {path.name} into {scratch} does not match the source: row counts differ in "
                f"{', '.join(differences)}.",
                row_count_differences=differences,
            )
    except BaseException as exc:
        failure = exc
        raise
    finally:
        try:
            db.drop_scratch(scratch)
        except DeployError as exc:
            # The backup itself is fine when only the cleanup failed: warn. After a failure, that failure
            # stays the error and the leftover scratch database is named in its details.
            if failure is None:
                warnings.append(exc.msg)
            elif isinstance(failure, DeployError):
                failure.details["scratch_drop_error"] = exc.msg


def _token() -> str:
    return secrets.token_hex(6)


def create(
    request: BackupRequest,
    run: Run,
    db: Database | None = None,
    dry_run: bool = False,
    clock: Callable[[], datetime] = utc_now,
    token: Callable[[], str] = _token,
) -> BackupResult:
    """Take a verified backup of ``request.conn``'s database, or reuse a recent one, or predict (``dry_run``).

    Holds the per-database operation lock for the whole dump and verification. Raises ``BackupError``,
    ``LockHeldError`` or ``ConnectionFailedError``; on failure nothing that looks like a backup is left.
    """
    try:
        return _create(request, run, db, dry_run, clock, token)
    except _DB_ERRORS as exc:
        text = str(exc).strip()
        cause = text.splitlines()[0] if text else type(exc).__name__
        raise BackupError(f"Backing up {request.conn.describe()} failed: database error: {cause}") from exc


def _create(
    request: BackupRequest,
    run: Run,
    db: Database | None,
    dry_run: bool,
    clock: Callable[[], datetime],
    token: Callable[[], str],
) -> BackupResult:
    conn = request.conn
    where = conn.describe()
    if request.verify not in VERIFY_CHOICES:
        raise BackupError(f"Invalid verify {request.verify!r}: choose one of {', '.join(VERIFY_CHOICES)}.")
    if request.format not in FORMAT_CHOICES:
        raise BackupError(f"Invalid format {request.format!r}: choose one of {', '.join(FORMAT_CHOICES)}.")
    if request.jobs < 1:
        raise BackupError(f"Invalid jobs {request.jobs!r}: give 1 or more parallel workers.")
    if request.name is not None and not _NAME_RE.match(request.name):
        raise BackupError(
            f"Invalid backup name {request.name!r}: use letters, digits, '.', '_' and '-' (no '/'), "
            "starting with a letter or digit."
        )
    db = db if db is not None else PgDatabase(conn)
    dest = Path(request.dest)
    commands: list[list[str]] = []
    warnings: list[str] = []
    pg_dump = resolve_tool("pg_dump", request.pg_bin_dir)
    pg_restore = resolve_tool("pg_restore", request.pg_bin_dir) if request.verify != "none" else None

    # Check mode takes no lock: it writes nothing, and a held lock would only be reported, not waited for.
    lock = contextlib.nullcontext() if dry_run else db.lock(LOCK_OPERATION)
    with lock:
        facts = db.probe()
        if facts.unreadable_tables:
            tables = ", ".join(facts.unreadable_tables)
            raise BackupError(
                f"Backing up {where} refused before dumping: the role {conn.user!r} has no SELECT privilege on "
                f"{tables}, so pg_dump would fail on it. Grant it (GRANT SELECT ON <table> TO {conn.user}) or back "
                "up as a role that can read every table.",
                unreadable_tables=list(facts.unreadable_tables),
            )
        pg_dump_version = _check_client_versions(run, pg_dump, pg_restore, facts, commands, where)
        started = clock()
        reused, reason = _reusable(request, request.name, facts, started, lambda: db.row_counts(conn.dbname))
        if reused is not None:
            return BackupResult(
                False,
                f"Reused backup {reused['name']} of {where} ({reason}); nothing dumped.",
                reused,
                commands,
                warnings,
            )
        name = request.name or default_name(request.environment, conn.dbname, started)
        directory = request.format == "directory"
        dump_path = (dest / f"{name}{DIRECTORY_SUFFIX if directory else DUMP_SUFFIX}").absolute()
        partial = dest.absolute() / f"{name}{DIRECTORY_PARTIAL_SUFFIX if directory else PARTIAL_SUFFIX}"
        manifest_path = dest.absolute() / f"{name}{MANIFEST_SUFFIX}"

        if dry_run:
            with db.snapshot(export=False) as snap:
                pass
            manifest = _new_manifest(request, name, dump_path, started, facts, snap, pg_dump_version)
            commands.append(dump_argv(pg_dump, conn, partial, SNAPSHOT_PLACEHOLDER, request.format, request.jobs))
            if pg_restore is not None:
                commands.append(list_argv(pg_restore, partial))
            if request.verify == "restore" and pg_restore is not None:
                commands.append(restore_argv(pg_restore, conn, f"{SCRATCH_PREFIX}<random>", partial, request.jobs))
            return BackupResult(
                True,
                f"Would back up {where} to {dump_path} ({reason}; verify: {request.verify}).",
                manifest | {"manifest_path": str(manifest_path)},
                commands,
                warnings,
            )

        _ensure_private_dir(dest)
        warnings.extend(_sweep_leftovers(db, dest, request.environment, conn.dbname, facts.database_oid))
        _remove_quietly(partial)  # a stale partial from a killed run is never a backup
        if facts.database_oid is not None:
            # Scratch names carry the source's oid, so that a later run can tell its own leftovers.
            token = _scratch_token_for(facts.database_oid, token)
        finished_files: list[Path] = []
        timings: dict[str, float] = {}
        try:
            with pgpass_file(conn) as passfile:
                env = conn.libpq_env(passfile)
                # Created 0600 before pg_dump opens it, so the dump is never readable by others, even briefly.
                if directory:
                    partial.mkdir(mode=0o700)  # pg_dump -Fd accepts an existing empty directory
                else:
                    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                stage = time.perf_counter()
                with db.snapshot(export=True) as snap:
                    _run_checked(
                        run,
                        dump_argv(pg_dump, conn, partial, snap.snapshot, request.format, request.jobs),
                        env,
                        commands,
                        f"Backing up {where} to {partial}",
                        _DUMP_ERROR_MARKERS,
                    )
                manifest = _new_manifest(request, name, dump_path, started, facts, snap, pg_dump_version)
                timings["dump_s"] = time.perf_counter() - stage
                stage = time.perf_counter()
                _restrict_dump(partial)
                digest, size = sha256_path(partial)
                if size == 0:
                    raise BackupError(f"Backing up {where} failed: pg_dump wrote an empty file.", path=str(partial))
                manifest["sha256"], manifest["size_bytes"] = digest, size
                verification = manifest["verification"]
                timings["checksum_s"] = time.perf_counter() - stage
                stage = time.perf_counter()
                if pg_restore is not None:
                    listing = _run_checked(
                        run,
                        list_argv(pg_restore, partial),
                        env,
                        commands,
                        f"Verifying {partial.name} with pg_restore --list",
                        _RESTORE_ERROR_MARKERS,
                    )
                    _check_archive_listing(listing, partial, request.format)
                    verification["list_ok"] = True
                if request.verify == "restore" and pg_restore is not None:
                    _test_restore(
                        request, db, run, pg_restore, partial, env, manifest["row_counts"], commands, token, warnings
                    )
                    verification["restore_ok"] = True
                    verification["restored_row_counts_match"] = True
                timings["verify_s"] = time.perf_counter() - stage
                finished = clock()
                if request.verify != "none":
                    verification["verified_at"] = format_time(finished)
                manifest["verified"] = request.verify == "restore"
                manifest["finished_at"] = format_time(finished)
                _fsync_dump(partial)
                finished_files.append(dump_path)
                if directory and dump_path.is_dir():
                    # os.replace cannot replace a non-empty directory; a same-named file dump is replaced too.
                    shutil.rmtree(dump_path)
                os.replace(partial, dump_path)
                _fsync_dir(dest)
                write_manifest(manifest_path, manifest)
        except OSError as exc:
            _remove_quietly(partial, *finished_files)
            raise BackupError(
                f"Backing up {where} to {dest} failed: {exc.strerror or exc}", path=str(getattr(exc, "filename", ""))
            ) from exc
        except BaseException:
            _remove_quietly(partial, *finished_files)
            raise

    verified_text = {"restore": "verified by a test restore", "list": "listed, not test-restored", "none": "unverified"}
    return BackupResult(
        True,
        f"Backed up {where} to {dump_path} ({size} bytes, {verified_text[request.verify]}).",
        manifest | {"manifest_path": str(manifest_path)},
        commands,
        warnings,
        {key: round(value, 3) for key, value in timings.items()},
    )
