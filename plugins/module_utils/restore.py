# SPDX-License-Identifier: GPL-3.0-or-later
"""Restore a verified backup with no half state: check, safety backup, restore aside, verify, swap.

The order of a restore, and why:

1. **Choose and check the backup before touching anything**: the named backup, or the newest verified one
   of the target's environment and database. Its manifest must be verified; its size and sha256 must match;
   ``pg_restore --list`` must read it; its environment and database must be the target's (a foreign backup
   only with ``allow_foreign``); the local ``pg_restore`` must not be older than the ``pg_dump`` that wrote
   it; the server must not be an older major version than the dump's source (refused: a newer server's
   dump may use syntax an older one rejects, so restore onto a server of that major version or newer).
2. **Production guard**: a target in ``protected_environments`` is only restored when ``confirm`` names the
   target database. Check mode stops here: it reports what it would do (and whether the guard would pass).
3. **Lock**: the shared per-database operation lock (``pg.operation_lock``) is taken on the *live target
   database* and held from here until the swap, so no backup, migration or second restore of that database
   interleaves. The scratch database needs no lock of its own: nothing else knows its random name.
4. **Safety backup** of the live database (``backup.create``, sharing the held lock), unless explicitly
   skipped; its manifest is in the result, so the operator can go back to it.
5. **Restore into a fresh database** ``tracehub_restore_<random>`` (``pg_restore --no-owner``, ``--jobs``,
   ``--role`` for the target environment's application role, ``--no-privileges`` for a foreign backup whose
   roles may not exist here), then **verify it**: every table's exact row count and the Alembic revision
   equal the manifest's; the archive's extensions (and ``required_extensions``) are installed.
6. **Swap**: optional application stop; the live database is closed to new connections
   (``ALLOW_CONNECTIONS false``) while the lock is still held, so nothing can take the lock in the moment
   between; other sessions are terminated; the lock session closes (a database cannot be renamed while
   anyone, the lock holder included, is connected); then, in one transaction on the maintenance database,
   ``live -> <live>_old_<UTC time>`` and ``scratch -> live``. Application start. Old databases beyond
   ``keep_old`` are dropped.

If any step before the swap's commit fails, the live database is untouched (connections re-allowed) and
the scratch database is dropped. Side effects are injected: commands through ``Run``, time through a clock.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ansible_collections.tracehub.deploy.plugins.module_utils import backup
from ansible_collections.tracehub.deploy.plugins.module_utils.errors import BackupError, DeployError, RestoreError
from ansible_collections.tracehub.deploy.plugins.module_utils.pg import (
    TERMINATE_SESSIONS_SQL,
    ConnInfo,
    connect,
    count_differences,
    create_database_like,
    drop_database,
    operation_lock,
    pgpass_file,
    table_row_counts,
)
from ansible_collections.tracehub.deploy.plugins.module_utils.runner import Run

try:
    import psycopg2
    from psycopg2 import sql

    HAS_PSYCOPG2 = True
    _DB_ERRORS: tuple[type[BaseException], ...] = (psycopg2.Error,)
except ImportError:  # pragma: no cover - reported by the modules through missing_required_lib
    HAS_PSYCOPG2 = False
    _DB_ERRORS = ()

LOCK_OPERATION = "restore"
SCRATCH_PREFIX = "tracehub_restore_"
OLD_INFIX = "_old_"
PRIVILEGES_CHOICES = ("auto", "keep", "drop")
DEFAULT_PROTECTED = ("production",)
MARKER_PREFIX = "tracehub.deploy restored "
_PG_IDENT_MAX = 63
_VERSION_TEXT_RE = re.compile(r"^\s*(\d+)(?:\.(\d+))?")
_EXTENSION_RE = re.compile(r"^\d+;\s+\d+\s+\d+\s+EXTENSION\s+-\s+(\S+)", re.MULTILINE)
_SWAP_ATTEMPTS = 10
SAFETY_INFIX = "-pre-restore-"
_SAFETY_RE = re.compile(re.escape(SAFETY_INFIX) + r"[0-9a-f]{6}$")


# --- value objects ---


@dataclass(frozen=True, slots=True)
class RestoreRequest:
    """What to restore, into which database, and how carefully."""

    conn: ConnInfo
    backup_dir: Path
    environment: str
    name: str | None = None
    source_environment: str | None = None
    source_database: str | None = None
    allow_foreign: bool = False
    confirm: str | None = None
    protected_environments: tuple[str, ...] = DEFAULT_PROTECTED
    safety_backup: bool = True
    safety_backup_verify: str = "restore"
    jobs: int = 1
    owner: str | None = None
    privileges: str = "auto"
    required_extensions: tuple[str, ...] = ()
    keep_old: int = 2
    maintenance_db: str = "postgres"
    app_stop_command: tuple[str, ...] = ()
    app_start_command: tuple[str, ...] = ()
    force: bool = False
    pg_bin_dir: Path | None = None
    git_commit: str | None = None


@dataclass(slots=True)
class RestoreResult:
    """Outcome of ``restore``: what was (or would be) restored, the commands run, warnings."""

    changed: bool
    msg: str
    restore: dict[str, Any]
    commands: list[list[str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Module result keys."""
        return {"changed": self.changed, "msg": self.msg, "restore": self.restore, "commands": self.commands}


