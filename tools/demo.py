"""`make demo`: run the blue-green release (playbooks/deploy.yml) on the local inventory and summarise it.

deploy.yml is the main job (backup -> migrate -> validate -> post-migration backup) with the application
around it: blue (v1.2) and a project-local nginx serving first, green (v1.3) started after the migration and
traffic switched to it. The summary comes from the run record, with the cutover at the end.

Each local database that is still empty is first brought to revision 002 and filled with realistic
TraceHub data (tools.seed). ``--reset-only`` (``make demo-reset``) drops the databases and rebuilds them at
002, so the next ``make demo`` migrates again.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR / ".collections"))

from ansible_collections.tracehub.deploy.plugins.module_utils.pg import ConnInfo, connect  # noqa: E402
from ansible_collections.tracehub.deploy.plugins.module_utils.run_record import read_record  # noqa: E402
from tools.localpg import InventoryDatabase, inventory_databases  # noqa: E402
from tools.seed import seed  # noqa: E402
from tools.summary import render_summary  # noqa: E402


def conn_info(db: InventoryDatabase) -> ConnInfo:
    """How the application role reaches a local inventory database."""
    return ConnInfo(
        host="127.0.0.1", port=db.server.port, user=db.user, password=db.password, dbname=db.dbname, sslmode="disable"
    )


def is_empty(conn: ConnInfo) -> bool:
    """True when the database has no tables at all (never seeded, never migrated)."""
    connection = connect(conn)
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            return cur.fetchone()[0] == 0
    finally:
        connection.close()


def reset_web_tier() -> None:
    """Stop the local nginx and app instances and forget their state: the next demo starts from blue."""
    from bench.cutover.stack import Stack, stop_processes

    local = PROJECT_DIR / ".local"
    stop_processes(Stack(base=local))
    for name in ("nginx", "app"):
        shutil.rmtree(local / name, ignore_errors=True)


def prepare(databases: list[InventoryDatabase], reset: bool) -> None:
    """Seed empty databases at 002; with ``reset``, rebuild them from scratch first (and the web tier)."""
    if reset:
        reset_web_tier()
    for db in databases:
        if reset:
            db.server.drop_database(db.dbname)
            db.server.ensure_application_database(db.dbname, db.user, db.password)
        conn = conn_info(db)
        if is_empty(conn):
            started = time.monotonic()
            counts = seed(conn)
            print(
                f"{db.host}: seeded TraceHub at revision 002 with {sum(counts.values())} rows "
                f"in {time.monotonic() - started:.1f} s"
            )


def cutover_summary(record: dict) -> str:
    """Where traffic went: each load balancer's switch, its proof and its monitoring window."""
    lines = ["", "Blue-green cutover"]
    cutovers = [p for p in record.get("phases", []) if p.get("phase") in ("cutover", "rollback_level_2")]
    if not cutovers:
        return "\n".join([*lines, "  no cutover in this run"])
    for phase in cutovers:
        data = phase.get("data") or {}
        switch = data.get("switch") or {}
        watch = data.get("watch") or {}
        moved = f"{data.get('from')} -> {data.get('to')}" if phase.get("changed") else f"stays on {data.get('to')}"
        lines.append(
            f"  {phase.get('host')}: {phase['phase']} {phase['status']}, {moved} "
            f"({', '.join(switch.get('servers', []))}; {switch.get('verified_requests', 0)} requests verified)"
        )
        if watch:
            lines.append(
                f"    monitoring window: {watch.get('requests')} requests, {watch.get('failures')} failed, "
                f"p95 {watch.get('latency_ms_p95')} ms ({watch.get('reason')})"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--inventory", default="inventories/local")
    parser.add_argument("--reset-only", action="store_true", help="rebuild the databases at 002 and stop")
    args = parser.parse_args(argv)
    inventory = (PROJECT_DIR / args.inventory).resolve()
    databases = inventory_databases(inventory)
    prepare(databases, reset=args.reset_only)
    if args.reset_only:
        print("Databases rebuilt at revision 002: `make demo` migrates them again.")
        return 0

    run_id = datetime.now(UTC).strftime("demo-%Y%m%dT%H%M%SZ")
    argv_play = [
        str(PROJECT_DIR / ".venv" / "bin" / "ansible-playbook"),
        "-i",
        str(inventory),
        str(PROJECT_DIR / "playbooks" / "deploy.yml"),
        "-e",
        f"tracehub_run_id={run_id}",
    ]
    started = time.monotonic()
    completed = subprocess.run(argv_play, cwd=PROJECT_DIR, env=dict(os.environ, ANSIBLE_FORCE_COLOR="0"), check=False)
    elapsed = time.monotonic() - started
    record_file = PROJECT_DIR / ".local" / "runs" / f"{run_id}.json"
    if record_file.exists():
        record = read_record(record_file)
        print(render_summary(record, playbook_seconds=elapsed, record_path=record_file))
        print(cutover_summary(record))
    if completed.returncode != 0:
        print(
            f"\nThe main job failed (ansible-playbook exit {completed.returncode}); see the output above.",
            file=sys.stderr,
        )
    return completed.returncode


if __name__ == "__main__":
    sys.exit(main())
