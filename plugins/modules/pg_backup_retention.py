#!/usr/bin/python
# Copyright: (c) 2026, tracehub.deploy developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_backup_retention
short_description: Delete the backups no retention rule keeps
description:
  - Per environment and database in O(dest), keeps a backup when any rule keeps it - among the newest
    O(keep_last), younger than O(keep_days) days, the newest verified backup (always), or marked
    C(pre_migration) and not named in O(release) - and deletes the others (dump file or directory, then
    manifest).
  - With neither O(keep_last) nor O(keep_days) nothing is deleted.
  - Idempotent; check mode lists what would be deleted.
version_added: 1.1.0
options:
  dest:
    description: Backup directory.
    type: path
    required: true
  environment:
    description: Only backups of this environment. Default every environment.
    type: str
  database:
    description: Only backups of this database. Default every database.
    type: str
  keep_last:
    description: Keep the newest N backups per environment and database. Unset - no count rule.
    type: int
  keep_days:
    description: Keep backups younger than this many days (the plan - 30). V(0) with O(keep_last) - no age rule.
    type: float
    default: 30
  release:
    description: Names of pre-migration backups that may now be deleted by the other rules.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    details: Lists what would be kept and deleted; deletes nothing.
  diff_mode:
    support: none
extends_documentation_fragment:
  - tracehub.deploy.attributes
seealso:
  - module: tracehub.deploy.pg_backup
  - module: tracehub.deploy.pg_backup_info
author:
  - tracehub.deploy developers (@tracehub)
"""

EXAMPLES = r"""
- name: Keep 30 days of backups, and at least the newest 7
  tracehub.deploy.pg_backup_retention:
    dest: /var/backups/tracehub
    keep_days: 30
    keep_last: 7

- name: Let the pre-migration backup of the 1.3.0 release go
  tracehub.deploy.pg_backup_retention:
    dest: /var/backups/tracehub
    release: [production-tracehub-20250301T120000Z]
"""

RETURN = r"""
msg:
  description: One-sentence summary.
  returned: always
  type: str
  sample: Deleted 2 backup(s) from /var/backups/tracehub (a, b); kept 9.
retention:
  description: The backups kept and deleted (or to delete in check mode), newest first, with the reasons.
  returned: always
  type: dict
  contains:
    kept:
      description: Backups kept, each with name, environment, database, created_at, age_days, alembic_revision,
        size_bytes, verified, pre_migration, path, manifest_path and reasons.
      type: list
      elements: dict
      sample: [{"name": "staging-tracehub-20250301T120000Z", "reasons": ["younger than 30 days"]}]
    deleted:
      description: Backups deleted, same keys.
      type: list
      elements: dict
      sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tracehub.deploy.plugins.module_utils import retention
from ansible_collections.tracehub.deploy.plugins.module_utils.errors import DeployError


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "environment": {"type": "str"},
            "database": {"type": "str"},
            "keep_last": {"type": "int"},
            "keep_days": {"type": "float", "default": 30},
            "release": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    params = module.params
    keep_days = params["keep_days"]
    if keep_days == 0 and params["keep_last"] is not None:
        keep_days = None
    try:
        policy = retention.RetentionPolicy(
            keep_last=params["keep_last"], keep_days=keep_days, release=tuple(params["release"])
        )
        result = retention.apply(
            params["dest"], policy, params["environment"], params["database"], dry_run=module.check_mode
        )
    except DeployError as exc:
        module.fail_json(msg=str(exc), **exc.details)
    module.exit_json(**result.as_dict())


if __name__ == "__main__":
    main()
