"""Render a run record (``.local/runs/<run_id>.json``) as the summary `make demo` prints.

python -m tools.summary .local/runs/<run_id>.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR / ".collections"))

from ansible_collections.tracehub.deploy.plugins.module_utils.errors import RecordError  # noqa: E402
from ansible_collections.tracehub.deploy.plugins.module_utils.run_record import read_record  # noqa: E402
from tools.seed import TENANT_TABLES  # noqa: E402


def _size(num_bytes: int | None) -> str:
    if num_bytes is None:
        return "?"
    size = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _backup_line(label: str, manifest: dict[str, Any], note: str = "") -> str:
    verification = manifest.get("verification") or {}
    verified = (
        "verified: pg_restore --list ok, test restore row counts equal"
        if manifest.get("verified") and verification.get("restored_row_counts_match", True)
        else "NOT verified"
    )
    return (
        f"  {label} backup: {manifest.get('path')}{note}\n"
        f"      {_size(manifest.get('size_bytes'))}, sha256 {manifest.get('sha256')}, revision "
        f"{manifest.get('alembic_revision')}, {verified}"
    )


def _counts_table(before: dict[str, int], after: dict[str, int]) -> list[str]:
    tables = [t for t in TENANT_TABLES if t in before or t in after]
    lines = [f"  {'table':<18}{'before':>10}{'after':>10}"]
    for table in tables:
        b, a = before.get(table), after.get(table)
        mark = "" if b == a else "   <-- differs"
        lines.append(f"  {table:<18}{b if b is not None else '-':>10}{a if a is not None else '-':>10}{mark}")
    equal = all(before.get(t) == after.get(t) for t in tables)
    lines.append(
        f"  {'total':<18}{sum(before.get(t, 0) for t in tables):>10}{sum(after.get(t, 0) for t in tables):>10}"
        f"   {'equal' if equal else 'NOT EQUAL'}"
    )
    return lines


def _environment_section(host: str, phases: list[dict[str, Any]]) -> list[str]:
    first = phases[0]
    lines = [f"== {first.get('environment')} ({host}, database {first.get('database')}) =="]
    lines.append(f"  {'phase':<10}{'status':<8}{'duration':>10}  changed")
    for phase in phases:
        changed = "yes" if phase.get("changed") else "no"
        lines.append(f"  {phase['phase']:<10}{phase['status']:<8}{_seconds(phase.get('duration_s')):>10}  {changed}")
    backup_phases = [p for p in phases if p["phase"] == "backup" and p.get("data")]
    backups = [p["data"] for p in backup_phases]
    for index, phase in enumerate(backup_phases):
        label = "pre-migration" if index == 0 and len(backups) > 1 else ("post-migration" if index else "the")
        note = ""
        if not phase.get("changed"):
            # The phase reused the newest verified backup, which need not be one of its own kind (a second run
            # before migrating reuses the first run's post-migration backup): say which one it is.
            origin = "pre-migration" if phase["data"].get("pre_migration") else "post-migration"
            note = f" (no change: reused the {origin} backup of {phase['data'].get('created_at')})"
        lines.append(_backup_line(label, phase["data"], note))
    migrate = next((p["data"] for p in phases if p["phase"] == "migrate"), None)
    if migrate is not None:
        before, after = migrate.get("revision_before"), migrate.get("revision_after") or migrate.get("revision_before")
        applied = migrate.get("applied") or []
        if applied:
            steps = ", ".join(f"{s['revision']} {s.get('duration_s', 0):.2f} s" for s in applied)
            lines.append(f"  revisions: {before} -> {after} ({steps})")
        else:
            lines.append(f"  revisions: {before} -> {after} (no migration change: already at the target)")
        baseline = migrate.get("baseline_counts") or {}
        final = migrate.get("final_counts") or {}
        if not baseline and backups:
            baseline = final = {t: n for t, n in (backups[0].get("row_counts") or {}).items() if t in TENANT_TABLES}
        if baseline:
            lines.append("  row counts:")
            lines.extend("  " + line for line in _counts_table(baseline, final))
        if migrate.get("failure"):
            lines.append(f"  FAILED: {migrate['failure']}")
    validate = next((p["data"] for p in phases if p["phase"] == "validate"), None)
    if validate is not None:
        lines.append(f"  checks ({validate.get('suite')}): {validate.get('summary')}")
        for result in validate.get("results") or []:
            if result.get("status") != "pass":
                lines.append(f"    {result.get('status')}: {result.get('name')}: {result.get('message', '')}")
    return lines


def render_summary(
    record: dict[str, Any], playbook_seconds: float | None = None, record_path: Path | None = None
) -> str:
    """The human summary of one run record."""
    lines = [
        "",
        "=" * 78,
        f"TraceHub main job: run {record.get('run_id')} by {record.get('user')} on {record.get('controller')}, "
        f"collection commit {record.get('git_commit')}",
    ]
    if playbook_seconds is not None:
        lines.append(f"ansible-playbook took {playbook_seconds:.1f} s")
    by_host: dict[str, list[dict[str, Any]]] = {}
    for phase in record.get("phases", []):
        by_host.setdefault(phase.get("host") or phase.get("environment") or "?", []).append(phase)
    for host, phases in by_host.items():
        lines.append("")
        lines.extend(_environment_section(host, phases))
    if record_path is not None:
        lines.append("")
        lines.append(f"Run record: {record_path}")
    lines.append("=" * 78)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("record", type=Path)
    args = parser.parse_args(argv)
    try:
        print(render_summary(read_record(args.record), record_path=args.record))
    except RecordError as exc:
        print(f"summary: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
