"""SQL validation suites against a real PostgreSQL: the TraceHub schema built by the project's Alembic revisions."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from ansible_collections.tracehub.deploy.plugins.module_utils.errors import CheckFailedError
from ansible_collections.tracehub.deploy.plugins.module_utils.pg import ConnInfo, connect
from ansible_collections.tracehub.deploy.plugins.module_utils.sql_checks import (
    SuiteResult,
    load_suite_file,
    parse_suite,
    run_suite,
)

PROJECT_DIR = Path(__file__).resolve().parents[2]
SUITES = PROJECT_DIR / "roles" / "validate" / "files" / "suites"
VIBOTAJ = "00000000-0000-0000-0000-000000000001"
ALL_TWELVE = [str(n) for n in range(1, 13)]


def upgrade(conn: ConnInfo, revision: str) -> None:
    """Bring the database to ``revision`` with the project's Alembic revisions."""
    from alembic.config import Config

    from alembic import command

    config = Config()
    config.set_main_option("script_location", str(PROJECT_DIR / "alembic"))
    config.attributes["url"] = conn.sqlalchemy_url()
    command.upgrade(config, revision)


def run(conn: ConnInfo, suite: str | dict, params: dict | None = None, **kwargs) -> SuiteResult:
    raw = load_suite_file(str(SUITES / f"{suite}.yml")) if isinstance(suite, str) else suite
    return run_suite(parse_suite(raw), params, lambda: connect(conn), target=conn.describe(), **kwargs)


def statuses(result: SuiteResult) -> dict[str, str]:
    return {r.id: r.status for r in result.results}


def execute(conn: ConnInfo, statement: str, args: tuple = ()) -> None:
    connection = connect(conn)
    try:
        with connection.cursor() as cur:
            cur.execute(statement, args)
        connection.commit()
    finally:
        connection.close()


def scalar(conn: ConnInfo, statement: str):
    connection = connect(conn)
    try:
        with connection.cursor() as cur:
            cur.execute(statement)
            return cur.fetchone()[0]
    finally:
        connection.close()


@pytest.fixture
def seeded_db(fresh_db) -> ConnInfo:
    """A fresh database at revision 002 holding the seed's realistic data."""
    from tools.seed import seed

    seed(fresh_db)
    return fresh_db


@pytest.fixture
def head_db(seeded_db) -> ConnInfo:
    """Seeded data migrated to 006."""
    upgrade(seeded_db, "006")
    return seeded_db


# --- multitenancy ---------------------------------------------------------------------------------


def test_multitenancy_at_head_on_seeded_data_all_twelve_pass(head_db):
    result = run(head_db, "multitenancy")

    assert statuses(result) == dict.fromkeys(ALL_TWELVE, "pass")
    assert result.summary == "12 passed, 0 warnings, 0 failed"
    assert result.failure_message() is None
    json.dumps(result.as_dict())  # every result is JSON-safe


# Which checks are not yet satisfiable after each revision; everything else passes, nothing fails.
INCOMPLETE_AT = {
    "003": {"2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"},
    "004": {"3", "4", "5", "6", "7", "8", "11", "12"},
    "005": {"5", "6", "7", "11", "12"},
}


@pytest.mark.parametrize("revision", sorted(INCOMPLETE_AT))
def test_multitenancy_below_head_incomplete_checks_warn_not_fail(seeded_db, revision):
    upgrade(seeded_db, revision)

    result = run(seeded_db, "multitenancy")

    expected = {n: "warn" if n in INCOMPLETE_AT[revision] else "pass" for n in ALL_TWELVE}
    assert statuses(result) == expected
    assert result.failed == 0
    warned = [r for r in result.results if r.status == "warn"]
    assert all(r.incomplete and r.reason.startswith("incomplete:") for r in warned)
    assert result.summary == f"{12 - len(warned)} passed, {len(warned)} warnings, 0 failed"


def test_multitenancy_fresh_empty_database_warns_everything(fresh_db):
    result = run(fresh_db, "multitenancy")

    assert statuses(result) == dict.fromkeys(ALL_TWELVE, "warn")
    assert result.facts["current_revision"] is None


def test_multitenancy_membership_dropped_at_head_fails_check_9(head_db):
    email = scalar(head_db, "SELECT email FROM users ORDER BY email LIMIT 1")
    execute(head_db, "DELETE FROM org_memberships m USING users u WHERE u.id = m.user_id AND u.email = %s", (email,))

    result = run(head_db, "multitenancy")

    assert {k: v for k, v in statuses(result).items() if v != "pass"} == {"9": "fail"}
    check_9 = result.results[8]
    assert check_9.observed["row_count"] == 1
    assert check_9.observed["rows"][0]["email"] == email
    message = result.failure_message()
    assert "Every VIBOTAJ user has a membership" in message
    assert "0 warnings, 1 failed" in message