# --- small pure helpers ---


def version_major(text: str | None) -> int | None:
    """Major version from a version text: '15.4 (Debian ...)' -> 15, '9.6.24' -> 906; None when unreadable."""
    if not text:
        return None
    match = _VERSION_TEXT_RE.match(str(text))
    if match is None:
        return None
    first = int(match.group(1))
    return first if first >= 10 else first * 100 + int(match.group(2) or 0)


def archive_extensions(listing: str) -> list[str]:
    """Extensions an archive creates, from its ``pg_restore --list`` output."""
    return sorted(set(_EXTENSION_RE.findall(listing)))


def old_database_name(database: str, moment: datetime) -> str:
    """``<database>_old_<UTC yyyymmddThhmmss>``, shortened to PostgreSQL's 63-byte identifier limit."""
    suffix = f"{OLD_INFIX}{backup.format_time(moment).replace('-', '').replace(':', '').rstrip('Z').lower()}"
    head = database.encode()[: _PG_IDENT_MAX - len(suffix)].decode(errors="ignore")
    return f"{head}{suffix}"


def marker_text(manifest: Mapping[str, Any], moment: datetime) -> str:
    """The database comment that records which backup a database was restored from."""
    return MARKER_PREFIX + json.dumps(
        {"backup": manifest["name"], "sha256": manifest["sha256"], "restored_at": backup.format_time(moment)},
        sort_keys=True,
    )


def parse_marker(comment: str | None) -> dict[str, Any] | None:
    """Inverse of ``marker_text``; None for any other comment."""
    if not comment or not comment.startswith(MARKER_PREFIX):
        return None
    try:
        data = json.loads(comment[len(MARKER_PREFIX) :])
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def is_safety_backup(manifest: Mapping[str, Any]) -> bool:
    """A backup a restore took of the database it replaced: restored only when named explicitly."""
    return bool(_SAFETY_RE.search(str(manifest.get("name", ""))))


def needs_confirmation(request: RestoreRequest) -> bool:
    """True when the target environment is protected (production by default)."""
    return request.environment in request.protected_environments


def confirmation_ok(request: RestoreRequest) -> bool:
    """The guard: not protected, or ``confirm`` names the target database exactly."""
    return not needs_confirmation(request) or (request.confirm or "") == request.conn.dbname


def _confirmation_state(request: RestoreRequest, confirmed: bool) -> str:
    if not needs_confirmation(request):
        return "not needed"
    if confirmed:
        return "given"
    return "wrong" if request.confirm else "missing"


def is_foreign(manifest: Mapping[str, Any], request: RestoreRequest) -> bool:
    """The backup is of another environment or database than the target."""
    return (manifest["environment"], manifest["database"]) != (request.environment, request.conn.dbname)


def drop_privileges(manifest: Mapping[str, Any], request: RestoreRequest) -> bool:
    """Whether to skip GRANT/REVOKE: ``auto`` drops them for a backup of another environment."""
    if request.privileges == "auto":
        return manifest["environment"] != request.environment
    return request.privileges == "drop"


