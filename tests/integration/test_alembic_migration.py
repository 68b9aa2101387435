"""alembic_ops and the alembic_migration modules against a real PostgreSQL, with real Alembic revisions."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import threading
from dataclasses import replace
from pathlib import Path

import psycopg2
import pytest

from ansible_collections.tracehub.deploy.plugins.module_utils import alembic_ops, backup, restore
from ansible_collections.tracehub.deploy.plugins.module_utils.errors import (
    ConnectionFailedError,
    LockHeldError,
    MigrationError,
)
from ansible_collections.tracehub.deploy.plugins.module_utils.pg import connect, operation_lock
from ansible_collections.tracehub.deploy.plugins.module_utils.runner import subprocess_runner
from tools.localpg import find_bindir

PROJECT_DIR = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
LINEAR = str(FIXTURES / "alembic_linear")
FAILING = str(FIXTURES / "alembic_failing")
CONCURRENTLY = str(FIXTURES / "alembic_concurrently")
BRANCHED = str(FIXTURES / "alembic_branched")
PROJECT_ALEMBIC = PROJECT_DIR / "alembic"


def _tables(conn) -> set[str]:
    connection = connect(conn)
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            return {row[0] for row in cur.fetchall()}
    finally:
        connection.close()


def _stamp(conn, revision: str) -> None:
    connection = connect(conn)
    with connection.cursor() as cur:
        cur.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
        cur.execute("INSERT INTO alembic_version VALUES (%s)", (revision,))
    connection.commit()
    connection.close()


# --- library: happy paths -------------------------------------------------------------------------


def test_migrate_fresh_database_to_head_applies_each_revision_with_durations(fresh_db):
    events = []
    result = alembic_ops.migrate(fresh_db, LINEAR, "head", on_progress=lambda *e: events.append(e))
    assert result.changed is True
    assert (result.from_revision, result.to_revision, result.direction) == (None, "003", "upgrade")
    assert [a.revision for a in result.applied] == ["001", "002", "003"]
    assert result.applied[0].message == "Create the widgets table."
    assert all(a.duration_s >= 0 for a in result.applied)
    assert result.applied[2].duration_s >= 0.2  # revision 003 sleeps 0.2 s
    assert [e[0] for e in events] == ["001", "002", "003"]
    assert alembic_ops.current(fresh_db, LINEAR) == ("003",)
    assert {"widgets", "gadgets", "alembic_version"} <= _tables(fresh_db)


def test_migrate_repeat_at_head_reports_unchanged(fresh_db):
    alembic_ops.migrate(fresh_db, LINEAR, "head")
    again = alembic_ops.migrate(fresh_db, LINEAR, "head")
    assert again.changed is False
    assert again.direction == "none"
    assert again.applied == ()


def test_migrate_step_by_step_to_explicit_and_relative_targets(fresh_db):
    assert alembic_ops.migrate(fresh_db, LINEAR, "001").to_revision == "001"
    assert alembic_ops.migrate(fresh_db, LINEAR, "+1").to_revision == "002"
    result = alembic_ops.migrate(fresh_db, LINEAR, "-1", allow_downgrade=True)
    assert (result.direction, result.to_revision) == ("downgrade", "001")
    assert [a.revision for a in result.applied] == ["002"]


def test_migrate_downgrade_to_base_and_back_to_head(fresh_db):
    alembic_ops.migrate(fresh_db, LINEAR, "head")
    down = alembic_ops.migrate(fresh_db, LINEAR, "base", allow_downgrade=True)
    assert down.to_revision is None
    assert [a.revision for a in down.applied] == ["003", "002", "001"]
    assert _tables(fresh_db) == {"alembic_version"}
    up = alembic_ops.migrate(fresh_db, LINEAR, "head")
    assert up.to_revision == "003"


def test_info_reports_pending_and_head(fresh_db):
    alembic_ops.migrate(fresh_db, LINEAR, "001")
    state = alembic_ops.info(fresh_db, LINEAR)
    assert state.current == ("001",)
    assert state.heads == ("003",)
    assert [p.revision for p in state.pending] == ["002", "003"]
    assert state.is_at_head is False
    alembic_ops.migrate(fresh_db, LINEAR)
    assert alembic_ops.info(fresh_db, LINEAR).is_at_head is True


def test_plan_lists_pending_with_messages(fresh_db):
    planned = alembic_ops.plan(fresh_db, LINEAR, "head")
    assert planned.direction == "upgrade"
    assert [(s.revision, s.down_revision) for s in planned.steps] == [("001", None), ("002", "001"), ("003", "002")]
    assert planned.steps[1].message == "Add widgets.colour."


# --- dry run --------------------------------------------------------------------------------------


def test_migrate_dry_run_on_empty_database_returns_sql_and_creates_nothing(fresh_db):
    result = alembic_ops.migrate(fresh_db, LINEAR, "head", dry_run=True)
    assert result.changed is True
    assert result.applied == ()
    assert [s["revision"] for s in result.sql] == ["001", "002", "003"]
    assert "CREATE TABLE widgets" in result.sql[0]["sql"]
    assert "ALTER TABLE widgets ADD COLUMN colour" in result.sql[1]["sql"]
    assert _tables(fresh_db) == set()  # not even alembic_version


def test_migrate_dry_run_midway_leaves_version_unchanged(fresh_db):
    alembic_ops.migrate(fresh_db, LINEAR, "001")
    before = _tables(fresh_db)
    result = alembic_ops.migrate(fresh_db, LINEAR, "head", dry_run=True)
    assert [s["revision"] for s in result.sql] == ["002", "003"]
    assert "UPDATE alembic_version SET version_num='002'" in result.sql[0]["sql"]
    assert alembic_ops.current(fresh_db) == ("001",)
    assert _tables(fresh_db) == before


def test_migrate_dry_run_downgrade_renders_downgrade_sql(fresh_db):
    alembic_ops.migrate(fresh_db, LINEAR, "head")
    result = alembic_ops.migrate(fresh_db, LINEAR, "001", allow_downgrade=True, dry_run=True)
    assert result.direction == "downgrade"
    assert "DROP TABLE gadgets" in result.sql[0]["sql"]
    assert alembic_ops.current(fresh_db) == ("003",)


def test_migrate_dry_run_executes_no_write_on_the_server(fresh_db, admin_conn):
    """No DDL reaches the server, not even inside a rolled-back transaction.

    An event trigger makes any DDL statement raise: a dry run that tried one would fail, whatever it did
    with the transaction afterwards. (An earlier WAL-volume threshold flickered under load.)
    """
    alembic_ops.migrate(fresh_db, LINEAR, "001")
    admin = connect(admin_conn.with_db(fresh_db.dbname))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(
            "CREATE FUNCTION forbid_ddl() RETURNS event_trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'DDL attempted during a dry run: %', tg_tag; END $$"
        )
        cur.execute("CREATE EVENT TRIGGER forbid_ddl ON ddl_command_start EXECUTE FUNCTION forbid_ddl()")
    try:
        result = alembic_ops.migrate(fresh_db, LINEAR, "head", dry_run=True)
        assert result.sql, "the dry run renders the pending SQL"
        with admin.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_class WHERE relname IN ('gadgets')")
            assert cur.fetchone()[0] == 0
            cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'widgets'")
            assert "colour" not in {r[0] for r in cur.fetchall()}
    finally:
        with admin.cursor() as cur:
            cur.execute("DROP EVENT TRIGGER forbid_ddl")
        admin.close()


# --- failures -------------------------------------------------------------------------------------


def test_migrate_unreachable_server_names_host_and_port(fresh_db):
    from tools.localpg import free_port

    dead = replace(fresh_db, port=free_port(), connect_timeout=2)
    with pytest.raises(ConnectionFailedError, match=r"no PostgreSQL server answered at 127\.0\.0\.1"):
        alembic_ops.migrate(dead, LINEAR)


def test_migrate_bad_credentials_names_user_not_password(fresh_db):
    wrong = replace(fresh_db, password="not-the-password%x")
    with pytest.raises(ConnectionFailedError, match="rejected the credentials of user 'tracehub_app'") as caught:
        alembic_ops.migrate(wrong, LINEAR)
    assert "not-the-password" not in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_migrate_unknown_target_lists_known_heads(fresh_db):
    with pytest.raises(MigrationError, match=r"Target revision 'zzz' is not among the scripts") as caught:
        alembic_ops.migrate(fresh_db, LINEAR, "zzz")
    assert "heads: 003" in caught.value.msg
    assert _tables(fresh_db) == set()


def test_migrate_database_stamped_with_unknown_revision_names_it(fresh_db):
    _stamp(fresh_db, "9f9f9f9f")
    with pytest.raises(MigrationError, match="is at Alembic revision '9f9f9f9f'") as caught:
        alembic_ops.migrate(fresh_db, LINEAR)
    assert "alembic_linear" in caught.value.msg
    assert "newer application version" in caught.value.msg
    assert "wrong directory" in caught.value.msg
    assert caught.value.details["revision"] == "9f9f9f9f"


def test_info_database_stamped_with_unknown_revision_fails_clearly(fresh_db):
    _stamp(fresh_db, "9f9f9f9f")
    with pytest.raises(MigrationError, match="9f9f9f9f"):
        alembic_ops.info(fresh_db, LINEAR)


def test_migrate_multiple_heads_names_them_and_suggests_merge(fresh_db):
    with pytest.raises(MigrationError, match=r"several heads \(002a, 002b\)") as caught:
        alembic_ops.migrate(fresh_db, BRANCHED, "head")
    assert "alembic merge" in caught.value.msg
    assert _tables(fresh_db) == set()


def test_migrate_concurrent_index_in_transaction_names_revision_and_fix(fresh_db):
    with pytest.raises(MigrationError) as caught:
        alembic_ops.migrate(fresh_db, CONCURRENTLY, "head")
    msg = caught.value.msg
    assert "revision 002" in msg
    assert "CREATE INDEX CONCURRENTLY cannot run inside a transaction block" in msg
    assert "op.get_context().autocommit_block()" in msg
    assert "left at the previous revision 001" in msg
    assert alembic_ops.current(fresh_db) == ("001",)


def test_migrate_failing_revision_names_it_and_leaves_previous_revision(fresh_db):
    with pytest.raises(MigrationError) as caught:
        alembic_ops.migrate(fresh_db, FAILING, "head")
    msg = caught.value.msg
    assert "revision 002 (Create gizmos, then fail on a division by zero.) failed: division by zero" in msg
    assert "left at the previous revision 001" in msg
    assert "Traceback" not in msg
    assert caught.value.details["failed_revision"] == "002"
    assert caught.value.details["left_at"] == ["001"]
    assert caught.value.details["changed"] is True
    assert alembic_ops.current(fresh_db) == ("001",)
    assert "gizmos" not in _tables(fresh_db)  # the failed revision's DDL was rolled back
    assert "widgets" in _tables(fresh_db)


def test_migrate_downgrade_without_flag_is_refused_naming_revisions(fresh_db):
    alembic_ops.migrate(fresh_db, LINEAR, "head")
    with pytest.raises(MigrationError, match="Refusing to downgrade") as caught:
        alembic_ops.migrate(fresh_db, LINEAR, "001")
    assert "003 (Create the gadgets table.)" in caught.value.msg
    assert "002 (Add widgets.colour.)" in caught.value.msg
    assert "allow_downgrade" in caught.value.msg
    assert alembic_ops.current(fresh_db) == ("003",)
    assert "gadgets" in _tables(fresh_db)


def test_migrate_while_another_run_holds_the_lock_names_it(fresh_db):
    with operation_lock(fresh_db, "back up"), pytest.raises(LockHeldError, match=r"tracehub\.deploy back up"):
        alembic_ops.migrate(fresh_db, LINEAR)
    assert _tables(fresh_db) == set()


def test_migrate_holds_the_operation_lock_while_running(fresh_db):
    seen: list[str] = []

    def probe(revision, message, elapsed):
        try:
            with operation_lock(fresh_db, "restore"):
                seen.append("free")
        except LockHeldError as exc:
            seen.append(exc.msg)

    alembic_ops.migrate(fresh_db, LINEAR, "001", on_progress=probe)
    assert len(seen) == 1
    assert "tracehub.deploy migrate" in seen[0]


# --- the project's own alembic/ -------------------------------------------------------------------


def _project_revisions() -> list[str]:
    versions = PROJECT_ALEMBIC / "versions"
    if not (PROJECT_ALEMBIC / "env.py").is_file() or not versions.is_dir():
        return []
    return sorted(p.name for p in versions.glob("*.py"))


needs_project_alembic = pytest.mark.skipif(not _project_revisions(), reason="alembic/ not committed yet")


@needs_project_alembic
def test_project_alembic_upgrade_to_head_then_unchanged(fresh_db):
    script = alembic_ops.load_scripts(str(PROJECT_ALEMBIC))
    known = alembic_ops.known_revisions(script)
    events = []
    result = alembic_ops.migrate(fresh_db, str(PROJECT_ALEMBIC), "head", on_progress=lambda *e: events.append(e))
    assert [a.revision for a in result.applied] == known == ["001", "002", "003", "004", "005", "006"]
    assert all(a.message for a in result.applied)
    # env.py forwards on_version_apply: progress arrives per revision, as it happens.
    assert [e[0] for e in events] == known
    assert alembic_ops.migrate(fresh_db, str(PROJECT_ALEMBIC), "head").changed is False


@needs_project_alembic
def test_project_alembic_dry_run_leaves_database_untouched(fresh_db):
    result = alembic_ops.migrate(fresh_db, str(PROJECT_ALEMBIC), "head", dry_run=True)
    assert result.sql and "CREATE TABLE" in result.sql[0]["sql"]
    assert _tables(fresh_db) == set()


@needs_project_alembic
def test_project_alembic_downgrade_one_step_and_back(fresh_db):
    alembic_ops.migrate(fresh_db, str(PROJECT_ALEMBIC), "head")
    heads = alembic_ops.current(fresh_db)
    down = alembic_ops.migrate(fresh_db, str(PROJECT_ALEMBIC), "-1", allow_downgrade=True)
    assert down.direction == "downgrade" and len(down.applied) == 1
    assert alembic_ops.migrate(fresh_db, str(PROJECT_ALEMBIC), "head").to_revision == heads[0]


# --- the modules, end to end through ansible-playbook ---------------------------------------------


def _playbook(tmp_path: Path, conn, script_location: str, extra: str = "") -> Path:
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps({"pw": conn.password}))
    vars_file.chmod(0o600)
    playbook = tmp_path / "migrate.yml"
    playbook.write_text(
        textwrap.dedent(
            f"""\
            - name: Migrate a throwaway database
              hosts: localhost
              connection: local
              gather_facts: false
              vars:
                ansible_python_interpreter: {PROJECT_DIR / ".venv/bin/python"}
              tasks:
                - name: Read the migration state
                  tracehub.deploy.alembic_migration_info:
                    login_host: {conn.host}
                    login_port: {conn.port}
                    login_user: {conn.user}
                    login_password: "{{{{ pw }}}}"
                    login_db: {conn.dbname}
                    ssl_mode: disable
                    script_location: {script_location}
                  register: before
                - name: Migrate to head
                  tracehub.deploy.alembic_migration:
                    login_host: {conn.host}
                    login_port: {conn.port}
                    login_user: {conn.user}
                    login_password: "{{{{ pw }}}}"
                    login_db: {conn.dbname}
                    ssl_mode: disable
                    script_location: {script_location}
                    revision: head
                  register: migration
                - name: Show the result
                  ansible.builtin.debug:
                    var: migration
            {extra}"""
        )
    )
    return playbook


def _run_playbook(playbook: Path, vars_file: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(PROJECT_DIR / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
    )
    return subprocess.run(
        [
            str(PROJECT_DIR / ".venv/bin/ansible-playbook"),
            "-i",
            "localhost,",
            str(playbook),
            "-e",
            f"@{vars_file}",
            *args,
        ],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_playbook_check_then_apply_then_idempotent_without_leaking_password(fresh_db, tmp_path):
    playbook = _playbook(tmp_path, fresh_db, LINEAR)
    vars_file = tmp_path / "vars.json"

    check = _run_playbook(playbook, vars_file, "--check", "--diff")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "Would upgrade" in check.stdout
    assert "CREATE TABLE widgets" in check.stdout
    assert _tables(fresh_db) == set()

    first = _run_playbook(playbook, vars_file, "-vvvv")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Upgraded" in first.stdout and "from base to 003 (3 revisions)" in first.stdout
    assert "changed=1" in first.stdout
    assert fresh_db.password not in first.stdout + first.stderr
    assert alembic_ops.current(fresh_db) == ("003",)

    second = _run_playbook(playbook, vars_file, "-vvvv")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "changed=0" in second.stdout
    assert fresh_db.password not in second.stdout + second.stderr


def test_playbook_failing_revision_reports_revision_without_traceback(fresh_db, tmp_path):
    playbook = _playbook(tmp_path, fresh_db, FAILING)
    result = _run_playbook(playbook, tmp_path / "vars.json")
    assert result.returncode != 0
    assert "revision 002" in result.stdout
    assert "left at the previous revision 001" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert fresh_db.password not in result.stdout + result.stderr


def test_migrate_second_concurrent_run_is_refused(fresh_db):
    """Two real runs at once: exactly one migrates, the other is told who holds the lock."""
    errors: list[Exception] = []
    barrier = threading.Barrier(2)

    def run():
        barrier.wait()
        try:
            alembic_ops.migrate(fresh_db, LINEAR)
        except (LockHeldError, MigrationError) as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _index in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert alembic_ops.current(fresh_db) == ("003",)
    assert len(errors) <= 1
    if errors:
        assert "tracehub.deploy migrate" in str(errors[0])


def test_psycopg2_password_with_special_chars_reaches_alembic(fresh_db):
    """The fixture password holds % @ and : — the URL object path must carry it intact."""
    assert any(c in fresh_db.password for c in "%@:")
    assert alembic_ops.migrate(fresh_db, LINEAR, "001").to_revision == "001"
    psycopg2.connect(**fresh_db.psycopg2_kwargs()).close()


# --- the migrate role, end to end ---------------------------------------------------------------------


def _role_run(tmp_path: Path, conn, *args: str, script_location: Path | None = None) -> subprocess.CompletedProcess:
    """ansible-playbook of the migrate role against ``conn`` (one inventory host, everything local)."""
    (tmp_path / "backups").mkdir(exist_ok=True)
    (tmp_path / "runs").mkdir(exist_ok=True)
    inventory = tmp_path / "hosts.yml"
    host_vars = {
        "ansible_connection": "local",
        "ansible_python_interpreter": str(PROJECT_DIR / ".venv/bin/python"),
        "tracehub_environment": "staging",
        "db_host": conn.host,
        "db_port": conn.port,
        "db_name": conn.dbname,
        "db_user": conn.user,
        "tracehub_backup_dir": str(tmp_path / "backups"),
        "tracehub_records_dir": str(tmp_path / "runs"),
        "migrate_db_ssl_mode": "disable",
        "migrate_poll_interval": 1,
    }
    if script_location is not None:
        host_vars["migrate_script_location"] = str(script_location)
    inventory.write_text(json.dumps({"all": {"children": {"db": {"hosts": {"testdb": host_vars}}}}}))
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"db_password": conn.password}))
    secrets.chmod(0o600)
    playbook = tmp_path / "role.yml"
    playbook.write_text(
        "- name: Migrate\n  hosts: db\n  gather_facts: false\n  roles:\n    - role: tracehub.deploy.migrate\n"
    )
    env = dict(os.environ, ANSIBLE_CONFIG=str(PROJECT_DIR / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        [
            str(PROJECT_DIR / ".venv/bin/ansible-playbook"),
            "-i",
            str(inventory),
            str(playbook),
            "-e",
            f"@{secrets}",
            *args,
        ],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _at_002_with_rows(conn) -> None:
    """The production starting point: revision 002 with a few users (005 must give them to VIBOTAJ)."""
    alembic_ops.migrate(conn, str(PROJECT_ALEMBIC), "002")
    connection = connect(conn)
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO users (id, email, hashed_password, full_name, role) "
            "SELECT gen_random_uuid(), 'u' || n || '@example.com', 'x', 'User ' || n, 'admin' "
            "FROM generate_series(1, 3) n"
        )
    connection.commit()
    connection.close()


def _verified_backup_at_002(conn, tmp_path: Path) -> dict:
    """The manifest of a verified staging backup (under tmp_path/backups) of ``conn`` at 002 with a few users."""
    _at_002_with_rows(conn)
    request = backup.BackupRequest(
        conn=conn, dest=tmp_path / "backups", environment="staging", pg_bin_dir=find_bindir(), force=True
    )
    return backup.create(request, run=subprocess_runner).backup


def _record(tmp_path: Path) -> dict:
    (path,) = (tmp_path / "runs").glob("*.json")  # the run id comes from the run_context role, absent here
    return json.loads(path.read_text())


def _migrate_entries(tmp_path: Path) -> list[dict]:
    record = _record(tmp_path)
    phases = record.get("phases", record.get("entries", []))
    return [p for p in phases if p.get("phase") == "migrate"]


@needs_project_alembic
def test_migrate_role_refuses_without_recent_verified_backup(fresh_db, tmp_path):
    alembic_ops.migrate(fresh_db, str(PROJECT_ALEMBIC), "002")
    run = _role_run(tmp_path, fresh_db)
    assert run.returncode != 0, run.stdout
    assert "no intact, verified backup of this" in run.stdout and "revision 002 younger than 3600 s" in run.stdout
    assert "playbooks/backup.yml" in run.stdout and "migrate_backup_waiver=true" in run.stdout
    assert alembic_ops.current(fresh_db) == ("002",)


@needs_project_alembic
def test_migrate_role_names_a_verified_backup_damaged_since(fresh_db, tmp_path):
    manifest = _verified_backup_at_002(fresh_db, tmp_path)
    archive = Path(manifest["path"])
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))

    run = _role_run(tmp_path, fresh_db)
    assert run.returncode != 0, run.stdout
    assert f"s in {tmp_path / 'backups'} (DAMAGED since they were verified: {manifest['name']}). Take one" in run.stdout
    assert alembic_ops.current(fresh_db) == ("002",)


@needs_project_alembic
def test_migrate_role_names_a_backup_of_the_database_a_restore_replaced(fresh_db, tmp_path):
    manifest = _verified_backup_at_002(fresh_db, tmp_path)
    # The restore swaps a new database in under the same name: another OID, so the backup is of the one replaced.
    restore.restore(
        restore.RestoreRequest(
            conn=fresh_db,
            backup_dir=tmp_path / "backups",
            environment="staging",
            name=manifest["name"],
            safety_backup=False,
            keep_old=0,
            pg_bin_dir=find_bindir(),
            force=True,
        ),
        run=subprocess_runner,
    )

    run = _role_run(tmp_path, fresh_db)
    assert run.returncode != 0, run.stdout
    assert f"not counted: {manifest['name']}, of the database this one replaced (another OID" in " ".join(
        run.stdout.split()
    )
    assert alembic_ops.current(fresh_db) == ("002",)


@needs_project_alembic
def test_migrate_role_with_waiver_applies_each_step_then_is_idempotent(fresh_db, tmp_path):
    _at_002_with_rows(fresh_db)

    check = _role_run(tmp_path, fresh_db, "--check", "-e", "migrate_backup_waiver=true")
    assert check.returncode == 0, check.stdout + check.stderr
    assert alembic_ops.current(fresh_db) == ("002",)

    run = _role_run(tmp_path, fresh_db, "-e", "migrate_backup_waiver=true", "-vvvv")
    assert run.returncode == 0, run.stdout + run.stderr
    assert fresh_db.password not in run.stdout + run.stderr
    for rev in ("003", "004", "005", "006"):
        assert f"Upgrade to revision {rev}" in run.stdout
        assert f"Validate the database after revision {rev}" in run.stdout
    assert alembic_ops.current(fresh_db) == ("006",)
    entry = _migrate_entries(tmp_path)[-1]
    assert entry["status"] == "ok"
    data = entry["data"]
    assert (data["revision_before"], data["revision_after"]) == ("002", "006")
    assert [a["revision"] for a in data["applied"]] == ["003", "004", "005", "006"]
    assert all("duration_s" in a for a in data["applied"])
    assert data["backup_waived"] is True
    assert data["baseline_counts"]["users"] == 3
    assert data["baseline_counts"] == data["final_counts"]

    again = _role_run(tmp_path, fresh_db, "-e", "migrate_backup_waiver=true")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "changed=0" in again.stdout


def _broken_project_copy(tmp_path: Path, revision: str, upgrade_body: str, downgrade_body: str | None = None) -> Path:
    """A copy of alembic/ whose ``revision`` has another upgrade() (and optionally downgrade())."""
    import re
    import shutil

    copy = tmp_path / "alembic"
    shutil.copytree(PROJECT_ALEMBIC, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (target,) = copy.glob(f"versions/*-{revision}_*.py")
    text = target.read_text()
    text = re.sub(
        r"def upgrade\(\) -> None:\n",
        f"def upgrade() -> None:\n{upgrade_body}\n\n\ndef _orig_upgrade() -> None:\n",
        text,
        count=1,
    )
    if downgrade_body is not None:
        text = re.sub(
            r"def downgrade\(\) -> None:\n",
            f"def downgrade() -> None:\n{downgrade_body}\n\n\ndef _orig_downgrade() -> None:\n",
            text,
            count=1,
        )
    target.write_text(text)
    return copy


@needs_project_alembic
def test_migrate_role_failing_revision_goes_back_to_previous_and_names_step(fresh_db, tmp_path):
    _at_002_with_rows(fresh_db)
    broken = _broken_project_copy(tmp_path, "005", "    op.execute('SELECT 1/0')")
    run = _role_run(tmp_path, fresh_db, "-e", "migrate_backup_waiver=true", script_location=broken)
    assert run.returncode != 0
    assert "failed at revision 005" in run.stdout
    assert "while applying it" in run.stdout
    assert "division by zero" in run.stdout
    assert "returned to revision 004" in run.stdout
    assert alembic_ops.current(fresh_db) == ("004",)
    entry = _migrate_entries(tmp_path)[-1]
    assert entry["status"] == "failed"
    assert entry["data"]["failure"]["revision"] == "005"
    assert entry["data"]["revision_after"] == "004"


@needs_project_alembic
def test_migrate_role_failing_revision_without_rollback_stays_where_it_failed(fresh_db, tmp_path):
    _at_002_with_rows(fresh_db)
    broken = _broken_project_copy(tmp_path, "005", "    op.execute('SELECT 1/0')")
    run = _role_run(
        tmp_path,
        fresh_db,
        "-e",
        "migrate_backup_waiver=true",
        "-e",
        "migrate_rollback_on_failure=false",
        script_location=broken,
    )
    assert run.returncode != 0
    assert "failed at revision 005" in run.stdout
    assert (
        "Rollback is disabled (migrate_rollback_on_failure=false): the database stays where the failure" in run.stdout
    )
    assert "returned to revision" not in run.stdout
    assert alembic_ops.current(fresh_db) == ("004",)


@needs_project_alembic
def test_migrate_role_validation_failure_goes_back_to_004(fresh_db, tmp_path):
    _at_002_with_rows(fresh_db)
    # 006 that adds none of its constraints: the multitenancy suite fails after it.
    broken = _broken_project_copy(tmp_path, "006", "    return", "    return")
    run = _role_run(tmp_path, fresh_db, "-e", "migrate_backup_waiver=true", script_location=broken)
    assert run.returncode != 0
    assert "failed at revision 006" in run.stdout
    assert "while validating it" in run.stdout
    assert "returned to revision 004" in run.stdout
    assert alembic_ops.current(fresh_db) == ("004",)
