#!/usr/bin/python
# Copyright: (c) 2026, tracehub.deploy developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_backup_info
short_description: List the pg_dump backups in a backup directory
description:
  - Reads the manifests that M(tracehub.deploy.pg_backup) wrote in O(dest) and lists the backups newest
    first, optionally only those of one environment or database, only verified ones, or only those
    younger than O(max_age).
  - Files that are not readable manifests are reported in RV(unreadable) with the reason, never silently
    dropped.
  - With O(check_integrity=true) each listed dump is re-hashed (detects corruption and truncation) and
    read with C(pg_restore --list); the outcome is in C(integrity_ok) of each item of RV(backups).
  - Read-only; never connects to a database; C(changed) is always false.
version_added: 1.0.0
options:
  dest:
    description:
      - Backup directory. A missing directory simply has no backups.
    type: path
    required: true
  environment:
    description:
      - Only backups of this environment.
    type: str
  database:
    description:
      - Only backups of this database.
    type: str
  verified_only:
    description:
      - Only backups whose manifest says C(verified=true) (listed and test-restored).
    type: bool
    default: false
  max_age:
    description:
      - Only backups younger than this. Seconds (V(900)) or a duration such as V(15m), V(1h), V(2d).
    type: raw
  check_integrity:
    description:
      - Re-hash every listed dump against its manifest and read it with C(pg_restore --list).
    type: bool
    default: false
  pg_bin_dir:
    description:
      - Directory holding the C(pg_restore) used by O(check_integrity). Defaults to the one on E(PATH).
    type: path
attributes:
  check_mode:
    support: full
    details: Runs the same read-only listing (and integrity checks) in check mode.
  diff_mode:
    support: none
extends_documentation_fragment:
  - tracehub.deploy.attributes
seealso:
  - module: tracehub.deploy.pg_backup
author:
  - tracehub.deploy developers (@tracehub)
"""

EXAMPLES = r"""
- name: Find a verified production backup younger than one hour
  tracehub.deploy.pg_backup_info:
    dest: /var/backups/tracehub
    environment: production
    database: tracehub
    verified_only: true
    max_age: 1h
    check_integrity: true
  register: recent_backups

- name: Require a verified, intact backup before migrating
  ansible.builtin.assert:
    that:
      - recent_backups.backups | length > 0
      - recent_backups.backups[0].integrity_ok | bool
    fail_msg: No verified backup younger than 1h in /var/backups/tracehub; run the backup phase first.
"""

RETURN = r"""
msg:
  description: One-sentence summary.
  returned: always
  type: str
  sample: Found 3 backups in /var/backups/tracehub (newest production-tracehub-20250301T120000Z, 42 s old).
backups:
  description:
    - Matching backups, newest first. Each is the full manifest (see M(tracehub.deploy.pg_backup)) plus
      C(manifest_path) and C(age_seconds).
    - With O(check_integrity=true) also C(integrity_ok), C(sha256_ok), C(list_ok) and C(integrity_reason).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "production-tracehub-20250301T120000Z", "created_at": "2025-03-01T12:00:00Z",
            "alembic_revision": "002", "size_bytes": 10485760, "sha256": "9f86d0...", "verified": true,
            "pre_migration": false, "path": "/var/backups/tracehub/production-tracehub-20250301T120000Z.dump",
            "age_seconds": 42, "integrity_ok": true}]
latest:
  description: The first element of RV(backups), or V(null) when there is none.
  returned: always
  type: dict
  sample: {"name": "production-tracehub-20250301T120000Z", "verified": true, "age_seconds": 42}
unreadable:
  description: C(*.json) files in O(dest) that are not readable manifests, with the reason.
  returned: always
  type: list
  elements: dict
  sample: [{"path": "/var/backups/tracehub/notes.json", "reason": "... is not a readable JSON manifest: ..."}]
commands:
  description: Commands run by O(check_integrity) (C(pg_restore --list) per dump), as argv lists.
  returned: always
  type: list
  elements: list
  sample: [["/usr/bin/pg_restore", "--list", "/var/backups/tracehub/production-tracehub-20250301T120000Z.dump"]]
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tracehub.deploy.plugins.module_utils import backup
from ansible_collections.tracehub.deploy.plugins.module_utils.common import runner_for
from ansible_collections.tracehub.deploy.plugins.module_utils.errors import DeployError


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "environment": {"type": "str"},
            "database": {"type": "str"},
            "verified_only": {"type": "bool", "default": False},
            "max_age": {"type": "raw"},
            "check_integrity": {"type": "bool", "default": False},
            "pg_bin_dir": {"type": "path"},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        max_age = backup.parse_duration(params["max_age"])
        pg_bin_dir = Path(params["pg_bin_dir"]) if params["pg_bin_dir"] else None
        listing = backup.list_backups(params["dest"], params["environment"], params["database"])
        backups = backup.select_backups(listing.backups, backup.utc_now(), params["verified_only"], max_age)
        commands: list[list[str]] = []
        if params["check_integrity"]:
            run = runner_for(module)
            for entry in backups:
                report = backup.verify_existing(entry, run=run, pg_bin_dir=pg_bin_dir)
                commands.extend(report.commands)
                entry |= report.as_dict()
    except DeployError as exc:
        module.fail_json(msg=str(exc), **exc.details)

    if backups:
        newest = backups[0]
        msg = (
            f"Found {len(backups)} backup{'s' if len(backups) != 1 else ''} in {params['dest']} "
            f"(newest {newest['name']}, {newest['age_seconds']} s old)."
        )
    else:
        msg = f"Found no matching backup in {params['dest']}."
    if params["check_integrity"] and backups:
        damaged = [b["name"] for b in backups if not b["integrity_ok"]]
        msg += f" Damaged: {', '.join(damaged)}." if damaged else " All intact."
    module.exit_json(
        changed=False,
        msg=msg,
        backups=backups,
        latest=backups[0] if backups else None,
        # Not "skipped": Ansible reserves that key and would mark the whole task as skipped.
        unreadable=listing.unreadable,
        commands=commands,
    )


if __name__ == "__main__":
    main()
