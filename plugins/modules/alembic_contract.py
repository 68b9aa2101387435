#!/usr/bin/python
# Copyright: (c) 2026, tracehub.deploy developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
---
module: alembic_contract
short_description: Remove the temporary expand-phase objects of applied Alembic revisions (contract step)
description:
  - The last step of an expand/contract migration. Some revisions keep a temporary object while the old
    application still runs; for TraceHub, revision 005's C(DEFAULT) on C(organization_id) that makes every
    row v1.2 inserts (without knowing the column) belong to VIBOTAJ.
  - For each applied revision that defines C(contract_pending(connection)) and C(contract(connection, settings)),
    reads what is still pending and removes it, one table per short transaction under O(lock_timeout),
    retried with backoff, naming the blocking session when a lock cannot be had.
  - Run it only once the old application (blue, v1.2) is retired. Afterwards an insert without
    C(organization_id) fails on the NOT NULL constraint, which is right for v1.3 and fatal for v1.2.
  - Idempotent; holds the database's operation lock while it changes anything.
version_added: 1.1.0
requirements:
  - alembic
  - sqlalchemy >= 2.0
  - psycopg2 (psycopg2-binary)
options:
  script_location:
    description: Directory of the Alembic environment (the one holding C(env.py) and C(versions/)).
    type: path
    required: true
  lock_wait:
    description: Seconds to wait for another run holding the database's operation lock, then fail naming it.
    type: float
    default: 30
  lock_timeout:
    description: Longest wait, in seconds, for each table lock (PostgreSQL C(lock_timeout)).
    type: float
    default: 0.2
  lock_retries:
    description: Further attempts after a lock timeout, before failing naming the blocking session.
    type: int
    default: 10
  lock_retry_delay:
    description: Seconds before the first retry; doubled for each further one (capped at 15 s).
    type: float
    default: 0.5
attributes:
  check_mode:
    support: full
    details: Reads what is pending and reports it; nothing is changed.
  diff_mode:
    support: full
    details: The pending objects before and after.
extends_documentation_fragment:
  - tracehub.deploy.postgres
  - tracehub.deploy.attributes
seealso:
  - module: tracehub.deploy.alembic_migration
author:
  - tracehub.deploy developers (@tracehub)
"""

EXAMPLES = r"""
- name: Remove the defaults that kept v1.2's rows owned, once blue is retired
  tracehub.deploy.alembic_contract:
    login_host: "{{ db_host }}"
    login_user: "{{ db_user }}"
    login_password: "{{ vault_db_password }}"
    login_db: tracehub
    script_location: /opt/tracehub/alembic
"""

RETURN = r"""
msg:
  description: One-sentence summary.
  returned: always
  type: str
  sample: "Contracted tracehub on 9 table(s) (audit_logs, ...): Remove the temporary VIBOTAJ default ..."
contract:
  description: The contract steps found and what they did (or would do in check mode).
  returned: always
  type: dict
  contains:
    database:
      description: Database name.
      type: str
      sample: tracehub
    revision:
      description: The database's current revision.
      type: str
      sample: "006"
    steps:
      description: Per revision with a contract step, its C(description), what was C(pending) and what was C(done).
      type: list
      elements: dict
      sample: [{"revision": "005", "description": "Remove the temporary VIBOTAJ default of organization_id.",
                "pending": ["users", "shipments"], "done": ["users", "shipments"]}]
    dry_run:
      description: True in check mode.
      type: bool
      sample: false
  sample: {"database": "tracehub", "revision": "006", "steps": [], "dry_run": false}
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
            "lock_wait": {"type": "float", "default": 30.0},
            "lock_timeout": {"type": "float", "default": 0.2},
            "lock_retries": {"type": "int", "default": 10},
            "lock_retry_delay": {"type": "float", "default": 0.5},
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

    conn = conn_info_from(module.params, "tracehub.deploy alembic_contract")
    try:
        settings = alembic_ops.OnlineSettings(
            lock_timeout=module.params["lock_timeout"],
            lock_retries=module.params["lock_retries"],
            lock_retry_delay=module.params["lock_retry_delay"],
        )
        result = alembic_ops.contract(
            conn,
            module.params["script_location"],
            dry_run=module.check_mode,
            settings=settings,
            lock_wait=module.params["lock_wait"],
        )
    except DeployError as exc:
        module.fail_json(msg=str(exc), **exc.details)

    output = {"changed": result.changed, "msg": alembic_ops.describe_contract(result), "contract": result.as_dict()}
    output["contract"].pop("changed")
    if module._diff:
        output["diff"] = {
            "before": {"pending": sorted({t for s in result.steps for t in s["pending"]})},
            "after": {
                "pending": sorted(
                    {t for s in result.steps for t in s["pending"]} - {t for s in result.steps for t in s["done"]}
                )
            },
        }
    module.exit_json(**output)


if __name__ == "__main__":
    main()
