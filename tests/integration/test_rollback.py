"""rollback.yml and restore.yml run by real ansible-playbook against a real PostgreSQL seeded at 002."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from psycopg2 import sql

from ansible_collections.tracehub.deploy.plugins.module_utils import alembic_ops, rollback
from ansible_collections.tracehub.deploy.plugins.module_utils.backup import BackupRequest, create
from ansible_collections.tracehub.deploy.plugins.module_utils.pg import connect
from ansible_collections.tracehub.deploy.plugins.module_utils.restore import OLD_INFIX
from ansible_collections.tracehub.deploy.plugins.module_utils.run_record import append_phase
from ansible_collections.tracehub.deploy.plugins.module_utils.runner import subprocess_runner
from tests.integration.playbook_runs import run_playbook, staging_inventory
from tools.localpg import find_bindir
from tools.seed import TENANT_TABLES, seed

PROJECT_DIR = Path(__file__).resolve().parents[2]
ALEMBIC_DIR = str(PROJECT_DIR / "alembic")


@pytest.fixture
def seeded_db(fresh_db, admin_conn):
    seed(fresh_db)
    yield fresh_db
    connection = connect(admin_conn)
    connection.autocommit = True
    with connection.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (fresh_db.dbname + OLD_INFIX,))
        for (name,) in cur.fetchall():
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    connection.close()


@pytest.fixture
def inventory(tmp_path, seeded_db):
    return staging_inventory(tmp_path, seeded_db)


def flat(result: subprocess.CompletedProcess[str]) -> str:
    """The output with every run of whitespace as one space (Ansible wraps long messages)."""
    return " ".join(result.stdout.split())


def state(conn) -> tuple[str | None, dict[str, int]]:
    connection = connect(conn)
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT version_num FROM alembic_version")
            revision = cur.fetchone()[0]
            counts = {}
            for table in TENANT_TABLES:
                cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
                counts[table] = cur.fetchone()[0]
        return revision, counts
    finally:
        connection.close()


def execute(conn, statement: str, params=()) -> None:
    connection = connect(conn)
    try:
        with connection.cursor() as cur:
            cur.execute(statement, params)
        connection.commit()
    finally:
        connection.close()


def migrate_like_site(conn, tmp_path: Path, environment: str = "staging") -> dict[str, int]:
    """What site.yml leaves behind: a verified pre-migration backup, 006, and the migrate phase's record."""
    revision, baseline = state(conn)
    manifest = create(
        BackupRequest(conn, tmp_path / "backups", environment, pre_migration=True, pg_bin_dir=find_bindir()),
        run=subprocess_runner,
    ).backup
    result = alembic_ops.migrate(conn, ALEMBIC_DIR, "006")
    append_phase(
        tmp_path / "runs",
        "site-run",
        {
            "phase": "migrate",
            "status": "ok",
            "environment": environment,
            "database": conn.dbname,
            "changed": True,
            "data": {
                "revision_before": revision,
                "revision_after": result.to_revision,
                "applied": [step.as_dict() for step in result.applied],
                "baseline_counts": baseline,
                "backup": manifest["name"],
                "check_mode": False,
            },
        },
        {},
    )
    return baseline


def phases(tmp_path: Path) -> list[dict]:
    found = []
    for path in sorted((tmp_path / "runs").glob("*.json")):
        found.extend(json.loads(path.read_text())["phases"])
    return found


def test_rollback_level_unknown_refused_naming_the_implemented_levels(inventory):
    result = run_playbook(inventory, "rollback.yml", "-e", "rollback_level=7")
    assert result.returncode != 0
    assert "got 7. Implemented levels: 1 = " in flat(result) and "3 = " in flat(result)
    empty = run_playbook(inventory, "rollback.yml", "-e", "rollback_level=")
    assert empty.returncode != 0
    assert "got nothing. Implemented levels: 1 = " in flat(empty)


