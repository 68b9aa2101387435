"""Real ansible-playbook runs of the phase playbooks against a real PostgreSQL seeded at 002."""

from __future__ import annotations

import json
import re

import pytest

from ansible_collections.tracehub.deploy.plugins.module_utils.pg import connect, operation_lock
from tests.integration.playbook_runs import run_playbook, staging_inventory
from tools.seed import TENANT_TABLES, seed


@pytest.fixture
def seeded_db(fresh_db):
    seed(fresh_db)
    return fresh_db


@pytest.fixture
def inventory(tmp_path, seeded_db):
    """An inventory shaped like staging/production with one db host pointing at the seeded database."""
    return staging_inventory(tmp_path, seeded_db)


def recap(output: str) -> dict[str, int]:
    """Totals of the PLAY RECAP lines (ok, changed, failed, ...) over every host."""
    totals: dict[str, int] = {}
    for line in output.split("PLAY RECAP", 1)[-1].splitlines():
        for key, value in re.findall(r"(\w+)=(\d+)", line):
            totals[key] = totals.get(key, 0) + int(value)
    return totals


def revision(conn) -> str | None:
    connection = connect(conn)
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT to_regclass('alembic_version') IS NOT NULL")
            if not cur.fetchone()[0]:
                return None
            cur.execute("SELECT version_num FROM alembic_version")
            row = cur.fetchone()
            return row[0] if row else None
    finally:
        connection.close()


def tenant_counts(conn) -> dict[str, int]:
    connection = connect(conn)
    try:
        with connection.cursor() as cur:
            counts = {}
            for table in TENANT_TABLES:
                cur.execute(f"SELECT count(*) FROM {table}")
                counts[table] = cur.fetchone()[0]
            return counts
    finally:
        connection.close()


def test_site_migrates_to_006_records_everything_then_changes_nothing(inventory, seeded_db, tmp_path):
    before = tenant_counts(seeded_db)
    first = run_playbook(inventory, "site.yml", "-e", "tracehub_run_id=first", "-vvvv")
    assert first.returncode == 0, first.stdout[-4000:]
    assert seeded_db.password not in first.stdout + first.stderr
    assert revision(seeded_db) == "006"
    assert tenant_counts(seeded_db) == before

    record = json.loads((tmp_path / "runs" / "first.json").read_text())
    assert [p["phase"] for p in record["phases"]] == ["backup", "migrate", "validate", "backup"]
    assert all(p["status"] == "ok" for p in record["phases"])
    assert record["git_commit"]
    assert seeded_db.password not in json.dumps(record)
    assert "12 passed, 0 warnings, 0 failed" in json.dumps(record["phases"][2]["data"])

    second = run_playbook(inventory, "site.yml", "-e", "tracehub_run_id=second")
    assert second.returncode == 0, second.stdout[-4000:]
    assert recap(second.stdout)["changed"] == 0, second.stdout[-6000:]


def test_site_check_mode_leaves_database_and_disk_untouched(inventory, seeded_db, tmp_path):
    completed = run_playbook(inventory, "site.yml", "--check", "-e", "tracehub_run_id=checked")
    assert completed.returncode == 0, completed.stdout[-4000:]
    assert revision(seeded_db) == "002"
    connection = connect(seeded_db)
    with connection.cursor() as cur:
        cur.execute("SELECT to_regclass('organizations')")
        assert cur.fetchone()[0] is None
    connection.close()
    assert not list((tmp_path / "backups").glob("**/*.dump")) if (tmp_path / "backups").exists() else True
    assert not (tmp_path / "runs" / "checked.json").exists()


def test_migrate_without_recent_backup_refuses_and_names_the_way_out(inventory, seeded_db):
    completed = run_playbook(inventory, "migrate.yml")
    assert completed.returncode != 0
    assert "backup.yml" in completed.stdout and "migrate_backup_waiver" in completed.stdout
    assert revision(seeded_db) == "002"


def test_backup_while_another_run_holds_the_lock_names_it(inventory, seeded_db):
    with operation_lock(seeded_db, "migrate"):
        completed = run_playbook(inventory, "backup.yml")
    assert completed.returncode != 0
    assert "tracehub.deploy migrate" in completed.stdout


def test_migrate_refuses_a_backup_damaged_since_it_was_verified(inventory, seeded_db, tmp_path):
    # Regression (fresh-eyes run): a truncated pre-migration dump still let the migration go ahead.
    backup = run_playbook(inventory, "backup.yml")
    assert backup.returncode == 0, backup.stdout[-4000:]
    (dump,) = (tmp_path / "backups").glob("*.dump")
    dump.write_bytes(b"")

    completed = run_playbook(inventory, "migrate.yml")

    assert completed.returncode != 0
    assert "DAMAGED" in completed.stdout and dump.stem in completed.stdout
    assert revision(seeded_db) == "002"
