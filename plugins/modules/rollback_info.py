#!/usr/bin/python
# Copyright: (c) 2026, tracehub.deploy developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
---
module: rollback_info
short_description: What each rollback level would do to a TraceHub database, and what it would cost
description:
  - Read-only. Reads the current Alembic revision, the newest migrate phase of the run records (revision
    before the migration, baseline row counts) and the newest verified pre-migration backup.
  - Level 1 (Alembic downgrade) - the target revision (O(target_revision), else the decision-matrix entry of
    O(reason), else the revision recorded before the migration, else the pre-migration backup's, else 002),
    the revisions to undo, and the rows undoing them would lose (tenant rows of other organizations;
    organizations, memberships and invitations created after the migration).
  - Level 3 (restore of the pre-migration backup) - the backup, its time and the rows written since (created
    or updated after it, by their timestamps) that a restore would discard.
  - RV(rollback.advice) says per level whether it is still safe and what it costs.
version_added: 1.1.0
requirements:
  - psycopg2 (psycopg2-binary)
options:
  environment:
    description: Environment of the database (selects its run records and backups).
    type: str
    required: true
  records_dir:
    description: Directory of the run records.
    type: path
  backup_dir:
    description: Directory of the backups.
    type: path
  target_revision:
    description: Level-1 target revision, overriding every default.
    type: str
  reason:
    description:
      - The decision-matrix situation - V(004_failed) (back to 003), V(005_failed) (to 004), V(006_failed)
        (to 005), V(validation_errors) (to 004), V(corruption) (level 3); or free text, reported as given.
    type: str
attributes:
  check_mode:
    support: full
    details: Read-only; identical in check mode.
  diff_mode:
    support: none
extends_documentation_fragment:
  - tracehub.deploy.postgres
  - tracehub.deploy.attributes
seealso:
  - module: tracehub.deploy.pg_restore
  - module: tracehub.deploy.alembic_migration
author:
  - tracehub.deploy developers (@tracehub)
"""

EXAMPLES = r"""
- name: Assess the rollback levels after revision 005 failed
  tracehub.deploy.rollback_info:
    login_host: "{{ db_host }}"
    login_user: "{{ db_user }}"
    login_password: "{{ vault_db_password }}"
    login_db: tracehub
    environment: production
    records_dir: /var/lib/tracehub/runs
    backup_dir: /var/backups/tracehub
    reason: 005_failed
"""

RETURN = r"""
msg:
  description: The advice, one sentence per level.
  returned: always
  type: str
  sample: Level 1 is SAFE - undoing 006, 005, 004, 003 loses no data. Level 3 restores ...
rollback:
  description: The assessment.
  returned: always
  type: dict
  contains:
    current_revision:
      description: Alembic revision now.
      type: str
      sample: "006"
    reason:
      description: O(reason).
      type: str
      sample: validation_errors
    matrix_entry:
      description: The decision-matrix entry of O(reason) (level, target, when), or V(null).
      type: dict
      sample: {"level": 1, "target": "004", "when": "the post-migration checks fail"}
    migration:
      description: The migrate phase found in the run records (run_id, revision_before, revision_after, finished).
      type: dict
      sample: {"run_id": "20250301T120000Z-1", "revision_before": "002", "revision_after": "006"}
    baseline_counts:
      description: Row counts of the tenant tables before the migration, from the run record.
      type: dict
      sample: {"shipments": 23}
    row_counts:
      description: Row counts of the tenant tables now.
      type: dict
      sample: {"shipments": 23}
    level1:
      description: target_revision, target_source, possible, steps (revision, down_revision), losses, lossless, refusal.
      type: dict
      sample: {"target_revision": "002", "lossless": true, "steps": [{"revision": "006", "down_revision": "005"}]}
    level2:
      description:
        - V(safe) is false when blue's (v1.2) inserts would fail, because the contract step removed the VIBOTAJ
          default of a NOT NULL C(organization_id); those tables are in C(tables_refusing_legacy_inserts).
      type: dict
      sample: {"safe": true, "tables_refusing_legacy_inserts": []}
    level3:
      description: possible, backup (manifest facts), backup_age_seconds, written_since (per table), rows_written_since.
      type: dict
      sample: {"possible": true, "rows_written_since": 0}
    advice:
      description: One line per level - still safe or not, and the cost.
      type: list
      elements: str
      sample: ["Level 1 is SAFE ..."]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.tracehub.deploy.plugins.module_utils import rollback
from ansible_collections.tracehub.deploy.plugins.module_utils.common import conn_info_from, pg_connection_spec
from ansible_collections.tracehub.deploy.plugins.module_utils.errors import DeployError


def main() -> None:
    module = AnsibleModule(
        argument_spec=pg_connection_spec()
        | {
            "environment": {"type": "str", "required": True},
            "records_dir": {"type": "path"},
            "backup_dir": {"type": "path"},
            "target_revision": {"type": "str"},
            "reason": {"type": "str"},
        },
        supports_check_mode=True,
    )
    if not rollback.HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"))
    params = module.params
    try:
        assessment = rollback.assess(
            conn_info_from(params, "tracehub.deploy rollback_info"),
            params["environment"],
            params["records_dir"],
            params["backup_dir"],
            params["target_revision"] or None,
            params["reason"] or None,
        )
    except DeployError as exc:
        module.fail_json(msg=str(exc), **exc.details)
    module.exit_json(changed=False, msg=" ".join(assessment["advice"]), rollback=assessment)


if __name__ == "__main__":
    main()
