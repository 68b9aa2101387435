"""The collection as another team gets it: build the artifact, install it, run the main job from the install.

Nothing of the checkout is visible to the run: ANSIBLE_COLLECTIONS_PATH names only the temporary install, the
project's ansible.cfg is replaced by an empty one, the playbook and inventory live in a temporary directory, and
Python's sys.path is not scanned for collections. The roles find the Alembic revisions shipped in the
artifact, the modules their module_utils, and the main job takes a real database from 002 to 006.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tools.localpg import find_bindir
from tools.seed import seed

PROJECT_DIR = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(collections path, isolated environment) of the artifact built from the checkout and installed."""
    work = tmp_path_factory.mktemp("collection-install")
    empty_cfg = work / "ansible.cfg"
    empty_cfg.write_text("[defaults]\n")
    collections_path = work / "collections"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env |= {
        "ANSIBLE_CONFIG": str(empty_cfg),
        "ANSIBLE_COLLECTIONS_PATH": str(collections_path),
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_HOME": str(work / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(work / "ansible-tmp"),
    }
    built = _run(
        [str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(work), str(PROJECT_DIR)], env, work
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (artifact,) = work.glob("tracehub-deploy-*.tar.gz")
    installed = _run(
        [str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "-p", str(collections_path), str(artifact)],
        env,
        work,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return collections_path, env


def test_collection_install_lands_as_a_real_copy(installed):
    collections_path, env = installed
    root = collections_path / "ansible_collections" / "tracehub" / "deploy"

    manifest = json.loads((root / "MANIFEST.json").read_text())
    assert manifest["collection_info"]["namespace"] == "tracehub"
    assert manifest["collection_info"]["name"] == "deploy"
    assert not root.is_symlink()
    assert (root / "alembic" / "env.py").is_file()
    assert not (root / ".git").exists()
    listed = _run([str(BIN / "ansible-galaxy"), "collection", "list", "tracehub.deploy"], env, collections_path)
    assert listed.returncode == 0, listed.stderr
    assert str(collections_path / "ansible_collections") in listed.stdout


def test_collection_install_ansible_doc_reads_the_installed_modules(installed):
    collections_path, env = installed

    completed = _run([str(BIN / "ansible-doc"), "tracehub.deploy.pg_backup"], env, collections_path)

    assert completed.returncode == 0, completed.stderr
    assert str(collections_path / "ansible_collections" / "tracehub" / "deploy" / "plugins" / "modules") in (
        completed.stdout
    )
    assert str(PROJECT_DIR) not in completed.stdout


def test_collection_install_main_job_runs_from_the_install_with_fqcns(installed, fresh_db, tmp_path):
    collections_path, env = installed
    seed(fresh_db)
    root = collections_path / "ansible_collections" / "tracehub" / "deploy"
    host_vars = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "tracehub_environment": "staging",
        "db_host": fresh_db.host,
        "db_port": fresh_db.port,
        "db_name": fresh_db.dbname,
        "db_user": fresh_db.user,
        "db_password": fresh_db.password,
        "tracehub_backup_dir": str(tmp_path / "backups"),
        "tracehub_records_dir": str(tmp_path / "runs"),
        "backup_pg_bin_dir": str(find_bindir()),
        "backup_poll_interval": 1,
        "migrate_poll_interval": 1,
    }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"db": {"hosts": {"app-db": host_vars}}}}}))
    # Another team's playbook: the collection's main job by FQCN, then its own check with a module by FQCN.
    (tmp_path / "playbook.yml").write_text(
        yaml.safe_dump(
            [
                {"name": "Run the TraceHub main job", "ansible.builtin.import_playbook": "tracehub.deploy.site"},
                {
                    "name": "Read the revision with the installed module",
                    "hosts": "db",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Read the Alembic revision",
                            "tracehub.deploy.alembic_migration_info": {
                                "login_host": "{{ db_host }}",
                                "login_port": "{{ db_port }}",
                                "login_user": "{{ db_user }}",
                                "login_password": "{{ db_password }}",
                                "login_db": "{{ db_name }}",
                                "script_location": str(root / "alembic"),
                            },
                            "register": "revision",
                        },
                        {
                            "name": "Show where the database stands",
                            "ansible.builtin.debug": {"msg": "REVISION={{ revision.migration.current | join(',') }}"},
                        },
                    ],
                },
            ],
            sort_keys=False,
        )
    )

    completed = _run(
        [str(BIN / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "playbook.yml")],
        env,
        tmp_path,
    )

    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr
    assert "REVISION=006" in completed.stdout
    assert str(PROJECT_DIR) not in completed.stdout
    (record_file,) = (tmp_path / "runs").glob("*.json")
    phases = [phase["phase"] for phase in json.loads(record_file.read_text())["phases"]]
    assert phases == ["backup", "migrate", "validate", "backup"]


