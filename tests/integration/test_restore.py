"""pg_restore library against a real PostgreSQL: real dumps, real restores, real swaps."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from ansible_collections.tracehub.deploy.plugins.module_utils import alembic_ops
from ansible_collections.tracehub.deploy.plugins.module_utils.backup import BackupRequest, create, list_backups
from ansible_collections.tracehub.deploy.plugins.module_utils.errors import LockHeldError, RestoreError
from ansible_collections.tracehub.deploy.plugins.module_utils.pg import ConnInfo, connect, operation_lock
from ansible_collections.tracehub.deploy.plugins.module_utils.restore import (
    OLD_INFIX,
    SCRATCH_PREFIX,
    RestoreRequest,
    restore,
)
from ansible_collections.tracehub.deploy.plugins.module_utils.runner import subprocess_runner
from tools.localpg import find_bindir
from tools.seed import seed

PG_BIN_DIR = find_bindir()
ALEMBIC_DIR = str(Path(__file__).resolve().parents[2] / "alembic")


def fingerprint(conn: ConnInfo) -> dict[str, tuple[int, str]]:
    """(row count, md5 of every row in order) of every public table: exact equality of contents."""
    connection = connect(conn)
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
            tables = [row[0] for row in cur.fetchall()]
            result = {}
            for table in tables:
                statement = "SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {} t"
                cur.execute(sql.SQL(statement).format(sql.Identifier(table)))
                count, digest = cur.fetchone()
                result[table] = (int(count), digest)
            return result
    finally:
        connection.close()


def databases(admin_conn: ConnInfo) -> set[str]:
    connection = connect(admin_conn)
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database")
            return {row[0] for row in cur.fetchall()}
    finally:
        connection.close()


def execute(conn: ConnInfo, statement: str) -> None:
    connection = connect(conn)
    try:
        with connection.cursor() as cur:
            cur.execute(statement)
        connection.commit()
    finally:
        connection.close()


@pytest.fixture
def live_db(fresh_db, admin_conn):
    """A seeded database at 002; old copies and scratch databases left by restores are dropped after."""
    seed(fresh_db)
    yield fresh_db
    connection = connect(admin_conn)
    connection.autocommit = True
    with connection.cursor() as cur:
        cur.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s) OR starts_with(datname, %s)",
            (fresh_db.dbname + OLD_INFIX, SCRATCH_PREFIX),
        )
        for (name,) in cur.fetchall():
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    connection.close()


def take_backup(conn: ConnInfo, dest: Path, environment: str = "staging", **overrides) -> dict:
    request = BackupRequest(conn=conn, dest=dest, environment=environment, pg_bin_dir=PG_BIN_DIR, force=True)
    return create(replace(request, **overrides), run=subprocess_runner).backup


def request_for(conn: ConnInfo, dest: Path, **overrides) -> RestoreRequest:
    base = RestoreRequest(conn=conn, backup_dir=dest, environment="staging", pg_bin_dir=PG_BIN_DIR, keep_old=1)
    return replace(base, **overrides)


def damage(conn: ConnInfo) -> None:
    execute(conn, "DELETE FROM audit_logs; UPDATE shipments SET vessel_name = 'changed'; DROP TABLE parties CASCADE")


@pytest.mark.parametrize(("fmt", "jobs"), [("custom", 1), ("custom", 2), ("directory", 2)])
def test_restore_round_trip_every_table_equal(live_db, tmp_path, admin_conn, fmt, jobs):
    before = fingerprint(live_db)
    manifest = take_backup(live_db, tmp_path, format=fmt, jobs=jobs)
    damage(live_db)
    assert fingerprint(live_db) != before

    result = restore(request_for(live_db, tmp_path, jobs=jobs), run=subprocess_runner)

    assert result.changed is True
    assert fingerprint(live_db) == before
    info = result.restore
    assert info["backup"]["name"] == manifest["name"]
    assert info["backup"]["format"] == fmt
    assert info["old_database"] in databases(admin_conn)
    assert "-pre-restore-" in info["safety_backup"]["name"]
    assert not [name for name in databases(admin_conn) if name.startswith(SCRATCH_PREFIX)]
    assert any(f"--jobs={jobs}" in argv for argv in result.commands) == (jobs > 1)
    timings = info["timings"]
    stages = ("checks_s", "safety_backup_s", "restore_s", "verify_s", "swap_s")
    assert set(timings) == {*stages, "total_s"}
    # Each stage is timed on its own: together they cannot exceed the whole (rounding to 1 ms each aside).
    assert sum(timings[stage] for stage in stages) <= timings["total_s"] + 0.005


def test_restore_safety_backup_holds_the_state_before_the_restore(live_db, tmp_path):
    take_backup(live_db, tmp_path)
    damage(live_db)
    damaged = fingerprint(live_db)

    result = restore(request_for(live_db, tmp_path), run=subprocess_runner)
    safety = result.restore["safety_backup"]["name"]
    again = restore(request_for(live_db, tmp_path, name=safety, force=True), run=subprocess_runner)

    assert again.changed is True
    assert fingerprint(live_db) == damaged


def test_restore_second_run_unchanged_until_forced(live_db, tmp_path):
    take_backup(live_db, tmp_path)
    damage(live_db)
    restore(request_for(live_db, tmp_path), run=subprocess_runner)
    backups_before = len(list_backups(tmp_path).backups)

    second = restore(request_for(live_db, tmp_path), run=subprocess_runner)
    forced = restore(request_for(live_db, tmp_path, force=True), run=subprocess_runner)

    assert second.changed is False
    assert "already holds" in second.msg and "Set force (restore_force)" in second.msg
    assert forced.changed is True
    assert len(list_backups(tmp_path).backups) == backups_before + 1  # only the forced run's safety backup


def test_restore_check_mode_verifies_and_changes_nothing(live_db, tmp_path, admin_conn):
    take_backup(live_db, tmp_path)
    damage(live_db)
    before, dbs, files = fingerprint(live_db), databases(admin_conn), sorted(tmp_path.iterdir())

    result = restore(request_for(live_db, tmp_path), run=subprocess_runner, dry_run=True)

    assert result.changed is True
    assert result.msg.startswith("Would restore")
    assert (fingerprint(live_db), databases(admin_conn), sorted(tmp_path.iterdir())) == (before, dbs, files)
    assert any("--list" in argv for argv in result.commands)


def _assert_refused_untouched(live_db, tmp_path, admin_conn, request, match):
    before, dbs, files = fingerprint(live_db), databases(admin_conn), sorted(tmp_path.iterdir())
    with pytest.raises(RestoreError, match=match):
        restore(request, run=subprocess_runner)
    assert (fingerprint(live_db), databases(admin_conn), sorted(tmp_path.iterdir())) == (before, dbs, files)


def test_restore_corrupted_backup_refused_nothing_changed(live_db, tmp_path, admin_conn):
    manifest = take_backup(live_db, tmp_path)
    dump = Path(manifest["path"])
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    damage(live_db)
    _assert_refused_untouched(live_db, tmp_path, admin_conn, request_for(live_db, tmp_path), "checksum mismatch")


def test_restore_truncated_backup_refused_nothing_changed(live_db, tmp_path, admin_conn):
    manifest = take_backup(live_db, tmp_path)
    dump = Path(manifest["path"])
    dump.write_bytes(dump.read_bytes()[: dump.stat().st_size // 2])
    _assert_refused_untouched(live_db, tmp_path, admin_conn, request_for(live_db, tmp_path), "size mismatch")


def test_restore_foreign_database_backup_refused_unless_allowed(live_db, tmp_path, admin_conn):
    manifest = take_backup(live_db, tmp_path)
    other = replace(live_db, dbname=live_db.dbname + "_other")
    request = request_for(other, tmp_path, name=manifest["name"])
    with pytest.raises(RestoreError, match="backup is of staging/"):
        restore(request, run=subprocess_runner)
    assert other.dbname not in databases(admin_conn)


def test_restore_missing_backup_refused_nothing_changed(live_db, tmp_path, admin_conn):
    take_backup(live_db, tmp_path)
    request = request_for(live_db, tmp_path, name="staging-nothing-20200101T000000Z")
    _assert_refused_untouched(live_db, tmp_path, admin_conn, request, "no backup named")


def test_restore_no_verified_backup_refused(live_db, tmp_path, admin_conn):
    take_backup(live_db, tmp_path, verify="list")
    _assert_refused_untouched(live_db, tmp_path, admin_conn, request_for(live_db, tmp_path), "no verified backup")


def test_restore_production_without_confirmation_refused_with_it_restored(live_db, tmp_path, admin_conn):
    before = fingerprint(live_db)
    take_backup(live_db, tmp_path, environment="production")
    damage(live_db)
    request = request_for(live_db, tmp_path, environment="production")
    _assert_refused_untouched(live_db, tmp_path, admin_conn, request, f"restore_confirm={live_db.dbname}")
    wrong = replace(request, confirm="tracehub")
    _assert_refused_untouched(live_db, tmp_path, admin_conn, wrong, "confirm='tracehub' does not name it")

    predicted = restore(request, run=subprocess_runner, dry_run=True)
    predicted_wrong = restore(wrong, run=subprocess_runner, dry_run=True)
    result = restore(replace(request, confirm=live_db.dbname), run=subprocess_runner)

    assert "REFUSED" in predicted.msg and predicted.restore["confirmation"] == "missing"
    assert "REFUSED: confirm='tracehub' does not name" in predicted_wrong.msg
    assert predicted_wrong.restore["confirmation"] == "wrong"
    assert result.restore["confirmation"] == "given"
    assert fingerprint(live_db) == before


def test_restore_while_sessions_connected_terminates_them(live_db, tmp_path):
    before = fingerprint(live_db)
    take_backup(live_db, tmp_path)
    damage(live_db)
    idle = connect(live_db)
    busy = connect(live_db)
    errors: list[BaseException] = []

    def hold_a_transaction() -> None:
        try:
            with busy.cursor() as cur:
                cur.execute("BEGIN; SELECT count(*) FROM shipments; SELECT pg_sleep(30)")
        except psycopg2.Error as exc:
            errors.append(exc)

    worker = threading.Thread(target=hold_a_transaction)
    worker.start()
    time.sleep(0.3)
    result = restore(request_for(live_db, tmp_path), run=subprocess_runner)
    worker.join(timeout=10)

    assert result.restore["terminated_sessions"] >= 2
    assert errors and not worker.is_alive()
    with pytest.raises(psycopg2.Error):
        with idle.cursor() as cur:
            cur.execute("SELECT 1")
    assert fingerprint(live_db) == before


@pytest.mark.parametrize("stage", ["restored", "verified", "swapping"])
def test_restore_failure_after_scratch_restore_leaves_live_untouched(live_db, tmp_path, admin_conn, stage):
    take_backup(live_db, tmp_path)
    damage(live_db)
    damaged, dbs = fingerprint(live_db), databases(admin_conn)

    def fail_at(name: str) -> None:
        if name == stage:
            raise RestoreError(f"injected failure at {name}")

    with pytest.raises(RestoreError, match="injected"):
        restore(request_for(live_db, tmp_path), run=subprocess_runner, on_stage=fail_at)

    assert fingerprint(live_db) == damaged
    assert databases(admin_conn) == dbs
    connection = connect(live_db)  # connections are allowed again
    connection.close()


def test_restore_missing_required_extension_fails_after_restore_live_untouched(live_db, tmp_path, admin_conn):
    take_backup(live_db, tmp_path)
    damage(live_db)
    damaged, dbs = fingerprint(live_db), databases(admin_conn)
    request = request_for(live_db, tmp_path, required_extensions=("no_such_extension",))
    with pytest.raises(RestoreError, match="no_such_extension"):
        restore(request, run=subprocess_runner)
    assert (fingerprint(live_db), databases(admin_conn)) == (damaged, dbs)


def test_restore_lock_held_by_migration_refused(live_db, tmp_path, admin_conn):
    take_backup(live_db, tmp_path)
    with operation_lock(live_db, "migrate"):
        _assert_refused_untouched_lock(live_db, tmp_path, admin_conn)


def _assert_refused_untouched_lock(live_db, tmp_path, admin_conn):
    before, dbs = fingerprint(live_db), databases(admin_conn)
    with pytest.raises(LockHeldError, match=r"tracehub\.deploy migrate"):
        restore(request_for(live_db, tmp_path), run=subprocess_runner)
    assert (fingerprint(live_db), databases(admin_conn)) == (before, dbs)


def test_restore_keeps_only_keep_old_previous_databases(live_db, tmp_path, admin_conn):
    take_backup(live_db, tmp_path)
    olds = []
    for _attempt in range(3):
        result = restore(request_for(live_db, tmp_path, keep_old=1, force=True), run=subprocess_runner)
        olds.append(result.restore["old_database"])
        time.sleep(1.1)  # old copies are named to the second
    left = {name for name in databases(admin_conn) if name.startswith(live_db.dbname + OLD_INFIX)}
    assert left == {olds[-1]}


def test_restore_production_backup_into_staging_owned_by_app_role_then_migrates(
    pg_server, admin_conn, fresh_db, tmp_path
):
    # Production: its own owner role and a reader role that staging does not have.
    prod_owner, prod_reader, prod_db = "prod_owner_t", "prod_reader_t", fresh_db.dbname + "_prod"
    admin = connect(admin_conn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD 'p'").format(sql.Identifier(prod_owner)))
        cur.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(prod_reader)))
        cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(prod_db), sql.Identifier(prod_owner)))
    production = replace(fresh_db, user=prod_owner, password="p", dbname=prod_db)
    try:
        seed(production)
        execute(production, f"GRANT SELECT ON shipments TO {prod_reader}")
        manifest = take_backup(production, tmp_path, environment="production")
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(prod_db)))
            cur.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(prod_reader)))
            cur.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(prod_owner)))

        result = restore(
            request_for(fresh_db, tmp_path, name=manifest["name"], allow_foreign=True, safety_backup=False),
            run=subprocess_runner,
        )
        migrated = alembic_ops.migrate(fresh_db, ALEMBIC_DIR, "head")
    finally:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(prod_db)))
            cur.execute(
                "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (fresh_db.dbname + OLD_INFIX,)
            )
            for (name,) in cur.fetchall():
                cur.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            for role in (prod_reader, prod_owner):
                cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.close()

    assert result.restore["foreign"] is True and result.restore["privileges"] == "dropped"
    assert migrated.to_revision == "006"
    connection = connect(fresh_db)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public'"
        )
        owners = {row[0] for row in cur.fetchall()}
        cur.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()")
        db_owner = cur.fetchone()[0]
    connection.close()
    assert owners == {fresh_db.user}
    assert db_owner == fresh_db.user