def restore_argv(
    pg_restore: str, conn: ConnInfo, dbname: str, path: Path, jobs: int, owner: str | None, no_privileges: bool
) -> list[str]:
    """pg_restore into ``dbname`` (password-free): objects owned by ``owner`` (or the login user)."""
    options = [f"--role={owner}"] if owner and owner != conn.user else []
    if no_privileges:
        options.append("--no-privileges")
    return backup.restore_argv(pg_restore, conn, dbname, path, jobs, options)


def backup_summary(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest facts a restore result repeats."""
    keys = ("name", "environment", "database", "created_at", "alembic_revision", "format", "path", "sha256")
    summary = {key: manifest.get(key) for key in keys}
    summary["size_bytes"] = manifest.get("size_bytes")
    summary["pre_migration"] = bool(manifest.get("pre_migration"))
    summary["manifest_path"] = manifest.get("manifest_path")
    return summary


def _token() -> str:
    return secrets.token_hex(6)


# --- choosing and checking the backup ---


def select_backup(request: RestoreRequest) -> dict[str, Any]:
    """The manifest to restore: ``name``, or the newest verified one of the source environment/database."""
    directory = Path(request.backup_dir)
    where = request.conn.describe()
    if request.name:
        path = directory / f"{request.name}{backup.MANIFEST_SUFFIX}"
        if not path.is_file():
            raise RestoreError(
                f"Restoring {where} refused: there is no backup named {request.name} in {directory} "
                f"(no {path.name}). List them with tracehub.deploy.pg_backup_info.",
                path=str(path),
            )
        try:
            manifest = backup.load_manifest(path)
        except BackupError as exc:
            raise RestoreError(f"Restoring {where} refused: {exc.msg}", path=str(path)) from exc
    else:
        source_env = request.source_environment or request.environment
        source_db = request.source_database or request.conn.dbname
        listing = backup.list_backups(directory, source_env, source_db).backups
        # Safety backups hold the state a restore replaced: choosing one by default would undo that restore.
        verified = [m for m in listing if m["verified"] and not is_safety_backup(m)]
        if not verified:
            found = f"{len(listing)} unverified" if listing else "none"
            raise RestoreError(
                f"Restoring {where} refused: no verified backup of {source_env}/{source_db} in {directory} "
                f"(found: {found}). Take one with playbooks/backup.yml or name one explicitly.",
                path=str(directory),
            )
        manifest = verified[0]
    if not manifest["verified"]:
        raise RestoreError(
            f"Restoring {where} from {manifest['name']} refused: the backup is not verified (no successful test "
            "restore). Only verified backups are restored.",
            backup=manifest["name"],
        )
    return manifest


def check_backup(
    manifest: Mapping[str, Any],
    request: RestoreRequest,
    run: Run,
    server_version_num: int | None,
    commands: list[list[str]],
) -> tuple[str, list[str]]:
    """Every check that needs no change: origin, integrity, client and server versions.

    Returns (pg_restore path, extensions the archive creates). Raises ``RestoreError`` naming the cause.
    """
    where = f"{request.conn.describe()} from {manifest['name']}"
    if is_foreign(manifest, request) and not request.allow_foreign:
        raise RestoreError(
            f"Restoring {where} refused: the backup is of {manifest['environment']}/{manifest['database']}, the "
            f"target is {request.environment}/{request.conn.dbname}. Set allow_foreign (restore_allow_foreign) to "
            "restore it here on purpose.",
            backup=manifest["name"],
        )
    try:
        pg_restore = backup.resolve_tool("pg_restore", request.pg_bin_dir)
        version_out = backup._run_checked(
            run, [pg_restore, "--version"], {}, commands, "Reading the pg_restore version", ()
        )
        restore_major, restore_version = backup.major_from_version_output(version_out.stdout)
    except BackupError as exc:
        raise RestoreError(f"Restoring {where} refused: {exc.msg}", **exc.details) from exc
    dump_major = version_major(manifest.get("pg_dump_version"))
    if dump_major is not None and restore_major < dump_major:
        raise RestoreError(
            f"Restoring {where} refused: {pg_restore} is version {restore_version}, older than the pg_dump "
            f"{manifest.get('pg_dump_version')} that wrote the archive, and may not read it. Use the client programs "
            f"of PostgreSQL {manifest.get('pg_dump_version')} or newer (pg_bin_dir).",
            pg_restore_version=restore_version,
            pg_dump_version=manifest.get("pg_dump_version"),
        )
    source_major = version_major(manifest.get("server_version"))
    if server_version_num is not None and source_major is not None:
        target_major = backup.major_from_version_num(server_version_num)
        if target_major < source_major:
            raise RestoreError(
                f"Restoring {where} refused: the target server is PostgreSQL {target_major}, older than the dump's "
                f"source ({manifest.get('server_version')}); a dump of a newer server may use syntax an older one "
                f"rejects. Restore onto a server of version {source_major} or newer.",
                server_version_num=server_version_num,
                source_server_version=manifest.get("server_version"),
            )
    integrity = backup.verify_existing(manifest, list_archive=False)
    if not integrity.ok:
        raise RestoreError(
            f"Restoring {where} refused: the backup is damaged: {integrity.reason}. Nothing was changed.",
            backup=manifest["name"],
            path=str(manifest["path"]),
        )
    try:
        listing = backup._run_checked(
            run,
            backup.list_argv(pg_restore, Path(str(manifest["path"]))),
            {},
            commands,
            f"Reading {manifest['name']} with pg_restore --list",
            backup._RESTORE_ERROR_MARKERS,
        )
        backup._check_archive_listing(listing, Path(str(manifest["path"])), str(manifest.get("format") or "custom"))
    except BackupError as exc:
        raise RestoreError(
            f"Restoring {where} refused: the archive is unreadable: {exc.msg} Nothing was changed.", **exc.details
        ) from exc
    return pg_restore, archive_extensions(listing.stdout)


# --- the server side ---


class PgRestoreTarget:
    """SQL a restore needs, on the server ``conn`` points at; connections per step, closed after."""

    def __init__(self, conn: ConnInfo, maintenance_db: str) -> None:
        self.conn = conn
        self.maintenance = conn.with_db(maintenance_db)
        self.server_version_num = 0

    def _connect(self, suffix: str, target: ConnInfo) -> Any:
        return connect(target.with_application_name(f"tracehub.deploy restore ({suffix})"))

    @contextlib.contextmanager
    def _admin(self, suffix: str, autocommit: bool = True) -> Iterator[Any]:
        connection = self._connect(suffix, self.maintenance)
        connection.autocommit = autocommit
        try:
            yield connection
        finally:
            connection.close()

    def probe(self) -> dict[str, Any]:
        """Server version; whether the target exists; its restore marker."""
        with self._admin("probe") as connection, connection.cursor() as cur:
            cur.execute("SELECT current_setting('server_version_num')::int")
            self.server_version_num = int(cur.fetchone()[0])
            cur.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                (self.conn.dbname,),
            )
            row = cur.fetchone()
        return {"exists": row is not None, "marker": parse_marker(row[0]) if row else None}

    def state(self, dbname: str) -> tuple[str | None, dict[str, int], list[str]]:
        """(Alembic revision, exact row counts, installed extensions) of ``dbname``."""
        connection = self._connect("verify", self.conn.with_db(dbname))
        try:
            connection.set_session(readonly=True)
            revision = backup._alembic_revision(connection)
            counts = table_row_counts(connection)
            with connection.cursor() as cur:
                cur.execute("SELECT extname FROM pg_extension ORDER BY extname")
                extensions = [str(row[0]) for row in cur.fetchall()]
            connection.rollback()
        finally:
            connection.close()
        return revision, counts, extensions

    def create_database(self, name: str, like: str | None, owner: str | None) -> None:
        """An empty database from template0 with ``like``'s encoding and locale."""
        with self._admin("create") as connection:
            create_database_like(
                connection, name, like or self.maintenance.dbname, owner if owner != self.conn.user else None
            )

    def drop_database(self, name: str) -> None:
        """Terminate the sessions this role may end, then ``DROP DATABASE IF EXISTS`` (retried while in use)."""
        with self._admin("cleanup") as connection:
            drop_database(connection, name, attempts=_SWAP_ATTEMPTS)

    def comment(self, name: str, text: str) -> None:
        """``COMMENT ON DATABASE``: the marker of the backup it holds."""
        with self._admin("mark") as connection, connection.cursor() as cur:
            cur.execute(sql.SQL("COMMENT ON DATABASE {} IS %s").format(sql.Identifier(name)), (text,))

    def close_and_terminate(self, lock_connection: Any, dbname: str) -> int:
        """No new connections to ``dbname``; terminate every session but the lock's; returns how many.

        Runs from the maintenance database (a database cannot close itself) while the lock is still held.
        """
        with lock_connection.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            lock_pid = int(cur.fetchone()[0])
        with self._admin("close") as connection, connection.cursor() as cur:
            cur.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(dbname)))
            cur.execute(TERMINATE_SESSIONS_SQL, ([dbname], [lock_pid]))
            return int(cur.fetchone()[0])

    def allow_connections(self, name: str) -> None:
        """Re-open a database closed by ``close_and_terminate``."""
        with self._admin("reopen") as connection, connection.cursor() as cur:
            cur.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(name)))

    def swap(self, live: str | None, old: str | None, scratch: str) -> None:
        """In one transaction: ``live -> old`` (when there is a live one) and ``scratch -> live``.

        Retries while sessions are still going away (a terminated backend exits asynchronously).
        """
        target = self.conn.dbname
        for attempt in range(_SWAP_ATTEMPTS):
            with self._admin("swap", autocommit=False) as connection:
                try:
                    with connection.cursor() as cur:
                        if live is not None and old is not None:
                            cur.execute(TERMINATE_SESSIONS_SQL, ([live, scratch], []))
                            cur.execute(
                                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                                    sql.Identifier(live), sql.Identifier(old)
                                )
                            )
                        cur.execute(
                            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                                sql.Identifier(scratch), sql.Identifier(target)
                            )
                        )
                    connection.commit()
                    return
                except psycopg2.errors.ObjectInUse:
                    connection.rollback()
                    if attempt == _SWAP_ATTEMPTS - 1:
                        raise  # the caller names the sessions that would not go away
                    time.sleep(0.2 * (attempt + 1))

    def unused_name(self, name: str) -> str:
        """``name``, or ``name_2``, ``name_3``... when a database of that name exists already."""
        with self._admin("names") as connection, connection.cursor() as cur:
            candidate, number = name, 1
            while True:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (candidate,))
                if cur.fetchone() is None:
                    return candidate
                number += 1
                candidate = f"{name}_{number}"

    def old_databases(self, database: str) -> list[str]:
        """Databases kept by earlier restores of ``database``, oldest first."""
        prefix = database.encode()[: _PG_IDENT_MAX - len(OLD_INFIX) - 15].decode(errors="ignore") + OLD_INFIX
        with self._admin("list old") as connection, connection.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s) ORDER BY datname", (prefix,))
            return [str(row[0]) for row in cur.fetchall() if re.fullmatch(r"\d{8}t\d{6}(_\d+)?", row[0][len(prefix) :])]


