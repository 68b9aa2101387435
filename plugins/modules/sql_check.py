#!/usr/bin/python
# Copyright: (c) 2026, tracehub.deploy developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
---
module: sql_check
short_description: Run a named suite of read-only SQL checks against a PostgreSQL database
description:
  - Runs every check of a validation suite (YAML data with C(name), C(params), C(facts), C(checks)) in one
    C(READ ONLY) transaction that is always rolled back, and returns every result.
  - Each check is a single C(SELECT) with an expectation (C(rows), C(value), C(min)/C(max) or C(true)) and a
    C(severity) (C(fail) or C(warn)) saying what an unmet expectation means. A check whose
    C(incomplete_when) query returns true warns instead (the state it verifies is not there yet, for
    example a revision that has not run), and a weaker C(tolerate) expectation turns a miss into a warning.
  - Each check runs inside its own savepoint, so a check that errors (a table that does not exist yet)
    becomes that check's result, with the database error, and the other checks still run.
  - A check with C(for_each) runs once per item of a list parameter; C({item}) in its SQL becomes the item
    as a safely quoted identifier (C(psycopg2.sql.Identifier)), never glued into the text.
  - The task fails only when a check fails (or warns, with O(fail_on_warn)); the failure message names every
    failed check and what to do about it. C(changed) is always false.
version_added: 1.0.0
requirements:
  - psycopg2 (psycopg2-binary)
  - PyYAML (only for O(suite_path))
options:
  suite:
    description:
      - The suite as data, for example C("{{ lookup('ansible.builtin.file', 'multitenancy.yml') | from_yaml }}").
      - Keys C(name) (required), C(description), C(params) (declared parameters and their defaults),
        C(facts) (named one-value queries run first; an error or no row gives null; usable as
        C(%(name\)s) afterwards) and C(checks) (required list).
      - Each check has C(id), C(name), C(sql) and C(expect) (required) and optionally C(severity)
        (V(fail) or V(warn), default V(fail)), C(tolerate) (a weaker expectation whose miss only warns),
        C(tolerated_message) (why such a miss is acceptable, shown with it), C(incomplete_when),
        C(incomplete_message), C(message), C(for_each) and C(collect_as).
      - Parameters reach the SQL as psycopg2 C(%(name\)s) placeholders, so a literal percent sign is written
        C(%%). List parameters become arrays, for example C(relname = ANY(%(tenant_tables\)s\)).
      - Mutually exclusive with O(suite_path).
    type: dict
  suite_path:
    description:
      - Path of a suite YAML file on the host that runs the module.
      - Mutually exclusive with O(suite).
    type: path
  params:
    description:
      - Values overriding the suite's declared C(params); an undeclared name is an error.
    type: dict
    default: {}
  fail_on_warn:
    description:
      - Fail the task when any check warns, not only when one fails.
    type: bool
    default: false
  statement_timeout:
    description:
      - Seconds each statement may run before the server cancels it (the check then fails). V(0) means no limit.
    type: int
    default: 60
  max_rows:
    description:
      - How many rows of each check's result to return in C(observed) (the row count is always exact).
    type: int
    default: 20
attributes:
  check_mode:
    support: full
    details: The suite is read-only; check mode runs exactly the same queries.
  diff_mode:
    support: none
extends_documentation_fragment:
  - tracehub.deploy.postgres
  - tracehub.deploy.attributes
notes:
  - The transaction is C(READ ONLY) and rolled back; a check that tries to write fails with the server's
    error and nothing is written. A check must be one statement.
  - The summary line is exactly C(<n> passed, <n> warnings, <n> failed).
seealso:
  - module: tracehub.deploy.alembic_migration
  - module: tracehub.deploy.run_record
author:
  - tracehub.deploy developers (@tracehub)
"""

EXAMPLES = r"""
- name: Run the twelve multi-tenancy checks
  tracehub.deploy.sql_check:
    login_host: db.internal
    login_user: tracehub
    login_password: "{{ vault_db_password }}"
    login_db: tracehub
    suite: "{{ lookup('ansible.builtin.file', 'suites/multitenancy.yml') | from_yaml }}"
    params:
      target_revision: "005"
  register: __validate_check
  no_log: true

- name: Take the pre-migration baseline from a suite file on the database host
  tracehub.deploy.sql_check:
    login_user: tracehub
    login_password: "{{ vault_db_password }}"
    login_db: tracehub
    suite_path: /etc/tracehub/suites/pre_migration.yml
    statement_timeout: 300
  register: __migrate_baseline
  no_log: true

