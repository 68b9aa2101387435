"""restore.py pure helpers and the refusals that need no server (fake run, manifests on disk)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ansible_collections.tracehub.deploy.plugins.module_utils import restore
from ansible_collections.tracehub.deploy.plugins.module_utils.errors import RestoreError
from ansible_collections.tracehub.deploy.plugins.module_utils.pg import ConnInfo
from ansible_collections.tracehub.deploy.plugins.module_utils.restore import RestoreRequest
from ansible_collections.tracehub.deploy.plugins.module_utils.runner import CommandResult

PASSWORD = "s3cr%t@pa:ss"
CONN = ConnInfo(host="db.example", port=5433, user="app", password=PASSWORD, dbname="tracehub")
NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
LISTING = (
    ";     Format: CUSTOM\n;\n3; 3079 16385 EXTENSION - pgcrypto\n4; 0 0 COMMENT - EXTENSION pgcrypto\n"
    "215; 1259 16386 TABLE public x app\n"
)


def fake_run(versions=("pg_restore (PostgreSQL) 15.4",), listing=LISTING):
    calls = []

    def run(argv, env):
        calls.append(list(argv))
        if argv[-1] == "--version":
            return CommandResult(tuple(argv), 0, versions[0], "")
        if "--list" in argv:
            return CommandResult(tuple(argv), 0, listing, "")
        return CommandResult(tuple(argv), 0, "", "")

    run.calls = calls
    return run


def write_backup(dest: Path, name="staging-tracehub-20250301T110000Z", **extra) -> dict:
    dump = dest / f"{name}.dump"
    dump.write_bytes(b"PGDMP" + b"\x01" * 100)
    import hashlib

    manifest = {
        "format_version": 1,
        "name": name,
        "environment": "staging",
        "database": "tracehub",
        "host": "db.example",
        "port": 5433,
        "created_at": "2025-03-01T11:00:00Z",
        "finished_at": "2025-03-01T11:01:00Z",
        "path": str(dump),
        "format": "custom",
        "size_bytes": dump.stat().st_size,
        "sha256": hashlib.sha256(dump.read_bytes()).hexdigest(),
        "server_version": "15.4",
        "pg_dump_version": "15.4",
        "alembic_revision": "002",
        "database_oid": 1,
        "row_counts": {"shipments": 3},
        "git_commit": None,
        "verified": True,
        "verification": {},
        "pre_migration": False,
    } | extra
    (dest / f"{name}.json").write_text(json.dumps(manifest))
    return manifest | {"manifest_path": str(dest / f"{name}.json")}


def request(tmp_path, **overrides) -> RestoreRequest:
    return replace(RestoreRequest(conn=CONN, backup_dir=tmp_path, environment="staging"), **overrides)


@pytest.mark.parametrize(
    ("text", "major"), [("15.4 (Debian 15.4-1)", 15), ("16.2", 16), ("9.6.24", 906), ("", None), ("x", None)]
)
def test_version_major_reads_texts(text, major):
    assert restore.version_major(text) == major


def test_archive_extensions_from_listing():
    assert restore.archive_extensions(LISTING) == ["pgcrypto"]


def test_old_database_name_dated_and_within_63_bytes():
    assert restore.old_database_name("tracehub", NOW) == "tracehub_old_20250301t120000"
    long = restore.old_database_name("x" * 80, NOW)
    assert len(long.encode()) <= 63 and long.endswith("_old_20250301t120000")


def test_marker_round_trip_and_other_comments_ignored():
    text = restore.marker_text({"name": "b", "sha256": "ab"}, NOW)
    assert restore.parse_marker(text) == {"backup": "b", "sha256": "ab", "restored_at": "2025-03-01T12:00:00Z"}
    assert restore.parse_marker("the app database") is None
    assert restore.parse_marker(None) is None


@pytest.mark.parametrize(
    ("environment", "confirm", "ok"),
    [
        ("staging", None, True),
        ("production", None, False),
        ("production", "other", False),
        ("production", "tracehub", True),
    ],
)
def test_confirmation_ok_only_when_confirm_names_the_database(tmp_path, environment, confirm, ok):
    assert restore.confirmation_ok(request(tmp_path, environment=environment, confirm=confirm)) is ok


@pytest.mark.parametrize(
    ("privileges", "source_env", "dropped"),
    [
        ("auto", "staging", False),
        ("auto", "production", True),
        ("keep", "production", False),
        ("drop", "staging", True),
    ],
)
def test_drop_privileges_auto_for_other_environment(tmp_path, privileges, source_env, dropped):
    assert restore.drop_privileges({"environment": source_env}, request(tmp_path, privileges=privileges)) is dropped


def test_restore_argv_owner_role_privileges_jobs_and_no_password():
    argv = restore.restore_argv("/bin/pg_restore", CONN, "scratch", Path("/b/x.dump"), 4, "staging_app", True)
    assert argv[:5] == ["/bin/pg_restore", "--no-owner", "--exit-on-error", "--role=staging_app", "--no-privileges"]
    assert "--jobs=4" in argv and "--dbname=scratch" in argv and argv[-1] == "/b/x.dump"
    assert PASSWORD not in " ".join(argv)
    plain = restore.restore_argv("/bin/pg_restore", CONN, "s", Path("/b/x.dump"), 1, "app", False)
    assert not [a for a in plain if a.startswith(("--role", "--jobs", "--no-privileges"))]


def test_select_backup_newest_verified_skips_safety_backups(tmp_path):
    write_backup(tmp_path, "staging-tracehub-20250301T100000Z", created_at="2025-03-01T10:00:00Z")
    write_backup(tmp_path, "staging-tracehub-20250301T110000Z-pre-restore-abc123", created_at="2025-03-01T11:00:00Z")
    write_backup(tmp_path, "staging-tracehub-20250301T120000Z", created_at="2025-03-01T12:00:00Z", verified=False)
    assert restore.select_backup(request(tmp_path))["name"] == "staging-tracehub-20250301T100000Z"
    named = restore.select_backup(request(tmp_path, name="staging-tracehub-20250301T110000Z-pre-restore-abc123"))
    assert named["name"].endswith("abc123")


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"name": "nope"}, "no backup named nope"),
        ({"name": "unverified"}, "not verified"),
        ({"source_environment": "production"}, "no verified backup of production/tracehub"),
    ],
)
def test_select_backup_refusals(tmp_path, overrides, match):
    write_backup(tmp_path, "unverified", verified=False)
    with pytest.raises(RestoreError, match=match):
        restore.select_backup(request(tmp_path, **overrides))


def test_check_backup_foreign_refused_unless_allowed(tmp_path):
    manifest = write_backup(tmp_path, environment="production")
    with pytest.raises(RestoreError, match="backup is of production/tracehub, the target is staging/tracehub"):
        restore.check_backup(manifest, request(tmp_path), fake_run(), 150004, [])
    _pg_restore, extensions = restore.check_backup(
        manifest, request(tmp_path, allow_foreign=True), fake_run(), 150004, []
    )
    assert extensions == ["pgcrypto"]


def test_check_backup_older_pg_restore_refused(tmp_path):
    manifest = write_backup(tmp_path, pg_dump_version="16.2")
    with pytest.raises(RestoreError, match=r"older than the pg_dump 16\.2"):
        restore.check_backup(manifest, request(tmp_path), fake_run(), 160002, [])


def test_check_backup_older_server_refused(tmp_path):
    manifest = write_backup(tmp_path, server_version="16.2", pg_dump_version="16.2")
    run = fake_run(versions=("pg_restore (PostgreSQL) 16.2",))
    with pytest.raises(RestoreError, match="target server is PostgreSQL 15, older than the dump's source"):
        restore.check_backup(manifest, request(tmp_path), run, 150004, [])


def test_check_backup_corrupted_refused_before_listing(tmp_path):
    manifest = write_backup(tmp_path)
    Path(manifest["path"]).write_bytes(b"PGDMP" + b"\x02" * 100)
    run = fake_run()
    with pytest.raises(RestoreError, match="checksum mismatch"):
        restore.check_backup(manifest, request(tmp_path), run, 150004, [])
    assert not [argv for argv in run.calls if "--list" in argv]


def test_check_backup_unreadable_archive_refused(tmp_path):
    manifest = write_backup(tmp_path)
    with pytest.raises(RestoreError, match="archive is unreadable"):
        restore.check_backup(manifest, request(tmp_path), fake_run(listing="garbage"), 150004, [])
