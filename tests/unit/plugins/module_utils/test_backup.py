"""backup.py with a fake ``run`` and a fake database: every failure path, no server needed."""

from __future__ import annotations

import contextlib
import hashlib
import json
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ansible_collections.tracehub.deploy.plugins.module_utils import backup
from ansible_collections.tracehub.deploy.plugins.module_utils.backup import (
    MANIFEST_KEYS,
    BackupRequest,
    ServerFacts,
    SnapshotFacts,
    create,
    default_name,
    list_backups,
    major_from_version_num,
    major_from_version_output,
    parse_duration,
    select_backups,
    sha256_path,
    verify_existing,
)
from ansible_collections.tracehub.deploy.plugins.module_utils.errors import BackupError, LockHeldError
from ansible_collections.tracehub.deploy.plugins.module_utils.pg import ConnInfo
from ansible_collections.tracehub.deploy.plugins.module_utils.runner import CommandResult

PASSWORD = "s3cr%t@pa:ss"
CONN = ConnInfo(host="db.example", port=5433, user="app", password=PASSWORD, dbname="tracehub")
NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
COUNTS = {"alembic_version": 1, "shipments": 25}
DUMP_BYTES = b"PGDMP" + b"\x01" * 2048
LISTING = ";\n; Archive created at 2025-03-01 12:00:00 UTC\n;     Format: CUSTOM\n;\n215; 1259 16386 TABLE public x\n"


class FakeDatabase:
    """Records what the library asked of the server."""

    def __init__(
        self, version_num=150004, version="15.4", revision="002", counts=None, restored=None, lock_error=None, oid=16384
    ):
        self.counts = dict(COUNTS if counts is None else counts)
        self.facts = ServerFacts(version_num, version, revision, oid)
        self.restored = restored
        self.lock_error = lock_error
        self.calls: list[tuple[str, ...]] = []
        self.scratch: set[str] = set()

    @contextlib.contextmanager
    def lock(self, operation):
        self.calls.append(("lock", operation))
        if self.lock_error is not None:
            raise self.lock_error
        yield None
        self.calls.append(("unlock",))

    def probe(self):
        self.calls.append(("probe",))
        return self.facts

    @contextlib.contextmanager
    def snapshot(self, export):
        self.calls.append(("snapshot", str(export)))
        yield SnapshotFacts("00000003-0000001B-1" if export else None, self.facts.alembic_revision, dict(self.counts))

    def create_scratch(self, name):
        self.calls.append(("create_scratch", name))
        self.scratch.add(name)

    def drop_scratch(self, name):
        self.calls.append(("drop_scratch", name))
        self.scratch.discard(name)

    def idle_databases(self, prefix):
        return sorted(name for name in self.scratch if name.startswith(prefix))

    def row_counts(self, dbname):
        self.calls.append(("row_counts", dbname))
        return dict(self.counts if self.restored is None else self.restored)


class FakeRun:
    """pg_dump / pg_restore stand-in; each behaviour can be overridden per test."""

    def __init__(self, dump_version="15.4", restore_version="15.4"):
        self.dump_version = dump_version
        self.restore_version = restore_version
        self.dump = (0, "", DUMP_BYTES)  # rc, stderr, bytes written
        self.listing = (0, LISTING, "")
        self.restore = (0, "")
        self.calls: list[list[str]] = []
        self.envs: list[dict[str, str]] = []
        self.passfile_contents: list[str] = []
        self.raise_on: str | None = None

    def __call__(self, argv, extra_env):
        argv = list(argv)
        self.calls.append(argv)
        self.envs.append(dict(extra_env))
        if "PGPASSFILE" in extra_env:
            self.passfile_contents.append(Path(extra_env["PGPASSFILE"]).read_text())
        tool = Path(argv[0]).name
        if self.raise_on and self.raise_on in argv:
            raise FileNotFoundError(2, "No such file or directory")
        if "--version" in argv:
            version = self.dump_version if tool == "pg_dump" else self.restore_version
            return CommandResult(tuple(argv), 0, f"{tool} (PostgreSQL) {version}\n", "")
        if tool == "pg_dump":
            rc, err, data = self.dump
            target = next(a.split("=", 1)[1] for a in argv if a.startswith("--file="))
            with open(target, "wb") as handle:  # like pg_dump: opens the existing file for writing
                handle.write(data)
            return CommandResult(tuple(argv), rc, "", err)
        if "--list" in argv:
            rc, out, err = self.listing
            return CommandResult(tuple(argv), rc, out, err)
        rc, err = self.restore
        return CommandResult(tuple(argv), rc, "", err)

    def ran(self, flag: str) -> bool:
        return any(flag in argv for argv in self.calls)