class _HeldLockDatabase(backup.PgDatabase):
    """``backup.PgDatabase`` for the safety backup: the restore already holds the operation lock."""

    def lock(self, operation: str) -> contextlib.AbstractContextManager[Any]:
        """The restore's lock covers the safety backup: a second session would be refused by it."""
        return contextlib.nullcontext()


# --- the restore ---


def restore(
    request: RestoreRequest,
    run: Run,
    dry_run: bool = False,
    clock: Callable[[], datetime] = backup.utc_now,
    token: Callable[[], str] = _token,
    on_stage: Callable[[str], None] | None = None,
    target: PgRestoreTarget | None = None,
) -> RestoreResult:
    """Restore a verified backup into ``request.conn``'s database, or predict it (``dry_run``).

    ``on_stage(name)`` is called at each stage (``checked``, ``safety_backup``, ``restored``, ``verified``,
    ``swapping``); an exception raised from it aborts the restore like a real failure would.
    Raises ``RestoreError``, ``LockHeldError`` or ``ConnectionFailedError``.
    """
    try:
        return _restore(request, run, dry_run, clock, token, on_stage or (lambda _stage: None), target)
    except _DB_ERRORS as exc:
        text = str(exc).strip()
        cause = text.splitlines()[0] if text else type(exc).__name__
        raise RestoreError(f"Restoring {request.conn.describe()} failed: database error: {cause}") from exc


