"""Real ``ansible-playbook`` runs of the project's playbooks against a one-host inventory, for the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from ansible_collections.tracehub.deploy.plugins.module_utils.pg import ConnInfo
from tools.localpg import find_bindir

PROJECT_DIR = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def db_inventory(directory: Path, **host_vars: Any) -> Path:
    """``directory``/inventory with the db host ``test-db`` (local connection, this interpreter) and ``host_vars``."""
    inventory = directory / "inventory"
    inventory.mkdir()
    variables = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **host_vars}
    hosts = {"all": {"children": {"db": {"hosts": {"test-db": variables}}}}}
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    return inventory


def staging_inventory(directory: Path, db: ConnInfo, **host_vars: Any) -> Path:
    """A staging db host on ``db``: backups and run records under ``directory``, every phase polling each second."""
    return db_inventory(
        directory,
        tracehub_environment="staging",
        db_host=db.host,
        db_port=db.port,
        db_name=db.dbname,
        db_user=db.user,
        db_password=db.password,
        tracehub_backup_dir=str(directory / "backups"),
        tracehub_records_dir=str(directory / "runs"),
        backup_pg_bin_dir=str(find_bindir()),
        **{f"{phase}_poll_interval": 1 for phase in ("backup", "migrate", "restore", "rollback")},
        **host_vars,
    )


def run_playbook(inventory: Path, playbook: str, *extra: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """playbooks/``playbook`` with the project's ansible.cfg, uncoloured; output captured, exit code not checked."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(PROJECT_DIR / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(PROJECT_DIR / "playbooks" / playbook), *extra],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