@pytest.fixture
def bin_dir(tmp_path):
    directory = tmp_path / "bin"
    directory.mkdir()
    for tool in ("pg_dump", "pg_restore"):
        path = directory / tool
        path.write_text("#!/bin/sh\nexit 1\n")
        path.chmod(0o755)
    return directory


@pytest.fixture
def dest(tmp_path):
    return tmp_path / "backups"


def _request(dest, bin_dir, **overrides):
    base = BackupRequest(conn=CONN, dest=dest, environment="staging", pg_bin_dir=bin_dir)
    return replace(base, **overrides)


def _create(request, run=None, db=None, **kwargs):
    return create(
        request,
        run=run or FakeRun(),
        db=db or FakeDatabase(),
        clock=kwargs.pop("clock", lambda: NOW),
        token=lambda: "abc123",
        **kwargs,
    )


def _files(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


# --- success ---


def test_create_success_writes_dump_and_manifest_privately(dest, bin_dir):
    db = FakeDatabase()
    result = _create(_request(dest, bin_dir, git_commit="f00d", pre_migration=True), db=db)

    name = "staging-tracehub-20250301T120000Z"
    assert result.changed is True
    assert _files(dest) == [f"{name}.dump", f"{name}.json"]
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    assert stat.S_IMODE((dest / f"{name}.dump").stat().st_mode) == 0o600
    assert stat.S_IMODE((dest / f"{name}.json").stat().st_mode) == 0o600
    manifest = json.loads((dest / f"{name}.json").read_text())
    assert list(manifest) == list(MANIFEST_KEYS)
    assert manifest["sha256"] == hashlib.sha256(DUMP_BYTES).hexdigest()
    assert manifest["size_bytes"] == len(DUMP_BYTES)
    assert manifest["created_at"] == "2025-03-01T12:00:00Z"
    assert manifest["verified"] is True and manifest["pre_migration"] is True and manifest["git_commit"] == "f00d"
    assert manifest["verification"] == {
        "list_ok": True,
        "restore_ok": True,
        "restored_row_counts_match": True,
        "verified_at": "2025-03-01T12:00:00Z",
    }
    assert result.backup["manifest_path"] == str((dest / f"{name}.json").absolute())
    assert ("lock", "back up") in db.calls and db.calls[-1] == ("unlock",)
    assert db.scratch == set()


def test_create_dump_uses_exported_snapshot_and_custom_format(dest, bin_dir):
    run = FakeRun()
    _create(_request(dest, bin_dir), run=run)
    dump = next(argv for argv in run.calls if "--format=custom" in argv)
    assert "--snapshot=00000003-0000001B-1" in dump
    assert any(a.endswith(".dump.partial") for a in dump)
    restore = next(argv for argv in run.calls if "--exit-on-error" in argv)
    assert "--no-owner" in restore and "--dbname=tracehub_verify_16384_abc123" in restore


def test_create_password_only_through_pgpass_never_in_commands_or_result(dest, bin_dir):
    run = FakeRun()
    result = _create(_request(dest, bin_dir), run=run)

    assert all(PASSWORD not in part for argv in run.calls for part in argv)
    assert all(PASSWORD not in value for env in run.envs for value in env.values())
    assert PASSWORD not in json.dumps(result.as_dict())
    # pg_dump, the listing and the restore all got the password file, and it held the password.
    assert len(run.passfile_contents) == 3
    assert all("s3cr%t@pa\\:ss" in text for text in run.passfile_contents)
    assert not Path(run.envs[-1]["PGPASSFILE"]).exists()


def test_create_verify_list_is_not_marked_verified(dest, bin_dir):
    db = FakeDatabase()
    result = _create(_request(dest, bin_dir, verify="list"), db=db)
    assert result.backup["verification"]["list_ok"] is True
    assert result.backup["verification"]["restore_ok"] is None
    assert result.backup["verified"] is False
    assert not any(call[0] == "create_scratch" for call in db.calls)


def test_create_verify_none_runs_no_pg_restore(dest, bin_dir):
    run = FakeRun()
    result = _create(_request(dest, bin_dir, verify="none"), run=run)
    assert not any(Path(argv[0]).name == "pg_restore" for argv in run.calls)
    assert result.backup["verified"] is False


# --- refused before dumping ---


def test_create_old_pg_dump_refused_before_dumping_with_fix(dest, bin_dir):
    run = FakeRun(dump_version="15.4")
    db = FakeDatabase(version_num=160002, version="16.2")

    with pytest.raises(BackupError) as caught:
        _create(_request(dest, bin_dir), run=run, db=db)

    assert "postgresql-client-16" in caught.value.msg
    assert "pg_bin_dir" in caught.value.msg
    assert caught.value.details["pg_dump_version"] == "15.4"
    assert not run.ran("--format=custom")
    assert not dest.exists()


def test_create_newer_pg_dump_accepted(dest, bin_dir):
    run = FakeRun(dump_version="16.2", restore_version="16.2")
    assert _create(_request(dest, bin_dir), run=run).changed is True


def test_create_old_pg_restore_refused_before_dumping(dest, bin_dir):
    run = FakeRun(dump_version="16.2", restore_version="15.4")
    with pytest.raises(BackupError, match=r"pg_restore .* older than pg_dump"):
        _create(_request(dest, bin_dir), run=run)
    assert not run.ran("--format=custom")


def test_create_missing_tool_in_pg_bin_dir_names_it(dest, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BackupError, match="pg_dump not found in pg_bin_dir"):
        _create(_request(dest, empty))


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "", "x y"])
def test_create_unsafe_name_refused(dest, bin_dir, name):
    with pytest.raises(BackupError, match="Invalid backup name"):
        _create(_request(dest, bin_dir, name=name))


