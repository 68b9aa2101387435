#!/usr/bin/python
# Copyright: (c) 2026, tracehub.deploy developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
---
module: alembic_migration
short_description: Bring a PostgreSQL database to an Alembic revision
description:
  - Reads the database's current Alembic revision, plans the revisions between it and O(revision), and
    applies them through Alembic's Python API (no C(alembic) CLI, no URL in any file).
  - Each revision runs in its own transaction. When one fails, the module names it, quotes the first line
    of the database error and reports the revision the database was left at (re-read, not assumed).
  - Holds the collection's per-database operation lock for the whole migration, so a backup, restore or
    second migration of the same database cannot run at the same time.
  - Downgrades are refused unless O(allow_downgrade=true); the refusal names the revisions that would be
    undone and happens before anything is changed.
  - Progress (revision, message, seconds) is written to the module's debug log as each revision completes.
  - Revisions written for live traffic (the project's, see C(alembic/online_ddl.py)) read the lock and batch
    settings below; each lock that blocks reads or writes is awaited at most O(lock_timeout), retried
    O(lock_retries) times with backoff, then the step fails naming the blocking session, with nothing of it
    half-applied (the message says to run the migration again, which resumes it).
  - Backfill progress (rows done, rate, ETA) and lock retries go to the debug log, to O(progress_path) when
    set, and their summaries into RV(migration.backfill) and RV(migration.lock_retries).
version_added: 1.0.0
requirements:
  - alembic
  - sqlalchemy >= 2.0
  - psycopg2 (psycopg2-binary)
options:
  script_location:
    description:
      - Directory of the Alembic environment (the one holding C(env.py) and C(versions/)).
      - Its C(env.py) must use C(config.attributes["connection"]) or C(config.attributes["url"]) and forward
        C(config.attributes["on_version_apply"]) to C(context.configure()).
    type: path
    required: true
  revision:
    description:
      - Target revision. V(head), V(base), a revision id (or a unique prefix of one), or a step relative to
        the current revision such as V(-1) or V(+2).
    type: str
    default: head
  allow_downgrade:
    description:
      - Permit moving to an older revision. Without it a target below the current revision fails before
        touching the database.
    type: bool
    default: false
  lock_wait:
    description:
      - Seconds to wait for another run holding the database's operation lock (a migration, backup or
        restore) to finish; then the module fails naming that run. V(0) fails at once.
    type: float
    default: 30
    version_added: 1.1.0
  lock_timeout:
    description:
      - Longest wait, in seconds, for a table lock that blocks reads or writes (PostgreSQL C(lock_timeout)).
        While a DDL statement waits for its lock, the application's queries on that table queue behind it, so
        keep it short.
    type: float
    default: 0.2
    version_added: 1.1.0
  lock_retries:
    description: Further attempts after a lock timeout, before the step fails naming the blocking session.
    type: int
    default: 10
    version_added: 1.1.0
  lock_retry_delay:
    description: Seconds before the first retry; doubled for each further one (with jitter, capped at 15 s).
    type: float
    default: 0.5
    version_added: 1.1.0
  batch_size:
    description: Rows updated per transaction by a backfill (row locks are held for one batch only).
    type: int
    default: 2000
    version_added: 1.1.0
  batch_pause:
    description: Seconds to pause between backfill batches, to throttle the load on a busy database.
    type: float
    default: 0
    version_added: 1.1.0
  progress_path:
    description:
      - File to append progress events to, one JSON object per line (C(tail -f) it during a long backfill).
      - Created with mode C(0600) when missing.
    type: path
    version_added: 1.1.0
attributes:
  check_mode:
    support: full
    details: Lists the pending revisions and renders their SQL in Alembic's offline mode into RV(queries).
      Only the current revision is read; nothing is executed on the database.
  diff_mode:
    support: full
    details: The revision before and after.
extends_documentation_fragment:
  - tracehub.deploy.postgres
  - tracehub.deploy.attributes
