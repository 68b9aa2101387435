# SPDX-License-Identifier: GPL-3.0-or-later
"""What a rollback would do and cost, read-only: the facts an operator needs before choosing a level.

- Level 1 (Alembic downgrade): the target revision (given, from the decision matrix, the revision the
  last migration started from, or 002), the revisions to undo, and what undoing them would lose: tenant
  rows assigned to organizations other than VIBOTAJ (undoing 004 drops ``organization_id``), and
  organizations, memberships and invitations created after the migration (undoing 003 drops their tables).
  Everything 005 created is re-created by upgrading again, so it is not counted as lost.
- Level 3 (restore the pre-migration backup): the backup, its time, and the write-loss window: rows
  written since (created or updated after the backup, by their timestamps) that a restore would discard.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ansible_collections.tracehub.deploy.plugins.module_utils import backup, restore
from ansible_collections.tracehub.deploy.plugins.module_utils.errors import DeployError, MigrationError
from ansible_collections.tracehub.deploy.plugins.module_utils.pg import ConnInfo, connect, table_row_counts

try:
    from psycopg2 import sql

    HAS_PSYCOPG2 = True
except ImportError:  # pragma: no cover - reported by the modules through missing_required_lib
    HAS_PSYCOPG2 = False

VIBOTAJ_ORG_ID = "00000000-0000-0000-0000-000000000001"
# Revision 005 derives its membership ids from this salt (alembic/versions/..._005_...py); memberships
# with such ids are the ones 005 created and re-creates.
MEMBERSHIP_ID_SALT = "tracehub-005-membership:"
TENANT_TABLES = (
    "users",
    "shipments",
    "documents",
    "products",
    "parties",
    "origins",
    "container_events",
    "notifications",
    "audit_logs",
)
REVISION_CHAIN = ("001", "002", "003", "004", "005", "006")
LOWEST_TARGET = "002"
# The plan's decision matrix: situation -> what to do.
DECISION_MATRIX: dict[str, dict[str, Any]] = {
    "004_failed": {"level": 1, "target": "003", "when": "revision 004 failed"},
    "005_failed": {"level": 1, "target": "004", "when": "revision 005 failed"},
    "006_failed": {"level": 1, "target": "005", "when": "revision 006 failed"},
    "validation_errors": {"level": 1, "target": "004", "when": "the post-migration checks fail"},
    "corruption": {"level": 3, "target": None, "when": "the database is corrupted"},
}


@dataclass(frozen=True, slots=True)
class MigrationFacts:
    """What the newest migrate phase of the run records says about the migration to undo."""

    run_id: str
    revision_before: str | None
    revision_after: str | None
    baseline_counts: dict[str, int]
    finished: str | None
    backup: str | None = None


def find_migration(records_dir: Path | str, environment: str, database: str) -> MigrationFacts | None:
    """The newest migrate phase that applied revisions to this environment's database, from the run records."""
    directory = Path(records_dir)
    if not directory.is_dir():
        return None
    best: tuple[str, MigrationFacts] | None = None
    for path in directory.glob("*.json"):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict):
            continue
        for phase in record.get("phases") or []:
            if not isinstance(phase, dict) or phase.get("phase") != "migrate":
                continue
            data = phase.get("data") or {}
            if (phase.get("environment"), phase.get("database")) != (environment, database):
                continue
            if not data.get("applied") or data.get("check_mode"):
                continue
            finished = str(phase.get("finished") or "")
            facts = MigrationFacts(
                run_id=str(record.get("run_id")),
                revision_before=data.get("revision_before") or None,
                revision_after=data.get("revision_after") or None,
                baseline_counts={k: int(v) for k, v in (data.get("baseline_counts") or {}).items()},
                finished=finished or None,
                backup=data.get("backup") or None,
            )
            if best is None or finished > best[0]:
                best = (finished, facts)
    return best[1] if best else None


def find_pre_migration_backup(backup_dir: Path | str, environment: str, database: str) -> dict[str, Any] | None:
    """The newest verified backup marked pre_migration of this environment's database."""
    for manifest in backup.list_backups(backup_dir, environment, database).backups:
        if manifest["verified"] and manifest.get("pre_migration") and not restore.is_safety_backup(manifest):
            return manifest
    return None