def test_multitenancy_row_pointing_at_missing_org_fails_checks_5_8_10(head_db):
    execute(head_db, "ALTER TABLE shipments DROP CONSTRAINT fk_shipments_organization_id")
    execute(
        head_db,
        "UPDATE shipments SET organization_id = %s WHERE id = (SELECT id FROM shipments ORDER BY id LIMIT 1)",
        (str(uuid.uuid4()),),
    )

    result = run(head_db, "multitenancy")

    assert {k: v for k, v in statuses(result).items() if v != "pass"} == {"5": "fail", "8": "fail", "10": "fail"}
    check_10 = result.results[9]
    assert check_10.values["shipments"] == 1
    assert check_10.values["users"] == 0
    assert check_10.reason == "shipments: expected value 0, got 1"


def test_multitenancy_null_organization_after_head_fails_checks_4_and_6(head_db):
    execute(head_db, "ALTER TABLE audit_logs ALTER COLUMN organization_id DROP NOT NULL")
    execute(head_db, "UPDATE audit_logs SET organization_id = NULL WHERE id IN (SELECT id FROM audit_logs LIMIT 3)")

    result = run(head_db, "multitenancy")

    assert {k: v for k, v in statuses(result).items() if v != "pass"} == {"4": "fail", "6": "fail"}
    assert result.results[3].values["audit_logs"] == 3
    assert result.results[5].observed["rows"] == [{"table_with_nullable_organization_id": "audit_logs"}]


def test_multitenancy_fifteen_composite_indexes_warns_fourteen_fails(head_db):
    execute(head_db, "DROP INDEX ix_notifications_organization_id_read")
    assert statuses(run(head_db, "multitenancy"))["7"] == "warn"

    execute(head_db, "DROP INDEX ix_audit_logs_organization_id_resource_type")
    result = run(head_db, "multitenancy")

    assert statuses(result)["7"] == "fail"
    assert result.results[6].reason == "expected at least 16, got 14"


def test_multitenancy_unknown_revision_fails_check_11(head_db):
    execute(head_db, "UPDATE alembic_version SET version_num = 'f00dcafe'")

    result = run(head_db, "multitenancy")

    assert {k: v for k, v in statuses(result).items() if v != "pass"} == {"11": "fail"}
    assert result.results[10].observed["row"]["current_revision"] == "f00dcafe"


def test_multitenancy_target_below_current_fails_check_11(head_db):
    result = run(head_db, "multitenancy", {"target_revision": "005"})

    assert statuses(result)["11"] == "fail"


def test_multitenancy_unknown_param_is_refused(head_db):
    with pytest.raises(CheckFailedError, match="declares no parameter 'target_revison'"):
        run(head_db, "multitenancy", {"target_revison": "006"})


# --- pre_migration --------------------------------------------------------------------------------


def test_pre_migration_at_002_collects_baseline_and_passes(seeded_db):
    from tools.seed import planned_counts

    result = run(seeded_db, "pre_migration")

    assert result.summary == "3 passed, 0 warnings, 0 failed"
    assert result.collected["baseline"] == planned_counts(1)
    assert result.results[1].values == planned_counts(1)


def test_pre_migration_orphaned_document_fails(seeded_db):
    constraint = scalar(
        seeded_db,
        "SELECT conname FROM pg_constraint WHERE contype = 'f' AND conrelid = 'documents'::regclass "
        "AND confrelid = 'shipments'::regclass",
    )
    execute(seeded_db, f'ALTER TABLE documents DROP CONSTRAINT "{constraint}"')
    execute(
        seeded_db,
        "UPDATE documents SET shipment_id = %s WHERE id = (SELECT id FROM documents ORDER BY id LIMIT 1)",
        (str(uuid.uuid4()),),
    )

    result = run(seeded_db, "pre_migration")

    assert statuses(result) == {"revision": "pass", "baseline_counts": "pass", "orphans": "fail"}
    assert result.results[2].values == {"documents": 1, "products": 0, "origins": 0}
    assert "documents: expected value 0, got 1" in result.failure_message()


def test_pre_migration_after_migrating_warns_on_revision(head_db):
    result = run(head_db, "pre_migration")

    assert statuses(result) == {"revision": "warn", "baseline_counts": "pass", "orphans": "pass"}
    assert "(tolerated: past the baseline revision, already (partly) migrated" in result.results[0].reason