seealso:
  - module: tracehub.deploy.alembic_migration_info
  - module: tracehub.deploy.alembic_lint
  - module: tracehub.deploy.alembic_contract
notes:
  - A revision that builds an index C(CONCURRENTLY) must wrap it in
    C(with op.get_context().autocommit_block():); the module says so when PostgreSQL refuses it.
author:
  - tracehub.deploy developers (@tracehub)
"""

EXAMPLES = r"""
- name: Upgrade the TraceHub database to the newest revision
  tracehub.deploy.alembic_migration:
    login_host: "{{ db_host }}"
    login_user: "{{ db_user }}"
    login_password: "{{ vault_db_password }}"
    login_db: tracehub
    script_location: /opt/tracehub/alembic

- name: Step back one revision (rollback level 1)
  tracehub.deploy.alembic_migration:
    login_host: "{{ db_host }}"
    login_user: "{{ db_user }}"
    login_password: "{{ vault_db_password }}"
    login_db: tracehub
    script_location: /opt/tracehub/alembic
    revision: "003"
    allow_downgrade: true

- name: Migrate under live traffic with short locks and a throttled backfill
  tracehub.deploy.alembic_migration:
    login_host: "{{ db_host }}"
    login_user: "{{ db_user }}"
    login_password: "{{ vault_db_password }}"
    login_db: tracehub
    script_location: /opt/tracehub/alembic
    lock_timeout: 0.2
    lock_retries: 10
    batch_size: 2000
    batch_pause: 0.05
    progress_path: /var/log/tracehub/migration-progress.jsonl
"""

RETURN = r"""
msg:
  description: One-sentence summary.
  returned: always
  type: str
  sample: Upgraded tracehub from 002 to 006 (4 revisions).
migration:
  description: What was (or in check mode would be) done.
  returned: always
  type: dict
  contains:
    database:
      description: Database name.
      type: str
      sample: tracehub
    from_revision:
      description: Revision before the run; V(null) at base.
      type: str
      sample: "002"
    to_revision:
      description: Revision after the run (the target in check mode); V(null) at base.
      type: str
      sample: "006"
    direction:
      description: V(upgrade), V(downgrade) or V(none).
      type: str
      sample: upgrade
    pending:
      description: Revisions planned, in order (C(revision), C(message), C(down_revision)).
      type: list
      elements: dict
      sample: [{"revision": "003", "message": "Add tenancy tables.", "down_revision": "002"}]
    applied:
      description: Revisions applied or undone, in order, with their duration in seconds; empty in check mode.
      type: list
      elements: dict
      sample: [{"revision": "003", "message": "Add tenancy tables.", "duration_s": 0.412}]
    sql:
      description: Offline SQL per pending revision (check mode only).
      type: list
      elements: dict
      sample: [{"revision": "003", "message": "Add tenancy tables.", "sql": "BEGIN; ..."}]
    backfill:
      description: Per table backfilled, the rows changed, rows expected, rate (rows/s) and seconds.
      type: list
      elements: dict
      sample: [{"revision": "005", "table": "audit_logs", "rows_done": 1077600, "rows_total": 1077600,
                "rate_rows_s": 41000.5, "elapsed_s": 26.3}]
    lock_retries:
      description: Lock timeouts that were retried, with the step, table, attempt and blocking sessions.
      type: list
      elements: dict
      sample: [{"revision": "004", "step": "add column organization_id", "table": "shipments", "attempt": 1,
                "retry_in_s": 0.52, "blocking": [{"pid": 4242, "application_name": "psql"}]}]
  sample: {"database": "tracehub", "from_revision": "002", "to_revision": "006", "direction": "upgrade"}
queries:
  description:
    - In check mode, the offline SQL of each pending revision (one string per revision).
    - In a real run the statements are not captured; one comment line per revision applied instead.
  returned: always
  type: list
  elements: str
  sample: ["-- revision 003 (Add tenancy tables.) applied in 0.412 s"]
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.tracehub.deploy.plugins.module_utils import alembic_ops
from ansible_collections.tracehub.deploy.plugins.module_utils.common import conn_info_from, pg_connection_spec
from ansible_collections.tracehub.deploy.plugins.module_utils.errors import DeployError
from ansible_collections.tracehub.deploy.plugins.module_utils.pg import HAS_PSYCOPG2