- name: A suite of your own, inline
  tracehub.deploy.sql_check:
    login_user: app
    login_password: "{{ vault_app_password }}"
    login_db: app
    fail_on_warn: true
    suite:
      name: app_smoke
      params:
        tables: [orders, customers]
      checks:
        - id: not_empty
          name: Every core table has rows
          for_each: tables
          sql: SELECT count(*) FROM {item}
          expect: {min: 1}
          severity: warn
          message: An empty core table after a release usually means a failed data migration.
"""

RETURN = r"""
msg:
  description: The summary line (or, on failure, the summary and every failed check).
  returned: always
  type: str
  sample: 12 passed, 0 warnings, 0 failed
checks:
  description: The suite's results.
  returned: when the suite ran (also on failure because of a failed check)
  type: dict
  contains:
    suite:
      description: Name of the suite.
      type: str
      sample: multitenancy
    summary:
      description: C(<n> passed, <n> warnings, <n> failed).
      type: str
      sample: 11 passed, 1 warnings, 0 failed
    passed:
      description: Number of checks that passed.
      type: int
      sample: 11
    warnings:
      description: Number of checks that warned.
      type: int
      sample: 1
    failed:
      description: Number of checks that failed.
      type: int
      sample: 0
    results:
      description:
        - One entry per check, in suite order.
        - C(status) is V(pass), V(warn) or V(fail); C(reason) says why (expected against observed, the
          database error, or C(incomplete:) and why); C(observed) holds C(value) (and C(row) when the query
          returns several columns) or C(row_count) and C(rows), per item for C(for_each) checks, which also
          return C(values) (item to first value).
      type: list
      elements: dict
      sample:
        - id: "7"
          name: At least 15 composite ix_*_organization_id_* indexes (16 expected)
          status: warn
          severity: fail
          expected: {min: 16}
          observed: {value: 15}
          reason: expected at least 16, got 15 (tolerated)
          message: Tenant queries filter on organization_id first; without the composite indexes they scan.
          incomplete: false
          error: null
          duration_ms: 1.9
    collected:
      description: Observed values of checks with C(collect_as), by that name (C(for_each) checks give item to value).
      type: dict
      sample: {baseline: {users: 45, shipments: 23, documents: 89}}
    facts:
      description: The suite's facts as they were read (C(errors) lists facts whose query failed).
      type: dict
      sample: {current_revision: "006", revision_rank: 6}
queries:
  description: Every statement run, parameters interpolated (no secrets), savepoints left out.
  returned: when the suite ran
  type: list
  elements: str
  sample: ["SET TRANSACTION READ ONLY", "SELECT count(*) FROM \"users\" WHERE organization_id IS NULL"]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.tracehub.deploy.plugins.module_utils.common import conn_info_from, pg_connection_spec
from ansible_collections.tracehub.deploy.plugins.module_utils.errors import DeployError
from ansible_collections.tracehub.deploy.plugins.module_utils.pg import connect
from ansible_collections.tracehub.deploy.plugins.module_utils.sql_checks import (
    HAS_PSYCOPG2,
    HAS_YAML,
    load_suite_file,
    parse_suite,
    run_suite,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=pg_connection_spec()
        | {
            "suite": {"type": "dict"},
            "suite_path": {"type": "path"},
            "params": {"type": "dict", "default": {}},
            "fail_on_warn": {"type": "bool", "default": False},
            "statement_timeout": {"type": "int", "default": 60},
            "max_rows": {"type": "int", "default": 20},
        },
        mutually_exclusive=[("suite", "suite_path")],
        required_one_of=[("suite", "suite_path")],
        supports_check_mode=True,
    )
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"))
    if module.params["suite_path"] and not HAS_YAML:
        module.fail_json(msg=missing_required_lib("PyYAML"))
    conn = conn_info_from(module.params, application_name="tracehub.deploy sql_check")
    try:
        raw = module.params["suite"]
        if raw is None:
            raw = load_suite_file(module.params["suite_path"])
        suite = parse_suite(raw)
        # Read-only by construction: check mode runs the same path.
        result = run_suite(
            suite,
            module.params["params"],
            lambda: connect(conn),
            statement_timeout=module.params["statement_timeout"],
            max_rows=module.params["max_rows"],
            target=conn.describe(),
        )
    except DeployError as exc:
        module.fail_json(msg=str(exc), changed=False, **exc.details)
    failure = result.failure_message(fail_on_warn=module.params["fail_on_warn"])
    if failure:
        module.fail_json(**(result.as_dict() | {"msg": failure}))
    module.exit_json(**result.as_dict())


if __name__ == "__main__":
    main()