def _validate(request: RestoreRequest) -> None:
    if request.privileges not in PRIVILEGES_CHOICES:
        raise RestoreError(f"Invalid privileges {request.privileges!r}: choose one of {', '.join(PRIVILEGES_CHOICES)}.")
    if request.jobs < 1:
        raise RestoreError(f"Invalid jobs {request.jobs!r}: give 1 or more parallel workers.")
    if request.keep_old < 0:
        raise RestoreError(f"Invalid keep_old {request.keep_old!r}: give 0 or more.")
    if request.safety_backup_verify not in backup.VERIFY_CHOICES:
        raise RestoreError(f"Invalid safety_backup_verify {request.safety_backup_verify!r}.")


def _restore(
    request: RestoreRequest,
    run: Run,
    dry_run: bool,
    clock: Callable[[], datetime],
    token: Callable[[], str],
    on_stage: Callable[[str], None],
    target: PgRestoreTarget | None,
) -> RestoreResult:
    _validate(request)
    conn = request.conn
    live = conn.dbname
    where = f"{request.environment}/{live} ({conn.host}:{conn.port})"
    commands: list[list[str]] = []
    warnings: list[str] = []
    target = target or PgRestoreTarget(conn, request.maintenance_db)
    started = clock()

    manifest = select_backup(request)
    probe = target.probe()
    pg_restore, extensions = check_backup(manifest, request, run, target.server_version_num, commands)
    required = sorted(set(extensions) | set(request.required_extensions))
    no_privileges = drop_privileges(manifest, request)
    confirmed = confirmation_ok(request)
    path = Path(str(manifest["path"]))
    info: dict[str, Any] = {
        "database": live,
        "environment": request.environment,
        "backup": backup_summary(manifest),
        "foreign": is_foreign(manifest, request),
        "confirmation": _confirmation_state(request, confirmed),
        "owner": request.owner or conn.user,
        "privileges": "dropped" if no_privileges else "kept",
        "required_extensions": required,
        "target_existed": probe["exists"],
        "safety_backup": None,
        "scratch_database": None,
        "old_database": None,
        "dropped_old_databases": [],
        "terminated_sessions": 0,
        "restored_row_counts": None,
        "alembic_revision": manifest.get("alembic_revision"),
        "timings": {"checks_s": round((clock() - started).total_seconds(), 3)},
        "check_mode": dry_run,
    }
    on_stage("checked")

    marker = probe["marker"]
    if probe["exists"] and not request.force and marker and marker.get("sha256") == manifest["sha256"]:
        revision, counts, _ext = target.state(live)
        if revision == manifest.get("alembic_revision") and counts == manifest["row_counts"]:
            info["restored_row_counts"] = counts
            return RestoreResult(
                False,
                f"{where} already holds backup {manifest['name']} (restored {marker.get('restored_at')}; revision "
                "and row counts unchanged); nothing restored. Set force (restore_force) to restore it again.",
                info,
                commands,
                warnings,
            )

    if not confirmed and not dry_run:
        given = f" confirm={request.confirm!r} does not name it." if request.confirm else ""
        raise RestoreError(
            f"Restoring {where} from {manifest['name']} refused: {request.environment} is a protected environment."
            f"{given} Confirm by naming the target database: confirm={live} (playbooks: -e restore_confirm={live}).",
            backup=manifest["name"],
            confirmation=_confirmation_state(request, confirmed),
        )

    # Unique even within one second: a safety backup must never replace the backup being restored.
    safety_name = f"{backup.default_name(request.environment, live, started)}{SAFETY_INFIX}{token()[:6]}"
    old = old_database_name(live, started) if probe["exists"] else None
    if dry_run:
        scratch = f"{SCRATCH_PREFIX}<random>"
        commands.append(restore_argv(pg_restore, conn, scratch, path, request.jobs, request.owner, no_privileges))
        info |= {"scratch_database": scratch, "old_database": old}
        if request.safety_backup and probe["exists"]:
            info["safety_backup"] = {"name": safety_name, "planned": True}
        steps = [
            f"safety backup {safety_name}" if request.safety_backup and probe["exists"] else "no safety backup",
            f"restore into {scratch}",
            "verify row counts, revision and extensions",
            f"swap it in as {live}" + (f", keeping the current one as {old}" if old else ""),
        ]
        missing = (
            f"confirm={request.confirm!r} does not name {live}" if request.confirm else f"confirm={live} is missing"
        )
        guard = "" if confirmed else f" It would be REFUSED: {missing} (-e restore_confirm={live})."
        return RestoreResult(
            True,
            f"Would restore {where} from {manifest['name']} ({manifest['created_at']}, revision "
            f"{manifest.get('alembic_revision')}): {'; '.join(steps)}.{guard}",
            info,
            commands,
            warnings,
        )

    with contextlib.ExitStack() as stack:
        lock_connection = stack.enter_context(operation_lock(conn, LOCK_OPERATION)) if probe["exists"] else None
        if request.safety_backup and probe["exists"]:
            moment = clock()
            safety = backup.create(
                backup.BackupRequest(
                    conn=conn,
                    dest=Path(request.backup_dir),
                    environment=request.environment,
                    name=safety_name,
                    verify=request.safety_backup_verify,
                    force=True,
                    git_commit=request.git_commit,
                    pg_bin_dir=request.pg_bin_dir,
                ),
                run=run,
                db=_HeldLockDatabase(conn.with_application_name("tracehub.deploy restore (safety backup)")),
                clock=clock,
            )
            commands.extend(safety.commands)
            warnings.extend(safety.warnings)
            info["safety_backup"] = backup_summary(safety.backup)
            info["timings"]["safety_backup_s"] = round((clock() - moment).total_seconds(), 3)
            on_stage("safety_backup")

        scratch = f"{SCRATCH_PREFIX}{token()}"
        info["scratch_database"] = scratch
        swapped = False
        try:
            moment = clock()
            try:
                target.create_database(scratch, live if probe["exists"] else None, request.owner)
            except _DB_ERRORS as exc:
                raise RestoreError(
                    f"Restoring {where}: creating the database {scratch} failed: {_first_line(exc)}. The restore "
                    f"needs CREATEDB for {conn.user!r}.",
                    scratch_database=scratch,
                ) from exc
            try:
                with pgpass_file(conn) as passfile:
                    backup._run_checked(
                        run,
                        restore_argv(pg_restore, conn, scratch, path, request.jobs, request.owner, no_privileges),
                        conn.libpq_env(passfile),
                        commands,
                        f"Restoring {manifest['name']} into {scratch}",
                        backup._RESTORE_ERROR_MARKERS,
                    )
            except BackupError as exc:
                raise RestoreError(
                    f"Restoring {where}: {exc.msg}. The live database is untouched.", **exc.details
                ) from exc
            info["timings"]["restore_s"] = round((clock() - moment).total_seconds(), 3)
            on_stage("restored")

            moment = clock()
            _verify_restored(target, scratch, manifest, required, where, info)
            target.comment(scratch, marker_text(manifest, clock()))
            info["timings"]["verify_s"] = round((clock() - moment).total_seconds(), 3)
            on_stage("verified")

            moment = clock()
            app_stopped = False
            try:
                if request.app_stop_command:
                    _run_app(run, request.app_stop_command, commands, where, "stopping the application")
                    app_stopped = True
                on_stage("swapping")
                if old is not None:
                    old = target.unused_name(old_database_name(live, clock()))
                if lock_connection is not None:
                    info["terminated_sessions"] = target.close_and_terminate(lock_connection, live)
                    # A database cannot be renamed while anyone is connected, the lock holder included. It is
                    # closed to new connections now, so nobody can take the lock before the rename.
                    stack.close()
                try:
                    target.swap(live if probe["exists"] else None, old, scratch)
                    swapped = True
                except _DB_ERRORS as exc:
                    raise RestoreError(
                        f"Restoring {where}: swapping {scratch} in failed: {_first_line(exc)}. The live database "
                        "is untouched. If sessions of other roles stay connected, stop the application "
                        "(app_stop_command) or grant pg_signal_backend to the restoring role.",
                        scratch_database=scratch,
                    ) from exc
                finally:
                    if probe["exists"]:
                        # The old (or, after a failure, still live) database accepts connections again.
                        with contextlib.suppress(*_DB_ERRORS, DeployError):
                            target.allow_connections(old if swapped else live)
            finally:
                if app_stopped or (request.app_start_command and not request.app_stop_command):
                    try:
                        _run_app(run, request.app_start_command, commands, where, "starting the application")
                    except RestoreError as exc:
                        warnings.append(exc.msg)
            info["timings"]["swap_s"] = round((clock() - moment).total_seconds(), 3)
        finally:
            if not swapped:
                with contextlib.suppress(*_DB_ERRORS, DeployError):
                    target.drop_database(scratch)

    info["old_database"] = old
    info["dropped_old_databases"] = _prune_old(target, live, request.keep_old, warnings)
    info["timings"]["total_s"] = round((clock() - started).total_seconds(), 3)
    total_rows = sum(info["restored_row_counts"].values())
    kept = f" The previous database is kept as {old}." if old and old not in info["dropped_old_databases"] else ""
    safety_text = f" Safety backup: {info['safety_backup']['name']}." if info["safety_backup"] else ""
    return RestoreResult(
        True,
        f"Restored {where} from {manifest['name']} ({manifest['created_at']}, revision "
        f"{manifest.get('alembic_revision')}, {len(info['restored_row_counts'])} tables, {total_rows} rows).{kept}"
        f"{safety_text}",
        info,
        commands,
        warnings,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _verify_restored(
    target: PgRestoreTarget,
    scratch: str,
    manifest: Mapping[str, Any],
    required: Sequence[str],
    where: str,
    info: dict[str, Any],
) -> None:
    revision, counts, installed = target.state(scratch)
    info["restored_row_counts"] = counts
    differences = count_differences(manifest["row_counts"], counts)
    if differences:
        raise RestoreError(
            f"Restoring {where}: the restored copy does not match backup {manifest['name']}: row counts differ in "
            f"{', '.join(differences)}. The live database is untouched.",
            row_count_differences=differences,
        )
    if revision != manifest.get("alembic_revision"):
        raise RestoreError(
            f"Restoring {where}: the restored copy is at Alembic revision {revision}, the manifest says "
            f"{manifest.get('alembic_revision')}. The live database is untouched.",
            restored_revision=revision,
        )
    missing = [name for name in required if name not in installed]
    if missing:
        raise RestoreError(
            f"Restoring {where}: required extensions missing in the restored copy: {', '.join(missing)}. Install "
            "them on the server (or fix required_extensions). The live database is untouched.",
            missing_extensions=missing,
        )


def _run_app(run: Run, argv: Sequence[str], commands: list[list[str]], where: str, what: str) -> None:
    commands.append(list(argv))
    try:
        result = run(list(argv), {})
    except OSError as exc:
        raise RestoreError(f"Restoring {where}: {what} failed: cannot run {argv[0]}: {exc.strerror or exc}") from exc
    if result.rc != 0:
        last = backup._tail(result.stderr, 1)
        raise RestoreError(
            f"Restoring {where}: {what} failed (exit code {result.rc}{': ' + last if last else ''}).",
            rc=result.rc,
            command=list(argv),
        )


def _prune_old(target: PgRestoreTarget, live: str, keep: int, warnings: list[str]) -> list[str]:
    """Drop the oldest ``<live>_old_*`` databases beyond ``keep``."""
    try:
        olds = target.old_databases(live)
    except (*_DB_ERRORS, DeployError) as exc:
        warnings.append(f"Listing the old copies of {live} failed: {_first_line(exc)}")
        return []
    dropped = []
    for name in olds[: max(0, len(olds) - keep)]:
        try:
            target.drop_database(name)
            dropped.append(name)
        except (*_DB_ERRORS, DeployError) as exc:
            warnings.append(f"Dropping the old copy {name} failed: {_first_line(exc)}")
    return dropped