def test_create_lock_held_propagates_and_writes_nothing(dest, bin_dir):
    db = FakeDatabase(lock_error=LockHeldError("Cannot back up x: held by tracehub.deploy migrate (pid 7)"))
    run = FakeRun()
    with pytest.raises(LockHeldError, match=r"tracehub\.deploy migrate"):
        _create(_request(dest, bin_dir), run=run, db=db)
    assert run.calls == []
    assert not dest.exists()


# --- failures after the dump started: nothing that looks valid stays ---


def test_create_pg_dump_nonzero_exit_fails_and_removes_partial(dest, bin_dir):
    run = FakeRun()
    run.dump = (1, "pg_dump: error: query failed: ERROR:  permission denied for table x\n", b"PGDMP half")

    with pytest.raises(BackupError, match="permission denied") as caught:
        _create(_request(dest, bin_dir), run=run)

    assert caught.value.details["rc"] == 1
    assert _files(dest) == []


def test_create_pg_dump_error_on_stderr_with_exit_zero_fails(dest, bin_dir):
    run = FakeRun()
    run.dump = (0, "pg_dump: error: Dumping the contents of table x failed\n", DUMP_BYTES)

    with pytest.raises(BackupError, match="exit code 0, but errors were reported"):
        _create(_request(dest, bin_dir), run=run)
    assert _files(dest) == []
    assert not run.ran("--list")


def test_create_pg_dump_cannot_start_fails_cleanly(dest, bin_dir):
    run = FakeRun()
    run.raise_on = "--format=custom"
    with pytest.raises(BackupError, match="cannot run"):
        _create(_request(dest, bin_dir), run=run)
    assert _files(dest) == []


def test_create_empty_dump_fails(dest, bin_dir):
    run = FakeRun()
    run.dump = (0, "", b"")
    with pytest.raises(BackupError, match="empty file"):
        _create(_request(dest, bin_dir), run=run)
    assert _files(dest) == []