WIDGETS_SUITE = """\
name: widgets
description: Release checks of another team's service, run by tracehub.deploy.validate.
params:
  expected_revision: "003"
  tables: [widgets, gadgets]
facts:
  current_revision: SELECT string_agg(version_num, ',') FROM alembic_version
checks:
  - id: revision
    name: Alembic is at the expected revision
    sql: SELECT %(current_revision)s::text = %(expected_revision)s::text AS at_expected_revision
    expect: true
  - id: tables
    name: The service's tables exist
    for_each: tables
    sql: SELECT count(*) AS row_count FROM {item}
    expect: {min: 0}
    collect_as: row_counts
  - id: colour
    name: Every widget has a colour
    sql: SELECT count(*) FROM widgets WHERE colour IS NULL
    expect: {value: 0}
"""


def test_collection_install_another_alembic_project_reuses_roles_and_modules(installed, fresh_db, tmp_path):
    """The README's reuse guide, run: their revisions directory, their suite, the collection's roles and modules."""
    env = installed[1]
    project = tmp_path / "widgets-service"
    # Their revisions, with an env.py copied from the collection's (it takes the database from the caller).
    fixture_versions = PROJECT_DIR / "tests" / "integration" / "fixtures" / "alembic_linear" / "versions"
    shutil.copytree(fixture_versions, project / "migrations" / "versions")
    shutil.copy(PROJECT_DIR / "alembic" / "env.py", project / "migrations" / "env.py")
    (project / "checks").mkdir()
    (project / "checks" / "release.yml").write_text(WIDGETS_SUITE)
    (project / "inventory").mkdir()
    host_vars = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "tracehub_environment": "staging",
        "db_host": fresh_db.host,
        "db_port": fresh_db.port,
        "db_name": fresh_db.dbname,
        "db_user": fresh_db.user,
        "db_password": fresh_db.password,
        "tracehub_backup_dir": str(tmp_path / "backups"),
        "tracehub_records_dir": str(tmp_path / "runs"),
        "backup_pg_bin_dir": str(find_bindir()),
        "backup_poll_interval": 1,
    }
    (project / "inventory" / "hosts.yml").write_text(
        yaml.safe_dump({"all": {"children": {"db": {"hosts": {"widgets-db": host_vars}}}}})
    )
    (project / "release.yml").write_text(REUSE_PLAYBOOK)

    completed = _run(
        [str(BIN / "ansible-playbook"), "-i", str(project / "inventory"), str(project / "release.yml")], env, project
    )

    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr
    assert "3 passed, 0 warnings, 0 failed" in completed.stdout
    (manifest_file,) = (tmp_path / "backups").glob("*.json")
    manifest = json.loads(manifest_file.read_text())
    assert manifest["verified"] is True
    assert manifest["alembic_revision"] is None  # the backup was taken before the first revision
    (record_file,) = (tmp_path / "runs").glob("*.json")
    phases = json.loads(record_file.read_text())["phases"]
    assert [phase["phase"] for phase in phases] == ["backup", "validate"]
    assert phases[1]["data"]["summary"] == "3 passed, 0 warnings, 0 failed"


REUSE_PLAYBOOK = """\
---
# The README's "Reusing the roles and modules with another Alembic project", as another team writes it.
- name: Release the widgets service database
  hosts: db
  gather_facts: false
  serial: 1
  roles:
    - role: tracehub.deploy.run_context
    - role: tracehub.deploy.backup
  tasks:
    - name: Migrate to the head of our own revisions
      tracehub.deploy.alembic_migration:
        login_host: "{{ db_host }}"
        login_port: "{{ db_port }}"
        login_user: "{{ db_user }}"
        login_password: "{{ db_password }}"
        login_db: "{{ db_name }}"
        script_location: "{{ playbook_dir }}/migrations"
        revision: head
      delegate_to: localhost

    - name: Validate with our own suite
      ansible.builtin.include_role:
        name: tracehub.deploy.validate
      vars:
        validate_suite_file: "{{ playbook_dir }}/checks/release.yml"
        validate_params:
          expected_revision: "003"
"""
