#!/usr/bin/python
# Copyright: (c) 2026, tracehub.deploy developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_backup
short_description: Take a verified pg_dump backup of a PostgreSQL database
description:
  - Dumps the database with C(pg_dump) in custom format into O(dest) (directory mode 0700, files 0600),
    computes its SHA-256 and writes a JSON manifest C(<name>.json) beside it with the UTC time, environment,
    database, server and pg_dump versions, Alembic revision, exact row counts of every table, size,
    checksum and the collection's git commit.
  - Verifies the dump before calling it a backup. V(list) reads the whole archive with C(pg_restore --list);
    V(restore) (the default) also restores it into a scratch database C(tracehub_verify_<random>) and
    requires its row counts to equal the manifest's. The scratch database is always dropped afterwards,
    also when the restore fails.
  - The dump and the manifest's row counts come from the same exported snapshot, so they agree even while
    the application keeps writing.
  - A failed or partial dump never leaves a file that looks valid. The dump is written to
    C(<name>.dump.partial) and renamed to C(<name>.dump) only after it has been checksummed and verified;
    the manifest is written last, atomically. Errors written to stderr fail the run even when the exit
    code is 0.
  - A C(pg_dump) older than the server is refused before dumping, with the fix in the message.
  - Holds the collection's per-database operation lock for the whole dump and verification, so no
    migration or restore of the same database can interleave; if another run holds it, fails naming it.
  - Idempotent through O(max_age). With it, a verified backup of the same environment and database that is
    younger than O(max_age) and at the same Alembic revision is reused (C(changed=false)) unless
    O(force=true). Without it every run takes a new backup.
version_added: 1.0.0
requirements:
  - psycopg2 (psycopg2-binary)
  - C(pg_dump) and C(pg_restore) on the host the module runs on, not older than the server
options:
  dest:
    description:
      - Backup directory. Created with mode 0700 when missing; an existing one is tightened to 0700.
    type: path
    required: true
  environment:
    description:
      - Environment the database belongs to (V(staging), V(production), ...). Recorded in the manifest, part
        of the default name and of the reuse key.
    type: str
    required: true
  name:
    description:
      - Base name of the files, C(<name>.dump) and C(<name>.json). Letters, digits, V(.), V(_) and V(-).
      - Defaults to C(<environment>-<database>-<UTC yyyymmddThhmmssZ>).
      - When a verified, intact backup with this name already exists it is returned unchanged; an
        unverified or damaged one is refused unless O(force=true), which replaces it.
    type: str
  verify:
    description:
      - How to verify the dump before it counts as a backup.
      - V(restore) runs C(pg_restore --list) and a test restore into a scratch database (needs the
        C(CREATEDB) privilege) whose row counts must equal the source's. Only this sets RV(backup.verified).
      - V(list) only reads the archive with C(pg_restore --list).
      - V(none) skips verification; the manifest says C(verified=false).
    type: str
    choices: [none, list, restore]
    default: restore
  max_age:
    description:
      - Reuse window. A verified backup of the same environment and database that is younger than this
        and at the same Alembic revision makes the run unchanged.
      - Seconds (V(900)) or a duration such as V(15m), V(1h), V(1h30m), V(2d).
      - Unset or empty means never reuse.
    type: raw
  force:
    description:
      - Take a new backup even when one could be reused.
    type: bool
    default: false
  pre_migration:
    description:
      - Mark the backup as taken before a migration (recorded in the manifest as C(pre_migration)).
    type: bool
    default: false
  git_commit:
    description:
      - Git commit of the collection that took the backup, recorded in the manifest. The C(backup) role
        fills it from C(git rev-parse HEAD) on the controller.
    type: str
  pg_bin_dir:
    description:
      - Directory holding the C(pg_dump) and C(pg_restore) to use, for example
        V(/usr/lib/postgresql/16/bin). Defaults to the ones on E(PATH).
    type: path
  format:
    description:
      - pg_dump archive format. V(custom) writes one file C(<name>.dump). V(directory) writes a directory
        C(<name>.dir) of files that pg_dump and pg_restore process in parallel with O(jobs) workers; its
        C(sha256) is computed over the sorted names and checksums of its files.
    type: str
    choices: [custom, directory]
    default: custom
    version_added: 1.1.0
  jobs:
    description:
      - Parallel workers of the dump (directory format only) and of the test restore.
    type: int
    default: 1
    version_added: 1.1.0
attributes:
  check_mode:
    support: full
    details: Reads the server version, Alembic revision and row counts (read-only), checks the client
      versions and reports the file it would write and the commands it would run. Never dumps, never
      creates the directory or the scratch database.
  diff_mode:
    support: none
extends_documentation_fragment:
  - tracehub.deploy.postgres
  - tracehub.deploy.attributes
seealso:
  - module: tracehub.deploy.pg_backup_info
notes:
  - The password reaches C(pg_dump) and C(pg_restore) only through a temporary 0600 pgpass file
    (E(PGPASSFILE)), never on a command line.
  - For long dumps run the task with C(async) and C(poll) so that a dropped SSH session does not kill it;
    the C(tracehub.deploy.backup) role does.
author:
  - tracehub.deploy developers (@tracehub)
"""

EXAMPLES = r"""
- name: Take a verified backup of the TraceHub database
  tracehub.deploy.pg_backup:
    login_host: "{{ db_host }}"
    login_user: "{{ db_user }}"
    login_password: "{{ vault_db_password }}"
    login_db: tracehub
    dest: /var/backups/tracehub
    environment: production
  async: 3600
  poll: 10