@pytest.mark.parametrize(
    ("listing", "match"),
    [
        ((0, "garbage\n", ""), "cannot read"),
        ((1, "", "pg_restore: error: could not read from input file: end of file\n"), "end of file"),
        ((0, LISTING, "pg_restore: error: unsupported version (1.16) in file header\n"), "unsupported version"),
    ],
)
def test_create_unreadable_archive_fails_and_removes_partial(dest, bin_dir, listing, match):
    run = FakeRun()
    run.listing = listing
    db = FakeDatabase()
    with pytest.raises(BackupError, match=match):
        _create(_request(dest, bin_dir), run=run, db=db)
    assert _files(dest) == []
    assert not any(call[0] == "create_scratch" for call in db.calls)


@pytest.mark.parametrize(
    "restore",
    [
        (1, "pg_restore: error: could not execute query: ERROR:  relation exists\n"),
        (0, "pg_restore: warning: errors ignored on restore: 3\n"),
    ],
)
def test_create_restore_error_fails_and_drops_scratch(dest, bin_dir, restore):
    run = FakeRun()
    run.restore = restore
    db = FakeDatabase()

    with pytest.raises(BackupError, match="Test restore"):
        _create(_request(dest, bin_dir), run=run, db=db)

    assert ("create_scratch", "tracehub_verify_16384_abc123") in db.calls
    assert ("drop_scratch", "tracehub_verify_16384_abc123") in db.calls
    assert db.scratch == set()
    assert _files(dest) == []


def test_create_restored_counts_differ_fails_naming_tables(dest, bin_dir):
    db = FakeDatabase(restored={"alembic_version": 1, "shipments": 24})
    with pytest.raises(BackupError, match="row counts differ in shipments") as caught:
        _create(_request(dest, bin_dir), db=db)
    assert caught.value.details["row_count_differences"] == {"shipments": {"expected": 25, "restored": 24}}
    assert db.scratch == set()
    assert _files(dest) == []


def test_create_scratch_drop_failure_after_success_is_a_warning(dest, bin_dir):
    class Undroppable(FakeDatabase):
        def drop_scratch(self, name):
            raise BackupError(f"Dropping the scratch database {name} failed: boom. Drop it by hand.")

    result = _create(_request(dest, bin_dir), db=Undroppable())
    assert result.changed is True
    assert any("Drop it by hand" in w for w in result.warnings)


def test_create_manifest_write_failure_removes_renamed_dump(dest, bin_dir, monkeypatch):
    def broken(path, manifest):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(backup, "write_manifest", broken)
    with pytest.raises(BackupError, match="No space left on device"):
        _create(_request(dest, bin_dir))
    assert _files(dest) == []


def test_create_stale_partial_from_killed_run_is_replaced(dest, bin_dir):
    dest.mkdir(mode=0o700)
    stale = dest / "nightly.dump.partial"
    stale.write_bytes(b"half of something")
    result = _create(_request(dest, bin_dir, name="nightly"))
    assert result.backup["sha256"] == hashlib.sha256(DUMP_BYTES).hexdigest()
    assert _files(dest) == ["nightly.dump", "nightly.json"]


def test_create_existing_dir_with_loose_mode_is_tightened(dest, bin_dir):
    dest.mkdir(mode=0o755)
    dest.chmod(0o755)
    _create(_request(dest, bin_dir))
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700


# --- check mode ---


def test_create_check_mode_writes_nothing_and_predicts(dest, bin_dir):
    run = FakeRun()
    db = FakeDatabase()

    result = _create(_request(dest, bin_dir), run=run, db=db, dry_run=True)

    assert result.changed is True
    assert not dest.exists()
    assert not run.ran("--format=custom") and not run.ran("--list")
    assert [call[0] for call in db.calls] == ["probe", "snapshot"]
    assert ("snapshot", "False") in db.calls
    assert result.backup["path"].endswith("staging-tracehub-20250301T120000Z.dump")
    assert result.backup["row_counts"] == COUNTS
    assert result.backup["sha256"] is None
    planned = [argv for argv in result.commands if "--format=custom" in argv or "--list" in argv]
    assert len(planned) == 2
    assert "Would back up" in result.msg