def test_pre_migration_fresh_database_warns(fresh_db):
    result = run(fresh_db, "pre_migration")

    assert result.summary == "0 passed, 3 warnings, 0 failed"


# --- the engine: read-only, identifiers, errors, timeouts -----------------------------------------


def _suite(*checks: dict, params: dict | None = None) -> dict:
    return {"name": "adhoc", "params": params or {}, "checks": list(checks)}


def test_run_suite_check_that_writes_fails_and_writes_nothing(fresh_db):
    execute(fresh_db, "CREATE TABLE ledger (n int)")
    suite = _suite(
        {
            "id": "w",
            "name": "Tries to write",
            "sql": "INSERT INTO ledger VALUES (1) RETURNING n",
            "expect": {"rows": 1},
        },
        {
            "id": "w2",
            "name": "Writes in a CTE",
            "sql": "WITH d AS (DELETE FROM ledger RETURNING 1) SELECT 1",
            "expect": True,
        },
        {"id": "r", "name": "Still runs", "sql": "SELECT count(*) FROM ledger", "expect": {"value": 0}},
    )

    result = run(fresh_db, suite)

    assert statuses(result) == {"w": "fail", "w2": "fail", "r": "pass"}
    assert "read-only transaction" in result.results[0].error
    assert scalar(fresh_db, "SELECT count(*) FROM ledger") == 0


def test_run_suite_for_each_quotes_hostile_identifiers(fresh_db):
    hostile = 'Odd "name"; DROP TABLE victim; --'
    execute(fresh_db, 'CREATE TABLE victim (n int); CREATE TABLE "Odd ""name""; DROP TABLE victim; --" (n int)')
    execute(fresh_db, 'INSERT INTO "Odd ""name""; DROP TABLE victim; --" VALUES (1), (2)')
    suite = _suite(
        {
            "id": "c",
            "name": "Counts",
            "for_each": "tables",
            "sql": "SELECT count(*) FROM {item}",
            "expect": {"min": 1},
            "collect_as": "counts",
        },
        params={"tables": [hostile, "victim"]},
    )

    result = run(fresh_db, suite)

    assert result.collected["counts"] == {hostile: 2, "victim": 0}
    assert result.results[0].status == "fail"  # victim is empty: min 1 unmet
    assert scalar(fresh_db, "SELECT to_regclass('victim') IS NOT NULL") is True


def test_run_suite_error_in_one_check_others_still_run(fresh_db):
    suite = _suite(
        {
            "id": "a",
            "name": "Missing table",
            "sql": "SELECT count(*) FROM nowhere",
            "expect": {"value": 0},
            "severity": "warn",
        },
        {"id": "b", "name": "Fine", "sql": "SELECT 1", "expect": {"value": 1}},
    )

    result = run(fresh_db, suite)

    assert statuses(result) == {"a": "fail", "b": "pass"}
    assert 'relation "nowhere" does not exist' in result.results[0].error


def test_run_suite_statement_timeout_fails_the_slow_check(fresh_db):
    suite = _suite({"id": "slow", "name": "Slow", "sql": "SELECT pg_sleep(5)", "expect": True})

    result = run(fresh_db, suite, statement_timeout=1)

    assert result.results[0].status == "fail"
    assert "statement timeout" in result.results[0].error


def test_run_suite_json_safe_values(fresh_db):
    suite = _suite(
        {
            "id": "t",
            "name": "Types",
            "expect": {"rows": 1},
            "sql": "SELECT gen_random_uuid() AS u, now() AS ts, 1.50::numeric AS d, 2::numeric AS i, "
            "'\\x01'::bytea AS b",
        },
    )

    row = run(fresh_db, suite).results[0].observed["rows"][0]

    assert isinstance(row["u"], str) and isinstance(row["ts"], str)
    assert row["d"] == 1.5 and row["i"] == 2 and row["b"] == "01"


# --- the module and the role, through ansible-playbook ---------------------------------------------


