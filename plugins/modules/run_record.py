#!/usr/bin/python
# Copyright: (c) 2026, tracehub.deploy developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
---
module: run_record
short_description: Append what a deployment phase did to the run's JSON record
description:
  - Every phase of a tracehub.deploy run (backup, migrate, validate, ...) appends one entry to a single JSON
    record per run, C(<path>/<run_id>.json), telling the phase, its status, timing, environment, database and
    what it did.
  - The record also holds, once, the run's inventory, the collection's git commit, the user and the controller.
  - Writes are serialised with a file lock and made atomic, so concurrent phases never lose entries.
  - Keys that look like secrets (password, token, ...) are replaced by a placeholder at any depth of O(data).
version_added: 1.0.0
options:
  path:
    description: Directory holding the run records; created with mode 0700 when missing.
    type: path
    required: true
  run_id:
    description: Identifier of the run; letters, digits, V(.), V(_) and V(-) only.
    type: str
    required: true
  phase:
    description: Name of the phase appending its entry.
    type: str
    required: true
  status:
    description: How the phase ended.
    type: str
    default: ok
    choices: [ok, failed, skipped]
  changed:
    description: Whether the phase changed anything.
    type: bool
    default: false
  environment:
    description: Environment the phase worked on (staging, production, ...).
    type: str
  database:
    description: Database the phase worked on.
    type: str
  host:
    description: Inventory host the phase ran for.
    type: str
  started:
    description: When the phase started, ISO-8601; the duration is computed from it.
    type: str
  data:
    description:
      - What the phase did (results, manifest, revisions).
      - Must not hold secrets; secret-looking keys are masked.
    type: dict
    default: {}
  inventory:
    description: Inventory the run uses, stored when the record is created.
    type: str
  git_commit:
    description: Commit of the collection, stored when the record is created.
    type: str
attributes:
  check_mode:
    support: full
    details: In check mode nothing is written; the result shows the record as it would be.
  diff_mode:
    support: none
extends_documentation_fragment:
  - tracehub.deploy.attributes
notes:
  - In check mode nothing is written.
  - Appending to the record is reported as C(changed=false) because it is bookkeeping, not a change to the
    managed system.
seealso:
  - module: tracehub.deploy.pg_backup
  - module: tracehub.deploy.alembic_migration
author:
  - tracehub.deploy developers (@tracehub)
"""

EXAMPLES = r"""
- name: Record the backup phase in the run record
  tracehub.deploy.run_record:
    path: /var/lib/tracehub-deploy/runs
    run_id: "{{ hostvars['localhost']['tracehub_run_id'] }}"
    phase: backup
    environment: production
    database: tracehub
    started: "{{ __backup_started }}"
    changed: true
    data:
      manifest: "{{ __backup_result.backup }}"
  delegate_to: localhost
"""

RETURN = r"""
record:
  description: The run record after the append (in check mode, as it would be).
  returned: always
  type: dict
  sample:
    run_id: 20261203T183000Z-4711
    inventory: inventories/production
    git_commit: 3947522
    user: ops
    phases:
      - phase: backup
        status: ok
        duration_s: 12.5
entry:
  description: The entry this call appended.
  returned: always
  type: dict
  sample: {phase: migrate, status: ok, duration_s: 48.2, changed: true}
path:
  description: Path of the record file.
  returned: always
  type: str
  sample: /var/lib/tracehub-deploy/runs/20261203T183000Z-4711.json
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tracehub.deploy.plugins.module_utils.errors import DeployError
from ansible_collections.tracehub.deploy.plugins.module_utils.run_record import append_phase


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "run_id": {"type": "str", "required": True},
            "phase": {"type": "str", "required": True},
            "status": {"type": "str", "default": "ok", "choices": ["ok", "failed", "skipped"]},
            "changed": {"type": "bool", "default": False},
            "environment": {"type": "str"},
            "database": {"type": "str"},
            "host": {"type": "str"},
            "started": {"type": "str"},
            "data": {"type": "dict", "default": {}},
            "inventory": {"type": "str"},
            "git_commit": {"type": "str"},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        record, entry, path = append_phase(
            Path(params["path"]),
            params["run_id"],
            {
                key: params[key]
                for key in ("phase", "status", "changed", "environment", "database", "host", "started", "data")
            },
            {"inventory": params["inventory"], "git_commit": params["git_commit"]},
            dry_run=module.check_mode,
        )
    except DeployError as exc:
        module.fail_json(msg=str(exc), **exc.details)
    # Appending to the audit trail is bookkeeping, not a change to the managed system: reporting it as a
    # change would make every run look non-idempotent.
    module.exit_json(
        changed=False,
        msg=f"Recorded phase {entry.phase} ({entry.status}) in {path}.",
        record=record,
        entry=entry.as_dict(),
        path=str(path),
    )


if __name__ == "__main__":
    main()