def test_create_check_mode_old_pg_dump_still_refused(dest, bin_dir):
    with pytest.raises(BackupError, match="postgresql-client-16"):
        _create(_request(dest, bin_dir), db=FakeDatabase(version_num=160002), dry_run=True)


def test_create_unreadable_tables_refused_before_dumping(dest, bin_dir):
    db = FakeDatabase()
    db.facts = replace(db.facts, unreadable_tables=("public.secrets", "audit.trail"))
    run = FakeRun()
    with pytest.raises(
        BackupError,
        match=r"refused before dumping: .*'app' has no SELECT privilege on public\.secrets, "
        r"audit\.trail.*GRANT SELECT",
    ) as caught:
        _create(_request(dest, bin_dir), run=run, db=db)
    assert caught.value.details["unreadable_tables"] == ["public.secrets", "audit.trail"]
    assert not run.ran("--format=custom")
    assert _files(dest) == []


def test_create_backup_dir_that_cannot_be_made_names_cause_and_fix(tmp_path, bin_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(
        BackupError,
        match=r"Preparing the backup directory .*a-file/backups failed: Not a directory\. "
        r"Give a directory that this user can create and write.*tracehub_backup_dir",
    ):
        _create(_request(blocker / "backups", bin_dir))


# --- reuse (idempotency) ---


def test_create_reuses_verified_backup_within_max_age_same_revision(dest, bin_dir):
    first = _create(_request(dest, bin_dir))
    run = FakeRun()
    later = NOW + timedelta(minutes=10)

    second = _create(_request(dest, bin_dir, max_age=3600), run=run, clock=lambda: later)

    assert second.changed is False
    assert second.backup["name"] == first.backup["name"]
    assert not run.ran("--format=custom")
    assert len(_files(dest)) == 2


@pytest.mark.parametrize(
    ("overrides", "db_kwargs", "minutes_later"),
    [
        ({"max_age": 3600}, {"revision": "003"}, 10),  # another revision
        # Regression: `make demo-reset` dropped and re-seeded the database, and the old backup was reused.
        ({"max_age": 3600}, {"oid": 99999}, 10),  # the database was recreated since
        ({"max_age": 3600}, {"counts": {"alembic_version": 1, "shipments": 26}}, 10),  # the data moved on
        ({"max_age": 300}, {}, 10),  # too old
        ({"max_age": 3600, "force": True}, {}, 10),  # forced
        ({}, {}, 10),  # no max_age: a new one each run
    ],
)
def test_create_no_reuse_takes_new_backup(dest, bin_dir, overrides, db_kwargs, minutes_later):
    _create(_request(dest, bin_dir))
    later = NOW + timedelta(minutes=minutes_later)
    result = _create(_request(dest, bin_dir, **overrides), db=FakeDatabase(**db_kwargs), clock=lambda: later)
    assert result.changed is True
    assert len(_files(dest)) == 4


@pytest.mark.parametrize(
    "overrides",
    [{}, {"force": True, "max_age": 3600}, {"max_age": 3600}],
    ids=["no max_age", "forced", "no candidate"],
)
def test_create_without_reuse_candidate_counts_live_rows_only_in_the_snapshot(dest, bin_dir, overrides):
    # Counting every table of the live database costs a good part of a dump: only a reuse candidate needs it.
    db = FakeDatabase()
    result = _create(_request(dest, bin_dir, **overrides), db=db)
    assert result.changed is True
    assert ("row_counts", CONN.dbname) not in db.calls


def test_create_counts_live_rows_once_for_several_candidates(dest, bin_dir):
    _create(_request(dest, bin_dir, name="first"))
    _create(_request(dest, bin_dir, name="second"), clock=lambda: NOW + timedelta(minutes=1))
    db = FakeDatabase(counts={"alembic_version": 1, "shipments": 26})  # the data moved on: neither is reused
    result = _create(_request(dest, bin_dir, max_age=3600), db=db, clock=lambda: NOW + timedelta(minutes=2))
    assert result.changed is True
    assert db.calls.count(("row_counts", CONN.dbname)) == 1


def test_create_corrupted_recent_backup_not_reused(dest, bin_dir):
    first = _create(_request(dest, bin_dir))
    Path(first.backup["path"]).write_bytes(b"PGDMP" + b"\x02" * 2048)
    later = NOW + timedelta(minutes=1)
    result = _create(_request(dest, bin_dir, max_age=3600), clock=lambda: later)
    assert result.changed is True


def test_create_unverified_backup_not_reused(dest, bin_dir):
    _create(_request(dest, bin_dir, verify="list"))
    later = NOW + timedelta(minutes=1)
    assert _create(_request(dest, bin_dir, max_age=3600), clock=lambda: later).changed is True


def test_create_named_existing_verified_backup_unchanged(dest, bin_dir):
    _create(_request(dest, bin_dir, name="pre-003"))
    run = FakeRun()
    again = _create(_request(dest, bin_dir, name="pre-003"), run=run)
    assert again.changed is False
    assert not run.ran("--format=custom")


def test_create_named_existing_unverified_backup_refused_without_force(dest, bin_dir):
    _create(_request(dest, bin_dir, name="pre-003", verify="none"))
    with pytest.raises(BackupError, match=r"not verified.*force"):
        _create(_request(dest, bin_dir, name="pre-003"))
    assert _create(_request(dest, bin_dir, name="pre-003", force=True)).backup["verified"] is True


# --- listing and re-checking ---


def test_list_backups_newest_first_filters_and_skips_unreadable(dest, bin_dir):
    for minutes, env in ((0, "staging"), (5, "production"), (10, "staging")):
        moment = NOW + timedelta(minutes=minutes)
        _create(_request(dest, bin_dir, environment=env), clock=lambda m=moment: m)
    (dest / "notes.json").write_text("{not json")
    (dest / "other.json").write_text(json.dumps({"hello": 1}))

    listing = list_backups(dest, environment="staging", database="tracehub")

    assert [m["created_at"] for m in listing.backups] == ["2025-03-01T12:10:00Z", "2025-03-01T12:00:00Z"]
    reasons = {Path(s["path"]).name: s["reason"] for s in listing.unreadable}
    assert "not a readable JSON manifest" in reasons["notes.json"]
    assert "missing format_version" in reasons["other.json"]
    assert len(list_backups(dest).backups) == 3
    assert list_backups(dest, database="other").backups == []


def test_select_backups_filters_verified_and_age(dest, bin_dir):
    _create(_request(dest, bin_dir, name="old"), clock=lambda: NOW - timedelta(hours=2))
    _create(_request(dest, bin_dir, name="listed", verify="list"), clock=lambda: NOW - timedelta(minutes=5))
    _create(_request(dest, bin_dir, name="fresh"), clock=lambda: NOW - timedelta(minutes=10))
    backups = list_backups(dest).backups

    assert [b["name"] for b in select_backups(backups, NOW)] == ["listed", "fresh", "old"]
    assert [b["name"] for b in select_backups(backups, NOW, verified_only=True)] == ["fresh", "old"]
    chosen = select_backups(backups, NOW, verified_only=True, max_age=3600)
    assert [(b["name"], b["age_seconds"]) for b in chosen] == [("fresh", 600)]


def test_list_backups_missing_dir_is_empty(tmp_path):
    listing = list_backups(tmp_path / "nope")
    assert listing.backups == [] and listing.unreadable == []


def test_verify_existing_detects_flipped_byte_and_truncation(dest, bin_dir):
    manifest = _create(_request(dest, bin_dir)).backup
    assert verify_existing(manifest).ok is True
    dump = Path(manifest["path"])

    dump.write_bytes(b"PGDMX" + DUMP_BYTES[5:])
    flipped = verify_existing(manifest)
    assert flipped.ok is False and "checksum mismatch" in flipped.reason

    dump.write_bytes(DUMP_BYTES[:100])
    truncated = verify_existing(manifest)
    assert truncated.ok is False and "size mismatch" in truncated.reason

    dump.unlink()
    assert "cannot read" in verify_existing(manifest).reason


def test_verify_existing_runs_listing_when_checksum_ok(dest, bin_dir):
    manifest = _create(_request(dest, bin_dir)).backup
    run = FakeRun()
    run.listing = (1, "", "pg_restore: error: did not find magic string in file header\n")
    report = verify_existing(manifest, run=run, pg_bin_dir=bin_dir)
    assert report.sha256_ok is True and report.list_ok is False and report.ok is False
    assert "magic string" in report.reason


# --- small helpers ---


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, None), ("", None), (900, 900), ("900", 900), ("15m", 900), ("1h", 3600), ("1h30m", 5400), ("2d", 172800)],
)
def test_parse_duration_accepts_seconds_and_units(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "1x", "-5", "5m later", True])
def test_parse_duration_rejects_nonsense(value):
    with pytest.raises(BackupError, match="max_age"):
        parse_duration(value)


