"""The online revisions under live traffic, against a real PostgreSQL with real blocking sessions.

Lock timeouts retried then failing naming the blocker, an interrupted backfill resumed, concurrent runs
serialised by the advisory lock, an INVALID index left by a failed concurrent build repaired, v1.2's inserts
during the migration all owned by VIBOTAJ, the contract step, and the linter on the project and the baseline.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from ansible_collections.tracehub.deploy.plugins.module_utils import alembic_ops, migration_lint
from ansible_collections.tracehub.deploy.plugins.module_utils.errors import LockHeldError, MigrationError
from ansible_collections.tracehub.deploy.plugins.module_utils.pg import connect, operation_lock
from tools.seed import TENANT_TABLES, seed

PROJECT_DIR = Path(__file__).resolve().parents[2]
ALEMBIC = str(PROJECT_DIR / "alembic")
BASELINE = str(PROJECT_DIR / "bench" / "zero_downtime" / "baseline")
VIBOTAJ = "00000000-0000-0000-0000-000000000001"
FAST = alembic_ops.OnlineSettings(lock_timeout=0.1, lock_retries=2, lock_retry_delay=0.05)


def _query(conn, statement, params=None):
    connection = connect(conn)
    try:
        with connection.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall()
    finally:
        connection.close()


def _execute(conn, statement, params=None) -> None:
    connection = connect(conn)
    connection.autocommit = True
    try:
        with connection.cursor() as cur:
            cur.execute(statement, params)
    finally:
        connection.close()


class Blocker:
    """A real session holding a lock on ``table`` in an open transaction (as a long v1.2 report would)."""

    def __init__(self, conn, table: str, mode: str = "ACCESS SHARE") -> None:
        self.connection = psycopg2.connect(**conn.with_application_name("blocking-report").psycopg2_kwargs())
        with self.connection.cursor() as cur:
            cur.execute(sql.SQL("LOCK TABLE {} IN {} MODE").format(sql.Identifier(table), sql.SQL(mode)))
            cur.execute("SELECT pg_backend_pid()")
            self.pid = cur.fetchone()[0]

    def release(self) -> None:
        self.connection.rollback()
        self.connection.close()


@pytest.fixture
def seeded(fresh_db):
    """Revision 002 with scale-2 data."""
    seed(fresh_db, 2)
    return fresh_db


# --- lock_timeout, retries, the blocking session ------------------------------------------------------------


def test_online_lock_timeout_retried_until_the_blocking_session_ends(seeded):
    alembic_ops.migrate(seeded, ALEMBIC, "003")
    blocker = Blocker(seeded, "shipments")
    timer = threading.Timer(1.0, blocker.release)
    timer.start()
    try:
        settings = alembic_ops.OnlineSettings(lock_timeout=0.1, lock_retries=20, lock_retry_delay=0.1)
        result = alembic_ops.migrate(seeded, ALEMBIC, "004", settings=settings)
    finally:
        timer.join()

    assert result.to_revision == "004"
    retries = [r for r in result.lock_retries if r["table"] == "shipments"]
    assert retries and retries[0]["step"] == "add column organization_id"
    assert blocker.pid in [b["pid"] for b in retries[0]["blocking"]]
    assert _query(seeded, "SELECT count(*) FROM shipments WHERE organization_id IS NOT NULL") == [(0,)]


def test_online_lock_never_granted_fails_naming_blocker_and_rerun_resumes(seeded):
    alembic_ops.migrate(seeded, ALEMBIC, "003")
    blocker = Blocker(seeded, "shipments")
    try:
        with pytest.raises(MigrationError) as failed:
            alembic_ops.migrate(seeded, ALEMBIC, "004", settings=FAST)
        waiting = _query(seeded, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
    finally:
        blocker.release()

    message = failed.value.msg
    assert "revision 004" in message and "shipments" in message
    assert f"pid {blocker.pid} (blocking-report" in message and "idle in transaction" in message
    assert "3 attempts" in message and "Nothing of that step was applied" in message
    assert "run the migration again" in message
    assert failed.value.details["failed_revision"] == "004" and failed.value.details["rerunnable"] is True
    assert failed.value.details["blocking"][0]["pid"] == blocker.pid
    assert waiting == [(0,)]  # nobody queued behind a waiting DDL once it gave up
    assert alembic_ops.current(seeded) == ("003",)
    # users (before shipments) got its column, shipments did not: a state the revision is re-run from.
    columns = dict(
        _query(
            seeded,
            "SELECT table_name, count(*) FROM information_schema.columns WHERE column_name = 'organization_id' "
            "AND table_name = ANY(%s) GROUP BY 1",
            (["users", "shipments"],),
        )
    )
    assert columns == {"users": 1}

    result = alembic_ops.migrate(seeded, ALEMBIC, "004", settings=FAST)
    assert result.to_revision == "004"
    indexes = _query(
        seeded,
        "SELECT count(*) FROM pg_indexes WHERE indexname = ANY(%s)",
        ([f"ix_{t}_organization_id" for t in TENANT_TABLES],),
    )
    assert indexes == [(9,)]


# --- backfill: batched, resumable, reported ------------------------------------------------------------------


class InterruptedRunError(RuntimeError):
    """Stands for a crash or a killed run in the middle of the backfill."""


def test_online_interrupted_backfill_resumes_without_redoing_rows(seeded):
    alembic_ops.migrate(seeded, ALEMBIC, "004")
    total = sum(_query(seeded, f"SELECT count(*) FROM {t}")[0][0] for t in TENANT_TABLES)
    settings = alembic_ops.OnlineSettings(batch_size=100, progress_interval=0)
    seen: list[dict] = []

    def crash_midway(event):
        seen.append(event)
        if event.get("event") == "backfill" and event["table"] == "container_events" and event["rows_done"] > 0:
            raise InterruptedRunError("killed during the backfill of container_events")

    with pytest.raises(MigrationError, match="killed during the backfill"):
        alembic_ops.migrate(seeded, ALEMBIC, "005", settings=settings, on_event=crash_midway)

    assert alembic_ops.current(seeded) == ("004",)
    done_before = sum(
        _query(seeded, f"SELECT count(*) FROM {t} WHERE organization_id IS NOT NULL")[0][0] for t in TENANT_TABLES
    )
    assert 0 < done_before < total
    progress = [e for e in seen if e.get("event") == "backfill"]
    assert {"rows_done", "rows_total", "rate_rows_s", "eta_s"} <= set(progress[-1])

    result = alembic_ops.migrate(seeded, ALEMBIC, "005", settings=settings)

    assert result.to_revision == "005"
    redone = sum(b["rows_done"] for b in result.backfill)
    assert redone == total - done_before  # only the rows still unowned were touched
    assert {b["table"] for b in result.backfill} == set(TENANT_TABLES)
    for table in TENANT_TABLES:
        assert _query(seeded, f"SELECT DISTINCT organization_id::text FROM {table}") == [(VIBOTAJ,)]


# --- the advisory lock: a second run waits, then fails naming the first --------------------------------------


def test_online_second_run_waits_for_the_first_then_proceeds(seeded):
    holder = threading.Thread(target=lambda: _hold_lock(seeded, 1.0))
    holder.start()
    time.sleep(0.2)
    started = time.monotonic()
    try:
        result = alembic_ops.migrate(seeded, ALEMBIC, "003", lock_wait=20)
    finally:
        holder.join()
    assert result.to_revision == "003"
    assert time.monotonic() - started >= 0.7


def _hold_lock(conn, seconds: float) -> None:
    with operation_lock(conn, "migrate"):
        time.sleep(seconds)


def test_online_second_run_gives_up_after_lock_wait_naming_the_first(seeded):
    with operation_lock(seeded, "migrate"):
        started = time.monotonic()
        with pytest.raises(LockHeldError, match=r"tracehub\.deploy migrate \(pid \d+"):
            alembic_ops.migrate(seeded, ALEMBIC, "003", lock_wait=0.5)
        assert 0.4 <= time.monotonic() - started < 5
    assert alembic_ops.current(seeded) == ("002",)


# --- invalid index from a failed concurrent build ------------------------------------------------------------


def test_online_invalid_index_left_by_failed_build_is_rebuilt(seeded):
    alembic_ops.migrate(seeded, ALEMBIC, "005")
    name = "ix_documents_organization_id_document_type"
    # A concurrent build that fails (duplicates for a UNIQUE index) leaves an INVALID index behind.
    with pytest.raises(psycopg2.errors.UniqueViolation):
        _execute(seeded, f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON documents (organization_id, document_type)")
    assert _query(seeded, "SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", (name,)) == [(False,)]
    events: list[dict] = []

    alembic_ops.migrate(seeded, ALEMBIC, "006", on_event=events.append)

    assert {"event": "index_rebuild", "index": name, "table": "documents", "revision": "006"} in events
    assert _query(
        seeded,
        "SELECT i.indisvalid, i.indisunique, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "WHERE i.indexrelid = %s::regclass",
        (name,),
    ) == [(True, False, f"CREATE INDEX {name} ON public.documents USING btree (organization_id, document_type)")]


def test_online_concurrent_build_timing_out_leaves_invalid_index_rebuilt_on_rerun(seeded):
    alembic_ops.migrate(seeded, ALEMBIC, "005")
    # A transaction holding an old snapshot: a concurrent build must wait for it before its index is valid.
    old_snapshot = psycopg2.connect(**seeded.with_application_name("old-snapshot").psycopg2_kwargs())
    old_snapshot.set_session(isolation_level="REPEATABLE READ")
    with old_snapshot.cursor() as cur:
        cur.execute("SELECT 1")
    settings = alembic_ops.OnlineSettings(
        lock_timeout=0.2, lock_retries=1, lock_retry_delay=0.05, weak_lock_timeout=0.3
    )
    try:
        with pytest.raises(MigrationError) as failed:
            alembic_ops.migrate(seeded, ALEMBIC, "006", settings=settings)
        name = "ix_users_organization_id_email"
        assert _query(seeded, "SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", (name,)) == [(False,)]
    finally:
        old_snapshot.rollback()
        old_snapshot.close()

    message = failed.value.msg
    assert f"build index {name} on users failed" in message and "lock timeout" in message
    assert f"INVALID index {name}" in message and "drops and rebuilds it" in message
    assert alembic_ops.current(seeded) == ("005",)
    events: list[dict] = []
    alembic_ops.migrate(seeded, ALEMBIC, "006", on_event=events.append)
    assert any(e.get("event") == "index_rebuild" and e["index"] == name for e in events)
    assert _query(seeded, "SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", (name,)) == [(True,)]


# --- v1.2 keeps inserting during the whole migration -----------------------------------------------------------


def test_online_old_app_inserts_during_migration_all_end_up_owned(seeded):
    stop = threading.Event()
    inserted: dict[str, list[str]] = {"shipments": [], "documents": [], "audit_logs": [], "container_events": []}
    errors: list[str] = []
    shipment = _query(seeded, "SELECT id::text FROM shipments ORDER BY reference LIMIT 1")[0][0]

    def old_app() -> None:
        connection = connect(seeded.with_application_name("v1.2"))
        n = 0
        while not stop.is_set():
            n += 1
            new = {t: str(uuid.uuid4()) for t in inserted}
            try:
                with connection.cursor() as cur:
                    cur.execute("INSERT INTO shipments (id, reference) VALUES (%s, %s)", (new["shipments"], f"OLD-{n}"))
                    cur.execute(
                        "INSERT INTO documents (id, shipment_id, name, document_type) VALUES (%s, %s, 'bl', 'OTHER')",
                        (new["documents"], shipment),
                    )
                    cur.execute(
                        "INSERT INTO audit_logs (id, action, resource_type) VALUES (%s, 'create', 'shipment')",
                        (new["audit_logs"],),
                    )
                    cur.execute(
                        "INSERT INTO container_events (id, shipment_id, event_status, event_time) "
                        "VALUES (%s, %s, 'GATE_IN', now())",
                        (new["container_events"], shipment),
                    )
                connection.commit()
                for table, value in new.items():
                    inserted[table].append(value)
            except psycopg2.Error as exc:
                connection.rollback()
                errors.append(str(exc).splitlines()[0])
            time.sleep(0.005)
        connection.close()

    writer = threading.Thread(target=old_app)
    writer.start()
    try:
        time.sleep(0.2)
        for step in ("003", "004", "005", "006"):
            alembic_ops.migrate(seeded, ALEMBIC, step, settings=alembic_ops.OnlineSettings(batch_size=200))
            time.sleep(0.2)  # v1.2 writes between the revisions too
    finally:
        stop.set()
        writer.join()

    assert errors == []
    assert alembic_ops.current(seeded) == ("006",)
    for table, ids in inserted.items():
        assert len(ids) > 10, table
        owners = _query(
            seeded,
            sql.SQL("SELECT organization_id::text, count(*) FROM {} WHERE id = ANY(%s::uuid[]) GROUP BY 1").format(
                sql.Identifier(table)
            ),
            (ids,),
        )
        assert owners == [(VIBOTAJ, len(ids))], table


# --- the contract step ----------------------------------------------------------------------------------------


def test_contract_removes_the_vibotaj_defaults_once_then_is_unchanged(seeded):
    alembic_ops.migrate(seeded, ALEMBIC, "006")

    planned = alembic_ops.contract(seeded, ALEMBIC, dry_run=True)
    assert planned.changed is True and planned.steps[0]["pending"] == list(TENANT_TABLES)
    assert _defaults(seeded) == len(TENANT_TABLES)

    done = alembic_ops.contract(seeded, ALEMBIC, settings=FAST)
    assert done.changed is True and done.steps[0]["done"] == list(TENANT_TABLES)
    assert _defaults(seeded) == 0
    assert alembic_ops.contract(seeded, ALEMBIC).changed is False
    with pytest.raises(psycopg2.errors.NotNullViolation):
        _execute(seeded, "INSERT INTO audit_logs (action, resource_type) VALUES ('login', 'user')")
    # Level-1 rollback still works after the contract step.
    alembic_ops.migrate(seeded, ALEMBIC, "004", allow_downgrade=True)
    assert alembic_ops.current(seeded) == ("004",)


def test_contract_blocked_table_fails_naming_the_session(seeded):
    alembic_ops.migrate(seeded, ALEMBIC, "006")
    blocker = Blocker(seeded, "notifications")
    try:
        with pytest.raises(MigrationError, match=rf"notifications.*pid {blocker.pid} \(blocking-report"):
            alembic_ops.contract(seeded, ALEMBIC, settings=FAST)
    finally:
        blocker.release()
    assert alembic_ops.contract(seeded, ALEMBIC, settings=FAST).changed is True
    assert _defaults(seeded) == 0


def _defaults(conn) -> int:
    return _query(
        conn,
        "SELECT count(*) FROM information_schema.columns WHERE column_name = 'organization_id' "
        "AND table_name = ANY(%s) AND column_default IS NOT NULL",
        (list(TENANT_TABLES),),
    )[0][0]


# --- the linter on the project's revisions and on the plan's literal ones --------------------------------------


def test_lint_project_revisions_pass_and_baseline_is_flagged(fresh_db):
    project = migration_lint.lint(fresh_db, ALEMBIC, "head", from_revision="002")
    baseline = migration_lint.lint(fresh_db, BASELINE, "head", from_revision="002")

    assert project.revisions == baseline.revisions == ("003", "004", "005", "006")
    assert project.passed, [f.message for f in project.findings]
    assert not baseline.passed
    flagged = {(f.revision, f.rule) for f in baseline.findings}
    assert {
        ("003", "lock-timeout"),
        ("004", "concurrent-index"),
        ("004", "multi-table-ddl"),
        ("005", "unbatched-dml"),
        ("006", "not-null-without-check"),
        ("006", "constraint-not-valid"),
    } <= flagged
    assert _query(fresh_db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]


def test_lint_reads_pending_revisions_from_the_database(fresh_db):
    alembic_ops.migrate(fresh_db, ALEMBIC, "004")
    report = migration_lint.lint(fresh_db, ALEMBIC)
    assert report.revisions == ("005", "006") and report.passed


# --- the migrate role's contract entry point (what playbooks/retire_blue.yml calls) ------------------------


def test_migrate_role_contract_entry_point_removes_defaults_and_records(seeded, tmp_path):
    alembic_ops.migrate(seeded, ALEMBIC, "006")
    (tmp_path / "runs").mkdir()
    host_vars = {
        "ansible_connection": "local",
        "ansible_python_interpreter": str(PROJECT_DIR / ".venv/bin/python"),
        "tracehub_environment": "staging",
        "db_host": seeded.host,
        "db_port": seeded.port,
        "db_name": seeded.dbname,
        "db_user": seeded.user,
        "tracehub_records_dir": str(tmp_path / "runs"),
        "migrate_db_ssl_mode": "disable",
    }
    (tmp_path / "hosts.yml").write_text(json.dumps({"all": {"children": {"db": {"hosts": {"testdb": host_vars}}}}}))
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"db_password": seeded.password}))
    (tmp_path / "retire.yml").write_text(
        "- name: Retire blue\n  hosts: db\n  gather_facts: false\n  tasks:\n"
        "    - name: Contract the database\n      ansible.builtin.include_role:\n"
        "        name: tracehub.deploy.migrate\n        tasks_from: contract\n"
    )

    def play() -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                str(PROJECT_DIR / ".venv/bin/ansible-playbook"),
                "-i",
                str(tmp_path / "hosts.yml"),
                str(tmp_path / "retire.yml"),
                "-e",
                f"@{secrets}",
            ],
            cwd=PROJECT_DIR,
            env=dict(os.environ, ANSIBLE_CONFIG=str(PROJECT_DIR / "ansible.cfg"), ANSIBLE_NOCOLOR="1"),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    first = play()
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Contracted" in first.stdout and "changed=1" in first.stdout
    assert seeded.password not in first.stdout + first.stderr
    assert _defaults(seeded) == 0
    again = play()
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout
    (record,) = (tmp_path / "runs").glob("*.json")
    phases = [p for p in json.loads(record.read_text())["phases"] if p["phase"] == "contract"]
    assert [p["status"] for p in phases] == ["ok", "ok"]
    assert phases[0]["data"]["steps"][0]["done"] == list(TENANT_TABLES)


# --- the benchmark's smoke mode, so that it cannot rot -----------------------------------------------------


def test_bench_zero_downtime_smoke_project_completes_baseline_refused(tmp_path):
    pytest.importorskip("matplotlib")
    from bench.zero_downtime.__main__ import main

    # 1 would only mean a latency target missed on a loaded machine; 2 is a crash.
    assert main(["--smoke", "--out", str(tmp_path), "--attempts", "1"]) in (0, 1)

    result = json.loads((tmp_path / "result.json").read_text())
    project, baseline = result["results"]
    assert project["chain_completed"] and project["lost_writes"] == 0 and project["unowned_writes"] == 0
    assert project["whole_run"]["failed"] == 0 and project["during_migration"]["writes"] > 0
    assert not baseline["chain_completed"] and baseline["failures"]
    assert (tmp_path / "latency.png").stat().st_size > 10_000
    assert "chain 002 -> 006" in (tmp_path / "table.txt").read_text()
