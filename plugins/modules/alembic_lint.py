#!/usr/bin/python
# Copyright: (c) 2026, tracehub.deploy developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
---
module: alembic_lint
short_description: Check pending Alembic revisions for statements that would stall a live application
description:
  - Renders each pending revision's SQL offline (Alembic's C(--sql) mode, nothing is executed) and reads it
    statement by statement, tracking transactions, the C(lock_timeout) in force and the tables the revision
    creates itself (new tables are exempt).
  - Flags what takes a long or strong lock on an existing table, with the revision, the statement and the
    safe alternative; rules C(concurrent-index) (index built without C(CONCURRENTLY), or a UNIQUE/PRIMARY KEY
    constraint not added C(USING INDEX)), C(not-null-without-check), C(constraint-not-valid) (FOREIGN KEY or
    CHECK without C(NOT VALID)), C(table-rewrite) (type change, volatile default), C(multi-table-ddl),
    C(unbatched-dml) (UPDATE/DELETE not bounded to a batch) and C(lock-timeout) (strong lock with no
    C(lock_timeout)).
  - 'A revision acknowledges a rule explicitly with a module-level
    C(MIGRATION_LINT_ACKNOWLEDGED = {"rule": "reason"}); acknowledged findings are reported, not failed.'
  - Fails when any finding is not acknowledged (unless O(fail_on_findings=false)); C(changed) is always false.
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
  revision:
    description: Last revision to lint (V(head) or a revision id).
    type: str
    default: head
  from_revision:
    description:
      - Lint the revisions after this one (a revision id, or V(base) for all) without contacting the database.
      - Without it, the database's current revision is read and the revisions pending from there are linted.
    type: str
  fail_on_findings:
    description: Fail when a finding is not acknowledged. V(false) only reports.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: The module only reads; it behaves the same in check mode.
  diff_mode:
    support: none
extends_documentation_fragment:
  - tracehub.deploy.postgres
  - tracehub.deploy.attributes
seealso:
  - module: tracehub.deploy.alembic_migration
notes:
  - The migrate role runs this module as a gate before applying anything.
author:
  - tracehub.deploy developers (@tracehub)
"""

EXAMPLES = r"""
- name: Refuse to migrate with revisions unsafe under live traffic
  tracehub.deploy.alembic_lint:
    login_host: "{{ db_host }}"
    login_user: "{{ db_user }}"
    login_password: "{{ vault_db_password }}"
    login_db: tracehub
    script_location: /opt/tracehub/alembic

- name: Lint every revision after 002 without touching any database
  tracehub.deploy.alembic_lint:
    login_db: tracehub
    script_location: "{{ playbook_dir }}/../alembic"
    from_revision: "002"
    fail_on_findings: false
  register: lint
"""

RETURN = r"""
msg:
  description: One-sentence summary.
  returned: always
  type: str
  sample: "Linted 4 revisions (003-006): safe for live traffic."
lint:
  description: What was linted and what was found.
  returned: always
  type: dict
  contains:
    revisions:
      description: Revisions linted, in order.
      type: list
      elements: str
      sample: ["003", "004", "005", "006"]
    passed:
      description: True when no finding is left unacknowledged.
      type: bool
      sample: true
    findings:
      description:
        - Every finding (C(rule), C(revision), C(statement), C(table), C(message), C(alternative),
          C(acknowledged), C(reason)).
      type: list
      elements: dict
      sample: [{"rule": "concurrent-index", "revision": "004", "table": "users",
                "statement": "CREATE INDEX ix_users_organization_id ON users (organization_id)",
                "message": "Revision 004: index built while writes are blocked on users: ...",
                "alternative": "Build it with CREATE INDEX CONCURRENTLY ...", "acknowledged": false,
                "reason": null}]
    blocking:
      description: Number of findings not acknowledged.
      type: int
      sample: 0
    acknowledged:
      description: Number of acknowledged findings.
      type: int
      sample: 0
    by_rule:
      description: Findings not acknowledged, counted per rule.
      type: dict
      sample: {"unbatched-dml": 9}
    from_revision:
      description: Revision the linted range starts after; V(null) at base.
      type: str
      sample: "002"
    to_revision:
      description: Last revision of the range.
      type: str
      sample: "006"
    database:
      description: Database name.
      type: str
      sample: tracehub
    script_location:
      description: Absolute directory of the Alembic scripts.
      type: str
      sample: /opt/tracehub/alembic
  sample: {"revisions": ["003"], "passed": true, "findings": [], "blocking": 0}
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.tracehub.deploy.plugins.module_utils import alembic_ops, migration_lint
from ansible_collections.tracehub.deploy.plugins.module_utils.common import conn_info_from, pg_connection_spec
from ansible_collections.tracehub.deploy.plugins.module_utils.errors import DeployError
from ansible_collections.tracehub.deploy.plugins.module_utils.pg import HAS_PSYCOPG2


def main() -> None:
    module = AnsibleModule(
        argument_spec=pg_connection_spec()
        | {
            "script_location": {"type": "path", "required": True},
            "revision": {"type": "str", "default": "head"},
            "from_revision": {"type": "str"},
            "fail_on_findings": {"type": "bool", "default": True},
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

    conn = conn_info_from(module.params, "tracehub.deploy alembic_lint")
    try:
        report = migration_lint.lint(
            conn,
            module.params["script_location"],
            module.params["revision"],
            from_revision=module.params["from_revision"],
        )
    except DeployError as exc:
        module.fail_json(msg=str(exc), **exc.details)

    result = {"changed": False, "msg": migration_lint.describe(report), "lint": report.as_dict()}
    if not report.passed and module.params["fail_on_findings"]:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