@pytest.mark.parametrize(("num", "major"), [(150004, 15), (160002, 16), (100023, 10), (90624, 906)])
def test_major_from_version_num(num, major):
    assert major_from_version_num(num) == major


@pytest.mark.parametrize(
    ("text", "major"),
    [
        ("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n", 15),
        ("pg_dump (PostgreSQL) 16.2\n", 16),
        ("pg_dump (PostgreSQL) 9.6.24\n", 906),
        ("pg_dump (PostgreSQL) 17beta1\n", 17),
    ],
)
def test_major_from_version_output(text, major):
    assert major_from_version_output(text)[0] == major


def test_major_from_version_output_garbage_fails():
    with pytest.raises(BackupError, match="Cannot read the version"):
        major_from_version_output("command not found")


def test_default_name_is_safe_and_utc():
    moment = datetime(2025, 3, 1, 13, 0, 0, tzinfo=UTC)
    assert default_name("staging", "trace hub/x", moment) == "staging-trace_hub_x-20250301T130000Z"


def test_create_sweeps_leftovers_of_an_interrupted_backup(dest, bin_dir):
    # Regression (fresh-eyes run): a backup killed during its test restore left a 38 MB .partial and a
    # scratch database holding a full copy of production; the next run neither mentioned nor removed them.
    dest.mkdir(mode=0o700, exist_ok=True)
    stale = dest / "staging-tracehub-20250301T110000Z.dump.partial"
    stale.write_bytes(b"PGDMP half")
    other_env = dest / "production-tracehub-20250301T110000Z.dump.partial"
    other_env.write_bytes(b"PGDMP other")
    db = FakeDatabase()
    db.scratch |= {"tracehub_verify_16384_dead", "tracehub_verify_99999_other_source"}

    result = _create(_request(dest, bin_dir), db=db)

    assert not stale.exists() and other_env.exists()
    assert "tracehub_verify_16384_dead" not in db.scratch
    assert "tracehub_verify_99999_other_source" in db.scratch
    assert any("interrupted backup" in w and stale.name in w for w in result.warnings)
    assert any("tracehub_verify_16384_dead" in w for w in result.warnings)


def _directory_digest_by_hand(root: Path) -> str:
    lines = "".join(
        f"{member.relative_to(root).as_posix()} {hashlib.sha256(member.read_bytes()).hexdigest()}\n"
        for member in sorted(p for p in root.rglob("*") if p.is_file())
    )
    return hashlib.sha256(lines.encode()).hexdigest()


@pytest.mark.parametrize(
    "order", [["toc.dat", "3001.dat.gz", "3002.dat.gz"], ["3002.dat.gz", "toc.dat", "3001.dat.gz"]]
)
def test_sha256_path_directory_digest_is_the_sorted_file_list_whatever_the_write_order(tmp_path, order):
    root = tmp_path / "dump.dir"
    root.mkdir()
    for name in order:
        (root / name).write_bytes(name.encode() * (1000 + 300_000 * (name != "toc.dat")))
    digest, size = sha256_path(root)
    assert digest == _directory_digest_by_hand(root)
    assert size == sum(p.stat().st_size for p in root.iterdir())


def test_sha256_path_empty_directory_hashes_nothing(tmp_path):
    assert sha256_path(tmp_path) == (hashlib.sha256(b"").hexdigest(), 0)
