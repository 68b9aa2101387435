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

    conn = conn_info_from(module.params, "tracehub.deploy alembic_migration")
    try:
        result = alembic_ops.migrate(
            conn,
            module.params["script_location"],
            module.params["revision"],
            allow_downgrade=module.params["allow_downgrade"],
            dry_run=module.check_mode,
            on_progress=progress,
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