- name: Back up before migrating, reusing one taken in the last hour at the same revision
  tracehub.deploy.pg_backup:
    login_host: "{{ db_host }}"
    login_user: "{{ db_user }}"
    login_password: "{{ vault_db_password }}"
    login_db: tracehub
    dest: /var/backups/tracehub
    environment: staging
    max_age: 1h
    pre_migration: true
    pg_bin_dir: /usr/lib/postgresql/16/bin
"""

RETURN = r"""
msg:
  description: One-sentence summary.
  returned: always
  type: str
  sample: Backed up tracehub@db1:5432/tracehub to /var/backups/tracehub/production-tracehub-20250301T120000Z.dump
    (10485760 bytes, verified by a test restore).
backup:
  description:
    - The manifest of the backup taken, reused or (check mode) planned, plus RV(backup.manifest_path).
    - In check mode C(sha256), C(size_bytes) and C(finished_at) are V(null).
  returned: always
  type: dict
  contains:
    format_version:
      description: Manifest format version.
      type: int
      sample: 1
    name:
      description: Base name of the dump and manifest files.
      type: str
      sample: production-tracehub-20250301T120000Z
    environment:
      description: O(environment).
      type: str
      sample: production
    database:
      description: Database name.
      type: str
      sample: tracehub
    host:
      description: Server host.
      type: str
      sample: db1.example.com
    port:
      description: Server port.
      type: int
      sample: 5432
    created_at:
      description: UTC time the backup started (its snapshot), ISO-8601 with C(Z).
      type: str
      sample: "2025-03-01T12:00:00Z"
    finished_at:
      description: UTC time the backup was verified and written.
      type: str
      sample: "2025-03-01T12:02:41Z"
    path:
      description: Absolute path of the dump file.
      type: str
      sample: /var/backups/tracehub/production-tracehub-20250301T120000Z.dump
    format:
      description: pg_dump format, V(custom) or V(directory).
      type: str
      sample: custom
    size_bytes:
      description: Size of the dump.
      type: int
      sample: 10485760
    sha256:
      description: SHA-256 of the dump.
      type: str
      sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    server_version:
      description: Server version.
      type: str
      sample: 16.2 (Debian 16.2-1.pgdg120+2)
    pg_dump_version:
      description: Version of the pg_dump that wrote the dump.
      type: str
      sample: "16.2"
    alembic_revision:
      description: Content of C(alembic_version.version_num) at the snapshot; V(null) without that table.
      type: str
      sample: "002"
    row_counts:
      description: Exact row count of every table of the public schema at the snapshot.
      type: dict
      sample: {"alembic_version": 1, "shipments": 1204}
    git_commit:
      description: O(git_commit), or V(null).
      type: str
      sample: 3f2a9c1d0b7e5a4f6c8d2e1b0a9f8e7d6c5b4a3f
    verified:
      description: True when the archive was listed and test-restored with equal row counts.
      type: bool
      sample: true
    verification:
      description: C(list_ok), C(restore_ok), C(restored_row_counts_match) (V(null) when not done) and C(verified_at).
      type: dict
      sample: {"list_ok": true, "restore_ok": true, "restored_row_counts_match": true,
               "verified_at": "2025-03-01T12:02:41Z"}
    pre_migration:
      description: O(pre_migration) of the run that took the backup.
      type: bool
      sample: false
    manifest_path:
      description: Absolute path of the manifest file.
      type: str
      sample: /var/backups/tracehub/production-tracehub-20250301T120000Z.json
commands:
  description:
    - Commands run, as argv lists, password-free; in check mode the version probes that ran plus the
      commands that would run.
  returned: always
  type: list
  elements: list
  sample:
    - ["/usr/bin/pg_dump", "--version"]
    - ["/usr/bin/pg_dump", "--format=custom", "--file=/var/backups/x.dump.partial",
       "--snapshot=00000003-0000001B-1", "--no-password", "--host", "db1", "--port", "5432",
       "--username", "tracehub", "--dbname=tracehub"]
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.tracehub.deploy.plugins.module_utils import backup
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
            "dest": {"type": "path", "required": True},
            "environment": {"type": "str", "required": True},
            "name": {"type": "str"},
            "verify": {"type": "str", "choices": list(backup.VERIFY_CHOICES), "default": "restore"},
            "max_age": {"type": "raw"},
            "force": {"type": "bool", "default": False},
            "pre_migration": {"type": "bool", "default": False},
            "git_commit": {"type": "str"},
            "pg_bin_dir": {"type": "path"},
            "format": {"type": "str", "choices": list(backup.FORMAT_CHOICES), "default": "custom"},
            "jobs": {"type": "int", "default": 1},
        },
        supports_check_mode=True,
    )
    if not backup.HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"))

    params = module.params
    try:
        request = backup.BackupRequest(
            conn=conn_info_from(params, "tracehub.deploy pg_backup"),
            dest=Path(params["dest"]),
            environment=params["environment"],
            name=params["name"] or None,
            verify=params["verify"],
            max_age=backup.parse_duration(params["max_age"]),
            force=params["force"],
            pre_migration=params["pre_migration"],
            git_commit=params["git_commit"] or None,
            pg_bin_dir=Path(params["pg_bin_dir"]) if params["pg_bin_dir"] else None,
            format=params["format"],
            jobs=params["jobs"],
        )
        result = backup.create(request, run=runner_for(module), dry_run=module.check_mode)
    except DeployError as exc:
        module.fail_json(msg=str(exc), **exc.details)

    for warning in result.warnings:
        module.warn(warning)
    module.exit_json(**result.as_dict())


if __name__ == "__main__":
    main()