def check_reason(reason: str | None) -> None:
    """Refuse a reason that looks like a mistyped decision-matrix situation.

    Free text is a valid reason (it is printed and recorded), but a near miss such as ``validation_error``
    would silently pick the default target instead of the matrix's, and undo more revisions than meant.
    """
    if not reason or reason in DECISION_MATRIX:
        return
    close = difflib.get_close_matches(reason.strip().lower(), DECISION_MATRIX, n=1, cutoff=0.75)
    if close:
        entry = DECISION_MATRIX[close[0]]
        action = f"level 1 back to {entry['target']}" if entry["target"] else f"level {entry['level']}"
        raise MigrationError(
            f"rollback_reason {reason!r} refused: it is not a decision-matrix situation, but close to "
            f"{close[0]!r} ({entry['when']}: {action}). Give -e rollback_reason={close[0]} for that, or a "
            f"free-text reason that names no situation. Situations: {', '.join(DECISION_MATRIX)}."
        )


def choose_target(
    current: str | None, given: str | None, reason: str | None, migration: MigrationFacts | None, pre_backup: Any
) -> tuple[str, str]:
    """(target revision, where it came from) for level 1."""
    if given:
        return given, "given (rollback_target_revision)"
    if reason and reason in DECISION_MATRIX and DECISION_MATRIX[reason]["target"]:
        return DECISION_MATRIX[reason]["target"], f"decision matrix: {DECISION_MATRIX[reason]['when']}"
    if migration and migration.revision_before:
        return migration.revision_before, f"revision before the migration (run record {migration.run_id})"
    if pre_backup and pre_backup.get("alembic_revision"):
        return str(pre_backup["alembic_revision"]), f"revision of the pre-migration backup {pre_backup['name']}"
    return LOWEST_TARGET, "default (the release's baseline)"


def steps_between(current: str | None, target: str) -> list[dict[str, str | None]]:
    """Revisions to undo, newest first: [{revision, down_revision}]; refuses anything but a downgrade."""
    if target not in REVISION_CHAIN or REVISION_CHAIN.index(target) < REVISION_CHAIN.index(LOWEST_TARGET):
        raise MigrationError(
            f"Rollback level 1 target {target!r} refused: choose a revision from {LOWEST_TARGET} to "
            f"{REVISION_CHAIN[-1]} (level 1 goes back at most to {LOWEST_TARGET}, the release's baseline)."
        )
    if current not in REVISION_CHAIN:
        raise MigrationError(f"Rollback level 1 refused: the database is at revision {current!r}, not in the chain.")
    here, there = REVISION_CHAIN.index(current), REVISION_CHAIN.index(target)
    if there > here:
        raise MigrationError(
            f"Rollback level 1 refused: the target {target} is above the current revision {current}; that is an "
            "upgrade (playbooks/migrate.yml)."
        )
    return [{"revision": REVISION_CHAIN[i], "down_revision": REVISION_CHAIN[i - 1]} for i in range(here, there, -1)]


def _column_exists(cur: Any, table: str, column: str) -> bool:
    cur.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s "
        "AND column_name = %s",
        (table, column),
    )
    return cur.fetchone() is not None


def _table_exists(cur: Any, table: str) -> bool:
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{table}",))
    return bool(cur.fetchone()[0])


def tables_refusing_legacy_inserts(cur: Any) -> list[str]:
    """Tenant tables where the old application's inserts (no organization_id) would fail.

    Such a table has ``organization_id NOT NULL`` without a default: the state after the contract step removed
    005's VIBOTAJ default. Before 006 the column is nullable, and until the contract step the default fills it.
    """
    cur.execute(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' "
        "AND column_name = 'organization_id' AND table_name = ANY(%s) AND is_nullable = 'NO' "
        "AND column_default IS NULL ORDER BY table_name",
        (list(TENANT_TABLES),),
    )
    return [row[0] for row in cur.fetchall()]


