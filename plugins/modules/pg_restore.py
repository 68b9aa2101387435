#!/usr/bin/python
# Copyright: (c) 2026, tracehub.deploy developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_restore
short_description: Restore a verified backup into a PostgreSQL database without a half state
description:
  - Restores the backup named O(name), or the newest verified backup of the target's environment and
    database found in O(backup_dir) (safety backups taken by earlier restores are only restored by name).
  - Before touching anything, refuses a backup that is unverified, missing, damaged (size or sha256 differ
    from the manifest), unreadable (C(pg_restore --list)), of another environment or database (unless
    O(allow_foreign=true)), written by a C(pg_dump) newer than the local C(pg_restore), or taken from a
    server of a newer major version than the target (a newer server's dump may use syntax an older one
    rejects; restore onto a server of the dump's major version or newer).
  - A target in O(protected_environments) (production by default) is only restored when O(confirm)
    names the target database.
  - Holds the collection's operation lock on the live target database from the first change to the swap.
    Takes a safety backup of the live database first (unless O(safety_backup=false)) and returns its
    manifest, so the operator can go back to it.
  - Restores into a fresh database C(tracehub_restore_<random>) with C(pg_restore --no-owner) (objects owned
    by O(owner) or the login user; C(--no-privileges) for a backup of another environment by default),
    with O(jobs) workers; checks that every table's exact row count and the Alembic revision equal the
    manifest's and that the archive's extensions (and O(required_extensions)) are installed.
  - Then swaps it in. The live database is closed to new connections and its sessions are terminated;
    in one transaction it is renamed C(<database>_old_<UTC time>) and the restored one takes its name.
    O(app_stop_command) and O(app_start_command) run right around the swap. Old copies beyond
    O(keep_old) are dropped.
  - If any step before the swap fails, the live database is untouched and the scratch database dropped.
  - Idempotent. A database that already holds this backup (a restore marker in its comment) at the
    manifest's revision and row counts is left alone (C(changed=false)) unless O(force=true).
version_added: 1.1.0
requirements:
  - psycopg2 (psycopg2-binary)
  - C(pg_restore) and C(pg_dump) (safety backup) on the host the module runs on
  - the login role needs C(CREATEDB) and must own the target database (rename); terminating sessions of
    other roles needs C(pg_signal_backend)
options:
  backup_dir:
    description: Directory holding the backups and their JSON manifests.
    type: path
    required: true
  environment:
    description: Environment of the target database (V(staging), V(production), ...).
    type: str
    required: true
  name:
    description: Base name of the backup to restore (its manifest is C(<name>.json)). Default the newest verified.
    type: str
  source_environment:
    description: Environment whose newest verified backup is restored when O(name) is not given. Default O(environment).
    type: str
  source_database:
    description: Database whose newest verified backup is restored when O(name) is not given. Default O(login_db).
    type: str
  allow_foreign:
    description: Restore a backup of another environment or database on purpose (for example production into staging).
    type: bool
    default: false
  confirm:
    description: Name of the target database, required when O(environment) is in O(protected_environments).
    type: str
  protected_environments:
    description: Environments whose restore needs O(confirm).
    type: list
    elements: str
    default: [production]
  safety_backup:
    description: Take a verified backup of the live database before replacing it. V(false) only on purpose.
    type: bool
    default: true
  safety_backup_verify:
    description: Verification of the safety backup (V(restore) makes it restorable by this module).
    type: str
    choices: [none, list, restore]
    default: restore
  jobs:
    description: Parallel C(pg_restore) workers.
    type: int
    default: 1
  owner:
    description:
      - Role that owns the restored objects and database (the target environment's application role).
        Default the login user. Another role needs the login user to be a member of it.
    type: str
  privileges:
    description:
      - GRANT/REVOKE of the archive. V(auto) drops them for a backup of another environment (whose roles may
        not exist here), V(keep) restores them, V(drop) never does.
    type: str
    choices: [auto, keep, drop]
    default: auto
  required_extensions:
    description: Extensions that must be installed in the restored database, besides those the archive creates.
    type: list
    elements: str
    default: []
  keep_old:
    description: Replaced databases (C(<database>_old_<time>)) kept; older ones are dropped.
    type: int
    default: 2
  maintenance_db:
    description: Database to connect to for CREATE, RENAME and DROP DATABASE.
    type: str
    default: postgres
  app_stop_command:
    description: Command (argv list) run right before the swap, for example V([systemctl, stop, tracehub]).
    type: list
    elements: str
    default: []
  app_start_command:
    description: Command (argv list) run right after the swap, also when the swap failed.
    type: list
    elements: str
    default: []
  force:
    description: Restore even when the database already holds this backup unchanged.
    type: bool
    default: false
  pg_bin_dir:
    description: Directory of the C(pg_restore)/C(pg_dump) to use. Default E(PATH).
    type: path
  git_commit:
    description: Git commit recorded in the safety backup's manifest.
    type: str
attributes:
  check_mode:
    support: full
    details: Chooses and verifies the backup (checksum, C(pg_restore --list), versions, origin), reports the
      guard's verdict and the steps and commands it would run. Creates, renames and drops nothing.
  diff_mode:
    support: none
extends_documentation_fragment:
  - tracehub.deploy.postgres
  - tracehub.deploy.attributes
seealso:
  - module: tracehub.deploy.pg_backup
  - module: tracehub.deploy.pg_backup_info
notes:
  - The password reaches C(pg_restore) only through a temporary 0600 pgpass file.
author:
  - tracehub.deploy developers (@tracehub)
"""

EXAMPLES = r"""
- name: Restore the newest verified backup of staging
  tracehub.deploy.pg_restore:
    login_host: "{{ db_host }}"
    login_user: "{{ db_user }}"
    login_password: "{{ vault_db_password }}"
    login_db: tracehub
    backup_dir: /var/backups/tracehub
    environment: staging
    jobs: 2

- name: Restore a named production backup into production (guarded)
  tracehub.deploy.pg_restore:
    login_host: "{{ db_host }}"
    login_user: "{{ db_user }}"
    login_password: "{{ vault_db_password }}"
    login_db: tracehub
    backup_dir: /var/backups/tracehub
    environment: production
    name: production-tracehub-20250301T120000Z
    confirm: tracehub
    app_stop_command: [systemctl, stop, tracehub]
    app_start_command: [systemctl, start, tracehub]

- name: Restore production's newest backup into staging, owned by staging's application role
  tracehub.deploy.pg_restore:
    login_host: "{{ db_host }}"
    login_user: "{{ db_user }}"
    login_password: "{{ vault_db_password }}"
    login_db: tracehub
    backup_dir: /var/backups/tracehub
    environment: staging
    source_environment: production
    allow_foreign: true
    owner: tracehub
"""

RETURN = r"""
msg:
  description: One-sentence summary.
  returned: always
  type: str
  sample: Restored staging/tracehub (db1:5432) from staging-tracehub-20250301T120000Z (2025-03-01T12:00:00Z,
    revision 002, 13 tables, 2512345 rows). The previous database is kept as tracehub_old_20250301t130000.
restore:
  description: What was (or would be) restored.
  returned: always
  type: dict
  contains:
    database:
      description: Target database.
      type: str
      sample: tracehub
    environment:
      description: Target environment.
      type: str
      sample: staging
    backup:
      description: The restored backup's manifest facts (name, environment, database, created_at, alembic_revision,
        format, path, sha256, size_bytes, pre_migration, manifest_path).
      type: dict
      sample: {"name": "staging-tracehub-20250301T120000Z", "alembic_revision": "002"}
    foreign:
      description: The backup is of another environment or database.
      type: bool
      sample: false
    confirmation:
      description: V(not needed), V(given), V(missing) or V(wrong) (the last two in check mode only; a real run
        refuses).
      type: str
      sample: not needed
    owner:
      description: Role owning the restored objects.
      type: str
      sample: tracehub
    privileges:
      description: V(kept) or V(dropped).
      type: str
      sample: kept
    safety_backup:
      description: Manifest facts of the safety backup, or V(null) when skipped.
      type: dict
      sample: {"name": "staging-tracehub-20250301T130000Z-pre-restore-1a2b3c"}
    scratch_database:
      description: Name the restore used before the swap.
      type: str
      sample: tracehub_restore_1a2b3c4d5e6f
    old_database:
      description: Name the replaced database is kept under, or V(null).
      type: str
      sample: tracehub_old_20250301t130000
    dropped_old_databases:
      description: Old copies dropped by O(keep_old).
      type: list
      elements: str
      sample: []
    terminated_sessions:
      description: Sessions terminated at the swap.
      type: int
      sample: 3
    restored_row_counts:
      description: Exact row counts of the restored database (equal to the manifest's).
      type: dict
      sample: {"shipments": 41308}
    alembic_revision:
      description: Alembic revision of the restored database.
      type: str
      sample: "002"
    timings:
      description:
        - Seconds per stage. C(checks_s) covers choosing the backup and every check made before anything changes
          (checksum, C(pg_restore --list), versions); then C(safety_backup_s), C(restore_s) (the C(pg_restore) run
          into the scratch database), C(verify_s) (row counts, revision, extensions), C(swap_s) and C(total_s).
      type: dict
      sample: {"checks_s": 0.1, "restore_s": 41.2, "verify_s": 0.9, "swap_s": 0.4, "total_s": 42.6}
    check_mode:
      description: True when nothing was changed.
      type: bool
      sample: false
commands:
  description: Commands run (or planned in check mode), as password-free argv lists.
  returned: always
  type: list
  elements: list
  sample: [["/usr/bin/pg_restore", "--list", "/var/backups/tracehub/x.dump"]]
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.tracehub.deploy.plugins.module_utils import backup, restore
from ansible_collections.tracehub.deploy.plugins.module_utils.common import (
    conn_info_from,
    pg_connection_spec,
    runner_for,
)
from ansible_collections.tracehub.deploy.plugins.module_utils.errors import DeployError


def main() -> None:
    module = AnsibleModule(
        argument_spec=pg_connection_spec()
        | {
            "backup_dir": {"type": "path", "required": True},
            "environment": {"type": "str", "required": True},
            "name": {"type": "str"},
            "source_environment": {"type": "str"},
            "source_database": {"type": "str"},
            "allow_foreign": {"type": "bool", "default": False},
            "confirm": {"type": "str"},
            "protected_environments": {"type": "list", "elements": "str", "default": ["production"]},
            "safety_backup": {"type": "bool", "default": True},
            "safety_backup_verify": {"type": "str", "choices": list(backup.VERIFY_CHOICES), "default": "restore"},
            "jobs": {"type": "int", "default": 1},
            "owner": {"type": "str"},
            "privileges": {"type": "str", "choices": list(restore.PRIVILEGES_CHOICES), "default": "auto"},
            "required_extensions": {"type": "list", "elements": "str", "default": []},
            "keep_old": {"type": "int", "default": 2},
            "maintenance_db": {"type": "str", "default": "postgres"},
            "app_stop_command": {"type": "list", "elements": "str", "default": []},
            "app_start_command": {"type": "list", "elements": "str", "default": []},
            "force": {"type": "bool", "default": False},
            "pg_bin_dir": {"type": "path"},
            "git_commit": {"type": "str"},
        },
        supports_check_mode=True,
    )
    if not restore.HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"))

    params = module.params
    try:
        request = restore.RestoreRequest(
            conn=conn_info_from(params, "tracehub.deploy pg_restore"),
            backup_dir=Path(params["backup_dir"]),
            environment=params["environment"],
            name=params["name"] or None,
            source_environment=params["source_environment"] or None,
            source_database=params["source_database"] or None,
            allow_foreign=params["allow_foreign"],
            confirm=params["confirm"] or None,
            protected_environments=tuple(params["protected_environments"]),
            safety_backup=params["safety_backup"],
            safety_backup_verify=params["safety_backup_verify"],
            jobs=params["jobs"],
            owner=params["owner"] or None,
            privileges=params["privileges"],
            required_extensions=tuple(params["required_extensions"]),
            keep_old=params["keep_old"],
            maintenance_db=params["maintenance_db"],
            app_stop_command=tuple(params["app_stop_command"]),
            app_start_command=tuple(params["app_start_command"]),
            force=params["force"],
            pg_bin_dir=Path(params["pg_bin_dir"]) if params["pg_bin_dir"] else None,
            git_commit=params["git_commit"] or None,
        )
        result = restore.restore(request, run=runner_for(module), dry_run=module.check_mode)
    except DeployError as exc:
        module.fail_json(msg=str(exc), **exc.details)

    for warning in result.warnings:
        module.warn(warning)
    module.exit_json(**result.as_dict())


if __name__ == "__main__":
    main()