def main() -> None:
    module = AnsibleModule(
        argument_spec=pg_connection_spec()
        | {
            "script_location": {"type": "path", "required": True},
            "revision": {"type": "str", "default": "head"},
            "allow_downgrade": {"type": "bool", "default": False},
            "lock_wait": {"type": "float", "default": 30.0},
            "lock_timeout": {"type": "float", "default": 0.2},
            "lock_retries": {"type": "int", "default": 10},
            "lock_retry_delay": {"type": "float", "default": 0.5},
            "batch_size": {"type": "int", "default": 2000},
            "batch_pause": {"type": "float", "default": 0.0},
            "progress_path": {"type": "path"},
        },
        supports_check_mode=True,
    )
    for lib, present in (
        ("alembic", alembic_ops.HAS_ALEMBIC),
        ("sqlalchemy", alembic_ops.HAS_SQLALCHEMY),
        ("psycopg2", HAS_PSYCOPG2),
    ):
        if not present:
            module.fail_json(msg=missing_required_lib(lib))

    def progress(revision: str, message: str, elapsed: float) -> None:
        module.log(f"alembic_migration: revision {revision} ({message}) done in {elapsed:.3f} s")

    progress_path = module.params["progress_path"]

    def event(item: dict) -> None:
        if item.get("event") == "backfill":
            eta = f", ETA {item['eta_s']:.0f} s" if not item.get("done") else " (done)"
            text = (
                f"revision {item.get('revision')} backfill of {item.get('table')}: {item.get('rows_done')}/"
                f"{item.get('rows_total')} rows, {item.get('rate_rows_s')} rows/s{eta}"
            )
        else:
            text = f"revision {item.get('revision')}: {json.dumps(item, default=str)}"
        module.log(f"alembic_migration: {text}")
        if progress_path and not module.check_mode:
            fd = os.open(progress_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(item, default=str) + "\n")

    conn = conn_info_from(module.params, "tracehub.deploy alembic_migration")
    try:
        settings = alembic_ops.OnlineSettings(
            lock_timeout=module.params["lock_timeout"],
            lock_retries=module.params["lock_retries"],
            lock_retry_delay=module.params["lock_retry_delay"],
            batch_size=module.params["batch_size"],
            batch_pause=module.params["batch_pause"],
        )
        result = alembic_ops.migrate(
            conn,
            module.params["script_location"],
            module.params["revision"],
            allow_downgrade=module.params["allow_downgrade"],
            dry_run=module.check_mode,
            on_progress=progress,
            settings=settings,
            lock_wait=module.params["lock_wait"],
            on_event=event,
        )
    except DeployError as exc:
        module.fail_json(msg=str(exc), **exc.details)

    migration = result.as_dict()
    changed = migration.pop("changed")
    migration.pop("sql")  # check mode: the same SQL is in queries
    planned = alembic_ops.Plan(result.from_revision, result.to_revision, result.direction, result.pending)
    if module.check_mode:
        queries = [item["sql"] for item in result.sql]
    else:
        verb = "undone" if result.direction == alembic_ops.DOWNGRADE else "applied"
        queries = [f"-- revision {a.revision} ({a.message}) {verb} in {a.duration_s:.3f} s" for a in result.applied]
    output = {
        "changed": changed,
        "msg": alembic_ops.describe_move(conn.dbname, planned, module.check_mode),
        "migration": migration,
        "queries": queries,
    }
    if module._diff:
        output["diff"] = {
            "before": {"revision": alembic_ops.rev_label(result.from_revision)},
            "after": {"revision": alembic_ops.rev_label(result.to_revision)},
        }
    module.exit_json(**output)


if __name__ == "__main__":
    main()