def downgrade_losses(cur: Any, current: str | None, target: str) -> dict[str, int]:
    """Rows a downgrade from ``current`` to ``target`` would lose, by kind (only non-zero kinds)."""
    losses: dict[str, int] = {}
    undone = set(REVISION_CHAIN[REVISION_CHAIN.index(target) + 1 : REVISION_CHAIN.index(current) + 1])
    if "004" in undone:
        for table in TENANT_TABLES:
            if _table_exists(cur, table) and _column_exists(cur, table, "organization_id"):
                cur.execute(
                    sql.SQL(
                        "SELECT count(*) FROM {} WHERE organization_id IS NOT NULL AND organization_id <> %s::uuid"
                    ).format(sql.Identifier(table)),
                    (VIBOTAJ_ORG_ID,),
                )
                count = int(cur.fetchone()[0])
                if count:
                    losses[f"{table} rows of other organizations (organization_id dropped)"] = count
    if "003" in undone:
        if _table_exists(cur, "organizations"):
            cur.execute("SELECT count(*) FROM organizations WHERE id <> %s::uuid", (VIBOTAJ_ORG_ID,))
            losses["organizations created after the migration"] = int(cur.fetchone()[0])
        if _table_exists(cur, "org_memberships"):
            cur.execute(
                "SELECT count(*) FROM org_memberships WHERE NOT (organization_id = %s::uuid "
                "AND id = md5(%s || user_id::text)::uuid)",
                (VIBOTAJ_ORG_ID, MEMBERSHIP_ID_SALT),
            )
            losses["memberships created after the migration"] = int(cur.fetchone()[0])
        if _table_exists(cur, "invitations"):
            cur.execute("SELECT count(*) FROM invitations")
            losses["invitations"] = int(cur.fetchone()[0])
    return {kind: count for kind, count in losses.items() if count}


def rows_written_since(cur: Any, since: datetime) -> dict[str, int]:
    """Rows of each public table created or updated after ``since`` (tables with those timestamps)."""
    cur.execute(
        "SELECT table_name, array_agg(column_name::text ORDER BY column_name) FROM information_schema.columns "
        "WHERE table_schema = 'public' AND column_name IN ('created_at', 'updated_at') "
        "AND data_type LIKE 'timestamp%%' GROUP BY table_name ORDER BY table_name"
    )
    written: dict[str, int] = {}
    for table, columns in cur.fetchall():
        condition = sql.SQL(" OR ").join(sql.SQL("{} > %s").format(sql.Identifier(c)) for c in columns)
        cur.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE ").format(sql.Identifier(table)) + condition,
            [since] * len(columns),
        )
        count = int(cur.fetchone()[0])
        if count:
            written[str(table)] = count
    return written