def test_rollback_level1_after_site_returns_to_002_every_row_intact_then_unchanged(inventory, seeded_db, tmp_path):
    baseline = migrate_like_site(seeded_db, tmp_path)
    assert state(seeded_db)[0] == "006"

    check = run_playbook(inventory, "rollback.yml", "-e", "rollback_level=1", "--check")
    assert check.returncode == 0, check.stdout[-3000:]
    assert state(seeded_db)[0] == "006"
    assert "Would downgrade" in flat(check)

    result = run_playbook(
        inventory, "rollback.yml", "-e", "rollback_level=1", "-e", "rollback_reason=customers_report_errors"
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert state(seeded_db) == ("002", baseline)
    assert "revision before the migration (run record" in flat(result)
    assert "Reason given: customers_report_errors" in flat(result)
    assert "Level 1 is SAFE" in flat(result)
    record = [p for p in phases(tmp_path) if p["phase"] == "rollback_level_1"][-1]
    assert record["data"]["undone"] == ["006", "005", "004", "003"]
    assert record["data"]["revision_after"] == "002"

    again = run_playbook(inventory, "rollback.yml", "-e", "rollback_level=1")
    assert again.returncode == 0, again.stdout[-3000:]
    assert "changed=0" in again.stdout.split("PLAY RECAP", 1)[1]


def test_rollback_mistyped_matrix_reason_refused_before_anything_changes(inventory, seeded_db, tmp_path):
    migrate_like_site(seeded_db, tmp_path)
    before = state(seeded_db)

    result = run_playbook(inventory, "rollback.yml", "-e", "rollback_level=1", "-e", "rollback_reason=validation_error")

    assert result.returncode != 0
    assert "-e rollback_reason=validation_errors" in flat(result)
    assert "level 1 back to 004" in flat(result)
    assert state(seeded_db) == before


@pytest.mark.parametrize("revision", ["003", "004", "005", "006"])
def test_rollback_level1_single_step_from_each_revision_keeps_data(inventory, seeded_db, revision):
    _revision, baseline = state(seeded_db)
    alembic_ops.migrate(seeded_db, ALEMBIC_DIR, revision)
    previous = f"{int(revision) - 1:03d}"

    result = run_playbook(
        inventory, "rollback.yml", "-e", "rollback_level=1", "-e", f"rollback_target_revision={previous}"
    )

    assert result.returncode == 0, result.stdout[-3000:]
    assert state(seeded_db) == (previous, baseline)


def test_rollback_level1_refuses_losing_organizations_unless_accepted(inventory, seeded_db):
    alembic_ops.migrate(seeded_db, ALEMBIC_DIR, "006")
    execute(
        seeded_db,
        "INSERT INTO organizations (id, name, slug, type, country) "
        "VALUES ('00000000-0000-0000-0000-0000000000aa', 'Acme', 'acme', 'customer', 'DE')",
    )

    matrix = run_playbook(inventory, "rollback.yml", "-e", "rollback_level=1", "-e", "rollback_reason=005_failed")
    assert matrix.returncode == 0, matrix.stdout[-3000:]  # the matrix says 004 for 005_failed: lossless
    assert state(seeded_db)[0] == "004"
    assert "decision matrix: revision 005 failed" in flat(matrix)

    refused = run_playbook(inventory, "rollback.yml", "-e", "rollback_level=1", "-e", "rollback_target_revision=002")
    assert refused.returncode != 0
    assert "organizations created after the migration" in flat(refused)
    assert state(seeded_db)[0] == "004"

    accepted = run_playbook(
        inventory,
        "rollback.yml",
        "-e",
        "rollback_level=1",
        "-e",
        "rollback_target_revision=002",
        "-e",
        "rollback_accept_loss=true",
    )
    assert accepted.returncode == 0, accepted.stdout[-3000:]
    assert state(seeded_db)[0] == "002"


def test_rollback_level3_restores_pre_migration_backup_guarded_in_production(inventory, seeded_db, tmp_path):
    before = state(seeded_db)
    migrate_like_site(seeded_db, tmp_path, "production")
    execute(seeded_db, "DELETE FROM audit_logs WHERE ctid IN (SELECT ctid FROM audit_logs LIMIT 5)")

    def level3_in_production(*extra: str):
        return run_playbook(
            inventory, "rollback.yml", "-e", "rollback_level=3", "-e", "tracehub_environment=production", *extra
        )

    check = level3_in_production("--check")
    refused = level3_in_production()
    mistyped = level3_in_production("-e", f"restore_confirm={seeded_db.dbname.upper()}")
    assert check.returncode == 0, check.stdout[-3000:]
    assert "Would restore" in flat(check)
    assert "check mode, nothing changed; still at revision 006" in flat(check)
    assert "It would be REFUSED" in flat(check) and "Rows now" not in flat(check)
    assert refused.returncode != 0
    assert f"-e restore_confirm={seeded_db.dbname}" in flat(refused)
    assert mistyped.returncode != 0
    assert f"-e restore_confirm={seeded_db.dbname.upper()} does not name it." in flat(mistyped)
    assert state(seeded_db)[0] == "006"

    result = level3_in_production("-e", f"restore_confirm={seeded_db.dbname}")

    assert result.returncode == 0, result.stdout[-3000:]
    assert state(seeded_db) == before
    assert "Restored production/" in flat(result)
    record = [p for p in phases(tmp_path) if p["phase"] == "rollback_level_3"][-1]
    assert record["status"] == "ok" and record["data"]["backup"]["pre_migration"] is True
    assert record["data"]["safety_backup"]["name"]


def test_restore_playbook_restores_newest_verified_backup(inventory, seeded_db):
    before = state(seeded_db)
    backup = run_playbook(inventory, "backup.yml")
    assert backup.returncode == 0, backup.stdout[-3000:]
    execute(seeded_db, "DELETE FROM notifications")

    result = run_playbook(inventory, "restore.yml")

    assert result.returncode == 0, result.stdout[-3000:]
    assert state(seeded_db) == before


def test_rollback_assessment_level2_unsafe_once_the_contract_step_ran(seeded_db, tmp_path):
    # Blue (v1.2) inserts without organization_id: at 006 the VIBOTAJ default fills it, after the contract step
    # nothing does, and switching traffic back to blue would make its inserts fail.
    assert rollback.assess(seeded_db, "staging", None, None)["level2"]["safe"] is True  # 002: the column is absent
    alembic_ops.migrate(seeded_db, ALEMBIC_DIR, "006")
    at_head = rollback.assess(seeded_db, "staging", None, None)
    alembic_ops.contract(seeded_db, ALEMBIC_DIR)
    contracted = rollback.assess(seeded_db, "staging", None, None)

    assert at_head["level2"] == {"safe": True, "tables_refusing_legacy_inserts": []}
    assert any(line.startswith("Level 2 changes no data") for line in at_head["advice"])
    assert contracted["level2"]["safe"] is False
    assert contracted["level2"]["tables_refusing_legacy_inserts"] == sorted(TENANT_TABLES)
    assert any(line.startswith("Level 2 is NOT SAFE") for line in contracted["advice"])


def test_rollback_level2_prints_the_assessment_before_switching(inventory):
    # Without load balancer hosts the switch play matches nothing; the assessment runs on the database first.
    result = run_playbook(inventory, "rollback.yml", "-e", "rollback_level=2")
    out = flat(result)
    assert result.returncode == 0, out
    assert "Decision matrix:" in out and "Level 2 changes no data" in out
    # The plays of the other levels select no host quietly; only the absent lb group is warned about.
    unmatched = [line for line in result.stderr.splitlines() if "Could not match supplied host pattern" in line]
    assert unmatched and all(line.rstrip().endswith("ignoring: lb") for line in unmatched), result.stderr


def test_rollback_level2_refused_once_contracted_unless_accepted(inventory, seeded_db):
    alembic_ops.migrate(seeded_db, ALEMBIC_DIR, "006")
    alembic_ops.contract(seeded_db, ALEMBIC_DIR)

    refused = run_playbook(inventory, "rollback.yml", "-e", "rollback_level=2")
    accepted = run_playbook(
        inventory, "rollback.yml", "-e", "rollback_level=2", "-e", "rollback_accept_failing_writes=true"
    )

    out = flat(refused)
    assert refused.returncode != 0
    assert "Refusing rollback level 2" in out and "rollback_accept_failing_writes=true" in out
    assert "shipments" in out  # names the tables whose inserts would fail
    assert accepted.returncode == 0, flat(accepted)
    assert "Level 2 is NOT SAFE" in flat(accepted)