def _playbook(tmp_path: Path, conn: ConnInfo, role_vars: dict) -> subprocess.CompletedProcess:
    records = tmp_path / "runs"
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(
        json.dumps(
            {
                "db_host": conn.host,
                "db_port": conn.port,
                "db_name": conn.dbname,
                "db_user": conn.user,
                "db_password": conn.password,
                "tracehub_environment": "staging",
                "tracehub_records_dir": str(records),
                "validate_db_ssl_mode": "disable",
            }
            | role_vars
        )
    )
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- name: Validate\n  hosts: localhost\n  gather_facts: false\n  roles:\n    - role: tracehub.deploy.validate\n"
        "  post_tasks:\n    - name: Save the exposed fact\n      ansible.builtin.copy:\n"
        f"        dest: {tmp_path / 'result.json'}\n        mode: '0600'\n"
        "        content: '{{ validate_result | to_json }}'\n"
    )
    return subprocess.run(
        [
            str(PROJECT_DIR / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"@{vars_file}",
            "-e",
            "ansible_python_interpreter={{ ansible_playbook_python }}",
            str(playbook),
        ],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        check=False,
    )


def test_role_validate_at_head_passes_records_and_hides_password(head_db, tmp_path):
    proc = _playbook(tmp_path, head_db, {})

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "12 passed, 0 warnings, 0 failed" in proc.stdout
    assert json.loads((tmp_path / "result.json").read_text())["checks"]["summary"] == "12 passed, 0 warnings, 0 failed"
    assert head_db.password not in proc.stdout + proc.stderr
    records = list((tmp_path / "runs").glob("*.json"))
    assert len(records) == 1
    phase = json.loads(records[0].read_text())["phases"][-1]
    assert phase["phase"] == "validate" and phase["status"] == "ok"
    assert phase["data"]["summary"] == "12 passed, 0 warnings, 0 failed"
    assert head_db.password not in records[0].read_text()


def test_role_validate_failed_check_fails_play_names_check_and_records(head_db, tmp_path):
    execute(head_db, "DELETE FROM org_memberships WHERE user_id = (SELECT id FROM users ORDER BY email LIMIT 1)")

    proc = _playbook(tmp_path, head_db, {})

    assert proc.returncode != 0
    assert "11 passed, 0 warnings, 1 failed" in proc.stdout
    assert "Every VIBOTAJ user has a membership" in proc.stdout
    assert head_db.password not in proc.stdout + proc.stderr
    phase = json.loads(next((tmp_path / "runs").glob("*.json")).read_text())["phases"][-1]
    assert phase["status"] == "failed"
    assert phase["data"]["failed"] == 1


def test_role_validate_pre_migration_without_record_exposes_baseline(seeded_db, tmp_path):
    from tools.seed import planned_counts

    proc = _playbook(tmp_path, seeded_db, {"validate_suite": "pre_migration", "validate_record": False})

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed, 0 warnings, 0 failed" in proc.stdout
    assert not (tmp_path / "runs").exists()
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["checks"]["collected"]["baseline"] == planned_counts(1)
    assert result["changed"] is False


def test_role_validate_warns_at_005_and_fail_on_warn_fails(seeded_db, tmp_path):
    upgrade(seeded_db, "005")

    assert _playbook(tmp_path, seeded_db, {"validate_record": False}).returncode == 0
    proc = _playbook(tmp_path, seeded_db, {"validate_record": False, "validate_fail_on_warn": True})

    assert proc.returncode != 0
    assert "7 passed, 5 warnings, 0 failed" in proc.stdout


def test_module_suite_path_in_check_mode_runs_read_only_and_reports(head_db, tmp_path):
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps({"pw": head_db.password, "out": str(tmp_path / "out.json")}))
    playbook = tmp_path / "module.yml"
    playbook.write_text(
        f"""
- name: Module
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Run the pre_migration suite from a path
      tracehub.deploy.sql_check:
        login_host: {head_db.host}
        login_port: {head_db.port}
        login_user: {head_db.user}
        login_password: "{{{{ pw }}}}"
        login_db: {head_db.dbname}
        ssl_mode: disable
        suite_path: {SUITES / "pre_migration.yml"}
      register: result
      no_log: true
    - name: Save the result
      ansible.builtin.copy:
        dest: "{{{{ out }}}}"
        content: "{{{{ result | to_json }}}}"
        mode: "0600"
      check_mode: false
"""
    )

    proc = subprocess.run(
        [
            str(PROJECT_DIR / ".venv" / "bin" / "ansible-playbook"),
            "--check",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"@{vars_file}",
            "-e",
            "ansible_python_interpreter={{ ansible_playbook_python }}",
            str(playbook),
        ],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        check=False,
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["changed"] is False
    assert result["msg"] == "2 passed, 1 warnings, 0 failed"
    assert result["checks"]["collected"]["baseline"]["users"] == 45
    assert "SET TRANSACTION READ ONLY" in result["queries"]
    assert not any(head_db.password in q for q in result["queries"])
    assert head_db.password not in json.dumps(result)