def assess(
    conn: ConnInfo,
    environment: str,
    records_dir: Path | str | None,
    backup_dir: Path | str | None,
    target_revision: str | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Read-only: the plan and cost of rollback levels 1, 2 and 3 for ``conn``'s database."""
    check_reason(reason)
    now = now or backup.utc_now()
    migration = find_migration(records_dir, environment, conn.dbname) if records_dir else None
    pre_backup = find_pre_migration_backup(backup_dir, environment, conn.dbname) if backup_dir else None
    if pre_backup is None and backup_dir and migration and migration.backup:
        # The migrate gate may have reused a recent backup not flagged pre_migration: it is the way back too.
        path = Path(backup_dir) / f"{migration.backup}{backup.MANIFEST_SUFFIX}"
        try:
            candidate = backup.load_manifest(path)
        except DeployError:
            candidate = None
        if candidate is not None and candidate["verified"]:
            pre_backup = candidate
    connection = connect(conn.with_application_name("tracehub.deploy rollback_info"))
    try:
        connection.set_session(readonly=True)
        with connection.cursor() as cur:
            current = backup._alembic_revision(connection)
            counts = table_row_counts(connection)
            target, source = choose_target(current, target_revision, reason, migration, pre_backup)
            level1: dict[str, Any] = {"target_revision": target, "target_source": source}
            try:
                steps = steps_between(current, target)
                losses = downgrade_losses(cur, current, target) if steps else {}
                level1 |= {"possible": True, "steps": steps, "losses": losses, "lossless": not losses, "refusal": None}
            except DeployError as exc:
                level1 |= {"possible": False, "steps": [], "losses": {}, "lossless": False, "refusal": exc.msg}
            refusing = tables_refusing_legacy_inserts(cur)
            level2 = {"safe": not refusing, "tables_refusing_legacy_inserts": refusing}
            level3: dict[str, Any] = {"possible": pre_backup is not None, "backup": None, "written_since": {}}
            if pre_backup is not None:
                since = backup.parse_time(str(pre_backup["created_at"]))
                in_backup = set(pre_backup.get("row_counts") or {})
                every = rows_written_since(cur, since)
                # Tables the backup does not hold were created since (the migration's): the restore drops
                # them as a whole, which is the point of it; report them apart from the application's writes.
                written = {t: n for t, n in every.items() if t in in_backup}
                new_tables = {t: counts[t] for t in counts if t not in in_backup and counts[t]}
                level3 |= {
                    "tables_not_in_backup": new_tables,
                    "backup": restore.backup_summary(pre_backup),
                    "backup_age_seconds": int((now - since).total_seconds()),
                    "written_since": written,
                    "rows_written_since": sum(written.values()),
                }
        connection.rollback()
    finally:
        connection.close()
    tenant_counts = {t: counts[t] for t in TENANT_TABLES if t in counts}
    baseline = migration.baseline_counts if migration else {}
    return {
        "database": conn.dbname,
        "environment": environment,
        "current_revision": current,
        "reason": reason or None,
        "matrix_entry": DECISION_MATRIX.get(reason or ""),
        "migration": None
        if migration is None
        else {
            "run_id": migration.run_id,
            "revision_before": migration.revision_before,
            "revision_after": migration.revision_after,
            "finished": migration.finished,
        },
        "baseline_counts": baseline,
        "baseline_source": f"run record {migration.run_id}" if migration and baseline else None,
        "row_counts": tenant_counts,
        "level1": level1,
        "level2": level2,
        "level3": level3,
        "advice": advice(level1, level2, level3, current),
    }


def advice(
    level1: Mapping[str, Any], level2: Mapping[str, Any], level3: Mapping[str, Any], current: str | None
) -> list[str]:
    """One line per level: is it still safe, what does it cost."""
    lines = []
    if not level1["possible"]:
        lines.append(f"Level 1 not possible: {level1['refusal']}")
    elif not level1["steps"]:
        lines.append(f"Level 1: nothing to do, the database is already at {current}.")
    elif level1["lossless"]:
        undo = ", ".join(s["revision"] for s in level1["steps"])
        lines.append(f"Level 1 is SAFE: undoing {undo} loses no data (minutes; no restore, no write loss).")
    else:
        lost = "; ".join(f"{n} {kind}" for kind, n in level1["losses"].items())
        lines.append(f"Level 1 LOSES data: {lost}. Only with rollback_accept_loss=true, or choose a higher target.")
    if level2["safe"]:
        lines.append(
            f"Level 2 changes no data: traffic goes back to blue (v1.2), the database stays at {current} and blue "
            "keeps reading and writing it (seconds; no write loss)."
        )
    else:
        tables = ", ".join(level2["tables_refusing_legacy_inserts"])
        lines.append(
            f"Level 2 is NOT SAFE: organization_id is NOT NULL without a default on {tables} (the contract step "
            "ran), so every insert of blue (v1.2) there would fail. Fix forward on green instead."
        )
    if not level3["possible"]:
        lines.append("Level 3 not possible: no verified pre-migration backup of this database.")
    else:
        written = level3["rows_written_since"]
        tables = ", ".join(f"{t}: {n}" for t, n in level3["written_since"].items())
        backup_ = level3["backup"]
        cost = (
            f"{written} rows written since would be lost ({tables})."
            if written
            else "no row of the backed-up tables was written since (by their timestamps)."
        )
        if level3.get("tables_not_in_backup"):
            dropped = ", ".join(f"{t}: {n}" for t, n in level3["tables_not_in_backup"].items())
            cost += f" Tables created since, dropped with their rows: {dropped}."
        lines.append(
            f"Level 3 restores {backup_['name']} ({backup_['created_at']}, revision {backup_['alembic_revision']}): "
            + cost
        )
    return lines
