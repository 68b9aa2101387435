# SPDX-License-Identifier: GPL-3.0-or-later
"""Backup retention: which backups to keep, which to delete, and deleting them.

Per environment and database, a backup is kept when ANY rule keeps it:

- it is among the newest ``keep_last`` backups (when ``keep_last`` is set);
- it is younger than ``keep_days`` days (when ``keep_days`` is set; the plan's default is 30);
- it is the newest verified backup (a verified way back always exists);
- it is marked ``pre_migration`` and not explicitly released (``release`` lists its name).

With neither ``keep_last`` nor ``keep_days`` set nothing is deleted. Deleting removes the dump (file or
directory-format directory) first and the manifest last, so an interrupted run never leaves a manifest
pointing at nothing that still looks like a backup... and a leftover dump without its manifest is
reported by the next run's listing as an orphan to remove by hand.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ansible_collections.tracehub.deploy.plugins.module_utils import backup
from ansible_collections.tracehub.deploy.plugins.module_utils.errors import BackupError

DEFAULT_KEEP_DAYS = 30.0


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How many / how old backups to keep; ``release`` names pre-migration backups that may go."""

    keep_last: int | None = None
    keep_days: float | None = DEFAULT_KEEP_DAYS
    release: tuple[str, ...] = ()


@dataclass(slots=True)
class RetentionResult:
    """What was (or would be) kept and deleted, newest first."""

    changed: bool
    msg: str
    kept: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Module result keys."""
        return {
            "changed": self.changed,
            "msg": self.msg,
            "retention": {"kept": self.kept, "deleted": self.deleted},
        }


def _entry(manifest: Mapping[str, Any], now: datetime, reasons: Sequence[str]) -> dict[str, Any]:
    return {
        "name": manifest["name"],
        "environment": manifest["environment"],
        "database": manifest["database"],
        "created_at": manifest["created_at"],
        "age_days": round(backup.age_seconds(manifest, now) / 86400, 2),
        "alembic_revision": manifest.get("alembic_revision"),
        "size_bytes": manifest.get("size_bytes"),
        "verified": bool(manifest.get("verified")),
        "pre_migration": bool(manifest.get("pre_migration")),
        "path": manifest.get("path"),
        "manifest_path": manifest.get("manifest_path"),
        "reasons": list(reasons),
    }


def validate_policy(policy: RetentionPolicy) -> None:
    """Refuse negative figures with a message naming the option."""
    if policy.keep_last is not None and policy.keep_last < 0:
        raise BackupError(f"Invalid keep_last {policy.keep_last!r}: give 0 or more (or leave it unset).")
    if policy.keep_days is not None and policy.keep_days < 0:
        raise BackupError(f"Invalid keep_days {policy.keep_days!r}: give 0 or more (or leave it unset).")


def plan(
    manifests: Iterable[Mapping[str, Any]], policy: RetentionPolicy, now: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(kept, to delete), each newest first, with the reasons per backup. Pure: touches no file."""
    validate_policy(policy)
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for manifest in manifests:
        groups.setdefault((str(manifest["environment"]), str(manifest["database"])), []).append(manifest)
    kept: list[dict[str, Any]] = []
    deleted: list[dict[str, Any]] = []
    no_rule = policy.keep_last is None and policy.keep_days is None
    for members in groups.values():
        members = sorted(members, key=lambda m: (backup.parse_time(str(m["created_at"])), str(m["name"])), reverse=True)
        newest_verified = next((m["name"] for m in members if m.get("verified")), None)
        for index, manifest in enumerate(members):
            reasons = []
            if no_rule:
                reasons.append("no retention rule set")
            if policy.keep_last is not None and index < policy.keep_last:
                reasons.append(f"among the newest {policy.keep_last}")
            if policy.keep_days is not None and backup.age_seconds(manifest, now) < policy.keep_days * 86400:
                reasons.append(f"younger than {policy.keep_days:g} days")
            if manifest["name"] == newest_verified:
                reasons.append("newest verified backup")
            if manifest.get("pre_migration") and manifest["name"] not in policy.release:
                reasons.append("pre-migration backup (not released)")
            if reasons:
                kept.append(_entry(manifest, now, reasons))
            else:
                deleted.append(_entry(manifest, now, ["outside every retention rule"]))
    return sorted(kept, key=_newest_first, reverse=True), sorted(deleted, key=_newest_first, reverse=True)


def _newest_first(entry: Mapping[str, Any]) -> tuple[datetime, str]:
    """Sort key (with ``reverse=True``): creation time, then name."""
    return backup.parse_time(str(entry["created_at"])), str(entry["name"])


def _delete(entry: Mapping[str, Any]) -> None:
    dump = Path(str(entry["path"]))
    if dump.is_dir() and not dump.is_symlink():
        shutil.rmtree(dump)
    else:
        with contextlib.suppress(FileNotFoundError):
            dump.unlink()
    with contextlib.suppress(FileNotFoundError):
        Path(str(entry["manifest_path"])).unlink()


def apply(
    dest: Path | str,
    policy: RetentionPolicy,
    environment: str | None = None,
    database: str | None = None,
    dry_run: bool = False,
    clock: Callable[[], datetime] = backup.utc_now,
) -> RetentionResult:
    """Delete the backups in ``dest`` (optionally one environment/database) that no rule keeps."""
    listing = backup.list_backups(dest, environment, database)
    kept, doomed = plan(listing.backups, policy, clock())
    if not dry_run:
        for entry in doomed:
            try:
                _delete(entry)
            except OSError as exc:
                raise BackupError(
                    f"Deleting backup {entry['name']} from {dest} failed: {exc.strerror or exc}. Kept so far: "
                    f"{len(kept)}; deleted before this one: {doomed.index(entry)}.",
                    path=str(entry["path"]),
                ) from exc
    verb = "Would delete" if dry_run else "Deleted"
    if doomed:
        msg = f"{verb} {len(doomed)} backup(s) from {dest} ({', '.join(e['name'] for e in doomed)}); kept {len(kept)}."
    else:
        msg = f"Nothing to delete in {dest}: all {len(kept)} backup(s) are kept by a retention rule."
    return RetentionResult(bool(doomed), msg, kept, doomed)
