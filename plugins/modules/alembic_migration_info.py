#!/usr/bin/python
# Copyright: (c) 2026, tracehub.deploy developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
---
module: alembic_migration_info
short_description: Report a database's Alembic revision and what is pending
description:
  - Reads the current Alembic revision(s) of a PostgreSQL database and the head(s) of an Alembic script
    directory, and lists the revisions an upgrade to head would apply.
  - Read-only; never changes anything and never takes the operation lock.
  - Fails clearly when the database is stamped with a revision the scripts do not know (wrong
    O(script_location), or a newer application version migrated the database).
version_added: 1.0.0
requirements:
  - alembic
  - sqlalchemy >= 2.0
  - psycopg2 (psycopg2-binary)
options:
  script_location:
    description:
      - Directory of the Alembic environment (the one holding C(env.py) and C(versions/)).
    type: path
    required: true
attributes:
  check_mode:
    support: full
    details: Read-only, runs the same in check mode.
  diff_mode:
    support: none
extends_documentation_fragment:
  - tracehub.deploy.postgres
  - tracehub.deploy.attributes
seealso:
  - module: tracehub.deploy.alembic_migration
author:
  - tracehub.deploy developers (@tracehub)
"""

EXAMPLES = r"""
- name: Read where the TraceHub database stands
  tracehub.deploy.alembic_migration_info:
    login_host: "{{ db_host }}"
    login_user: "{{ db_user }}"
    login_password: "{{ vault_db_password }}"
    login_db: tracehub
    script_location: /opt/tracehub/alembic
  register: migration_state

- name: Show what an upgrade would apply
  ansible.builtin.debug:
    msg: "{{ migration_state.migration.pending | map(attribute='revision') | list }}"
  when: not migration_state.migration.is_at_head
"""

RETURN = r"""
msg:
  description: One-sentence summary.
  returned: always
  type: str
  sample: tracehub is at 002; 4 revisions pending up to 006.
migration:
  description: The database's migration state.
  returned: always
  type: dict
  contains:
    database:
      description: Database name.
      type: str
      sample: tracehub
    current:
      description: Current revision(s) of the database; empty at base.
      type: list
      elements: str
      sample: ["002"]
    heads:
      description: Head revision(s) of the scripts.
      type: list
      elements: str
      sample: ["006"]
    pending:
      description: Revisions an upgrade to head would apply, in order (C(revision), C(message), C(down_revision)).
      type: list
      elements: dict
      sample: [{"revision": "003", "message": "Add tenancy tables.", "down_revision": "002"}]
    is_at_head:
      description: Whether the database is at the scripts' head(s).
      type: bool
      sample: false
    script_location:
      description: Absolute path of the script directory read.
      type: str
      sample: /opt/tracehub/alembic
  sample: {"current": ["002"], "heads": ["006"], "is_at_head": false}
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.tracehub.deploy.plugins.module_utils import alembic_ops
from ansible_collections.tracehub.deploy.plugins.module_utils.common import conn_info_from, pg_connection_spec
from ansible_collections.tracehub.deploy.plugins.module_utils.errors import DeployError
from ansible_collections.tracehub.deploy.plugins.module_utils.pg import HAS_PSYCOPG2


def main() -> None:
    module = AnsibleModule(
        argument_spec=pg_connection_spec() | {"script_location": {"type": "path", "required": True}},
        supports_check_mode=True,
    )
    for lib, present in (
        ("alembic", alembic_ops.HAS_ALEMBIC),
        ("sqlalchemy", alembic_ops.HAS_SQLALCHEMY),
        ("psycopg2", HAS_PSYCOPG2),
    ):
        if not present:
            module.fail_json(msg=missing_required_lib(lib))

    conn = conn_info_from(module.params, "tracehub.deploy alembic_migration_info")
    try:
        state = alembic_ops.info(conn, module.params["script_location"])
    except DeployError as exc:
        module.fail_json(msg=str(exc), **exc.details)

    module.exit_json(changed=False, msg=alembic_ops.describe_state(state), migration=state.as_dict())


if __name__ == "__main__":
    main()
