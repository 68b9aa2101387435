"""retention.py: what each rule keeps, and that deleting removes exactly the rest."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ansible_collections.tracehub.deploy.plugins.module_utils import backup
from ansible_collections.tracehub.deploy.plugins.module_utils.errors import BackupError
from ansible_collections.tracehub.deploy.plugins.module_utils.retention import RetentionPolicy, apply, plan

NOW = datetime(2025, 3, 31, 12, 0, 0, tzinfo=UTC)


def manifest(name, days_old, verified=True, pre_migration=False, environment="staging", database="tracehub", **extra):
    created = NOW - timedelta(days=days_old)
    return {
        "format_version": 1,
        "name": name,
        "environment": environment,
        "database": database,
        "host": "db",
        "port": 5432,
        "created_at": backup.format_time(created),
        "finished_at": backup.format_time(created),
        "path": f"/b/{name}.dump",
        "format": "custom",
        "size_bytes": 10,
        "sha256": "0" * 64,
        "server_version": "15.4",
        "pg_dump_version": "15.4",
        "alembic_revision": "002",
        "database_oid": 1,
        "row_counts": {},
        "git_commit": None,
        "verified": verified,
        "verification": {},
        "pre_migration": pre_migration,
        "manifest_path": f"/b/{name}.json",
    } | extra


def names(entries):
    return [entry["name"] for entry in entries]


def test_plan_keep_days_deletes_only_older_backups():
    backups = [manifest("a", 1), manifest("b", 29), manifest("c", 31), manifest("d", 60)]
    kept, deleted = plan(backups, RetentionPolicy(keep_days=30), NOW)
    assert names(kept) == ["a", "b"]
    assert names(deleted) == ["c", "d"]


def test_plan_keep_last_keeps_newest_n_regardless_of_age():
    backups = [manifest(str(i), 40 + i) for i in range(5)]
    kept, deleted = plan(backups, RetentionPolicy(keep_last=2, keep_days=None), NOW)
    assert names(kept) == ["0", "1"]
    assert names(deleted) == ["2", "3", "4"]


def test_plan_keep_last_or_keep_days_either_rule_keeps():
    backups = [manifest("new", 1), manifest("mid", 10), manifest("old", 50)]
    kept, deleted = plan(backups, RetentionPolicy(keep_last=1, keep_days=20), NOW)
    assert names(kept) == ["new", "mid"]
    assert names(deleted) == ["old"]


def test_plan_newest_verified_kept_even_when_every_rule_drops_it():
    backups = [manifest("unverified", 40, verified=False), manifest("verified", 50), manifest("older", 60)]
    kept, deleted = plan(backups, RetentionPolicy(keep_last=0, keep_days=30), NOW)
    assert names(kept) == ["verified"]
    assert "newest verified backup" in kept[0]["reasons"]
    assert names(deleted) == ["unverified", "older"]


def test_plan_pre_migration_kept_until_released():
    backups = [manifest("new", 1), manifest("pre", 90, pre_migration=True)]
    kept, _deleted = plan(backups, RetentionPolicy(keep_days=30), NOW)
    assert names(kept) == ["new", "pre"]
    kept, deleted = plan(backups, RetentionPolicy(keep_days=30, release=("pre",)), NOW)
    assert names(kept) == ["new"]
    assert names(deleted) == ["pre"]


def test_plan_groups_per_environment_and_database():
    backups = [
        manifest("s-new", 1),
        manifest("s-old", 50),
        manifest("p-old", 50, environment="production"),
        manifest("o-old", 50, database="other"),
    ]
    kept, deleted = plan(backups, RetentionPolicy(keep_days=30), NOW)
    assert names(kept) == ["s-new", "p-old", "o-old"]  # each the newest verified of its group
    assert names(deleted) == ["s-old"]


def test_plan_no_rule_keeps_everything():
    backups = [manifest("a", 100), manifest("b", 200)]
    kept, deleted = plan(backups, RetentionPolicy(keep_last=None, keep_days=None), NOW)
    assert names(kept) == ["a", "b"] and deleted == []


@pytest.mark.parametrize("policy", [RetentionPolicy(keep_last=-1), RetentionPolicy(keep_days=-2)])
def test_plan_negative_figures_refused(policy):
    with pytest.raises(BackupError, match="Invalid keep_"):
        plan([], policy, NOW)


def _write(dest: Path, entry: dict, directory: bool = False) -> None:
    path = dest / (f"{entry['name']}.dir" if directory else f"{entry['name']}.dump")
    if directory:
        path.mkdir()
        (path / "toc.dat").write_bytes(b"x")
    else:
        path.write_bytes(b"x")
    entry = entry | {"path": str(path)}
    entry.pop("manifest_path")
    (dest / f"{entry['name']}.json").write_text(json.dumps(entry))


def test_apply_deletes_dump_and_manifest_then_second_run_unchanged(tmp_path):
    _write(tmp_path, manifest("keep", 1))
    _write(tmp_path, manifest("drop-file", 40))
    _write(tmp_path, manifest("drop-dir", 45), directory=True)

    first = apply(tmp_path, RetentionPolicy(keep_days=30), clock=lambda: NOW)
    second = apply(tmp_path, RetentionPolicy(keep_days=30), clock=lambda: NOW)

    assert first.changed is True and names(first.deleted) == ["drop-file", "drop-dir"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.dump", "keep.json"]
    assert second.changed is False and names(second.kept) == ["keep"]


def test_apply_check_mode_deletes_nothing(tmp_path):
    _write(tmp_path, manifest("keep", 1))
    _write(tmp_path, manifest("drop", 40))
    before = sorted(tmp_path.iterdir())
    result = apply(tmp_path, RetentionPolicy(keep_days=30), dry_run=True, clock=lambda: NOW)
    assert result.changed is True and result.msg.startswith("Would delete")
    assert sorted(tmp_path.iterdir()) == before
