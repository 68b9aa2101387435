"""A throwaway blue-green stack: its own PostgreSQL, an inventory with blue, green and load balancer hosts on
free loopback ports, and the helpers to run the project's playbooks against it and tear it all down.

Used by the cutover benchmark and the cutover integration tests, so that neither touches the shared local
servers (55432/55433) nor the project's own .local/ directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PROJECT_DIR = Path(__file__).resolve().parents[2]
for entry in (PROJECT_DIR / ".collections", PROJECT_DIR):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

from ansible_collections.tracehub.deploy.plugins.module_utils.pg import ConnInfo  # noqa: E402
from tools.localpg import LocalServer, find_bindir, free_port, wait_until_accepting  # noqa: E402

DB_NAME = "tracehub"
DB_USER = "tracehub"
DB_PASSWORD = "Tr%ce@Hub:bench"  # holds % @ and : like the real one
# The seeded data's first active VIBOTAJ member (tools.seed, seed 8): the v1.3 smoke user.
SMOKE_USER = "adebayo.okonkwo.22@vibotaj.com"


@dataclass
class Stack:
    """Where everything of one throwaway stack lives."""

    base: Path
    pg_port: int = 0
    blue_ports: list[int] = field(default_factory=list)
    green_ports: list[int] = field(default_factory=list)
    lb_ports: list[int] = field(default_factory=list)
    server: LocalServer | None = None

    @property
    def inventory(self) -> Path:
        return self.base / "inventory"

    @property
    def conn(self) -> ConnInfo:
        return ConnInfo(
            host="127.0.0.1", port=self.pg_port, user=DB_USER, password=DB_PASSWORD, dbname=DB_NAME, sslmode="disable"
        )

    def lb_url(self, index: int = 0) -> str:
        return f"http://127.0.0.1:{self.lb_ports[index]}"

    def nginx_dir(self, index: int = 0) -> Path:
        return self.base / "nginx" / f"lb-{index + 1}"

    def state(self, index: int = 0) -> dict:
        path = self.nginx_dir(index) / "state" / "lb-state.json"
        return json.loads(path.read_text()) if path.exists() else {}


def start_database(stack: Stack) -> None:
    """Start the stack's own PostgreSQL and create the application role and database (empty)."""
    pg_base = stack.base / "pg"
    pg_base.mkdir(parents=True, exist_ok=True)
    for path in (stack.base, pg_base):
        path.chmod(0o755)
    stack.pg_port = stack.pg_port or free_port()
    stack.server = LocalServer(name="bench", port=stack.pg_port, base_dir=pg_base)
    stack.server.start()
    wait_until_accepting(stack.server)
    stack.server.ensure_application_database(DB_NAME, DB_USER, DB_PASSWORD)


def write_inventory(stack: Stack, blue: int = 2, green: int = 2, lbs: int = 1, **extra: object) -> Path:
    """An inventory with the local inventory's groups: db (one host), web_blue, web_green and lb."""
    stack.blue_ports = stack.blue_ports or [free_port() for _index in range(blue)]
    stack.green_ports = stack.green_ports or [free_port() for _index in range(green)]
    stack.lb_ports = stack.lb_ports or [free_port() for _index in range(lbs)]
    inv = stack.inventory
    (inv / "group_vars").mkdir(parents=True, exist_ok=True)
    hosts = {
        "all": {
            "children": {
                "db": {"hosts": {"bench-db": {"tracehub_environment": "production", "local_pg_server": "bench"}}},
                "web": {
                    "children": {
                        "web_blue": {
                            "vars": {"app_colour": "blue", "app_version": "1.2"},
                            "hosts": {f"blue-{i + 1}": {"app_port": p} for i, p in enumerate(stack.blue_ports)},
                        },
                        "web_green": {
                            "vars": {"app_colour": "green", "app_version": "1.3"},
                            "hosts": {f"green-{i + 1}": {"app_port": p} for i, p in enumerate(stack.green_ports)},
                        },
                    }
                },
                "lb": {
                    "hosts": {
                        f"lb-{i + 1}": {"lb_port": p, "lb_maintenance_port": free_port()}
                        for i, p in enumerate(stack.lb_ports)
                    }
                },
            }
        }
    }
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    base = str(stack.base)
    all_vars = {
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "db_host": "127.0.0.1",
        "db_port": stack.pg_port,
        "db_name": DB_NAME,
        "db_user": DB_USER,
        "db_password": DB_PASSWORD,
        "tracehub_environment": "production",
        "tracehub_backup_dir": f"{base}/backups",
        "tracehub_records_dir": f"{base}/runs",
        "backup_pg_bin_dir": str(find_bindir()),
        "backup_poll_interval": 1,
        "migrate_poll_interval": 1,
        "tracehub_smoke_user": SMOKE_USER,
        # app hosts
        "app_service_manager": "process",
        "app_address": "127.0.0.1",
        "app_bind_address": "127.0.0.1",
        "app_workers": 2,
        "app_threads": 4,
        "app_state_dir": base + "/app/{{ inventory_hostname }}",
        "app_smoke_user": SMOKE_USER,
        # load balancers
        "cutover_nginx_mode": "process",
        "cutover_nginx_dir": base + "/nginx/{{ inventory_hostname }}",
        "cutover_lb_listen": "127.0.0.1:{{ lb_port }}",
    } | extra
    (inv / "group_vars" / "all.yml").write_text(yaml.safe_dump(all_vars, sort_keys=False))
    return inv


def run_playbook(
    stack: Stack, playbook: str, *extra_args: str, check: bool = False, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook from the checkout against the stack's inventory; output captured."""
    argv = [
        str(PROJECT_DIR / ".venv" / "bin" / "ansible-playbook"),
        "-i",
        str(stack.inventory),
        str(PROJECT_DIR / "playbooks" / playbook),
        *extra_args,
    ]
    env = dict(os.environ, ANSIBLE_CONFIG=str(PROJECT_DIR / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0")
    completed = subprocess.run(
        argv, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and completed.returncode != 0:
        raise RuntimeError(f"{playbook} failed (rc {completed.returncode}):\n{completed.stdout[-6000:]}")
    return completed


def stop_processes(stack: Stack) -> None:
    """Stop every nginx and app instance the stack started (by their pid files)."""
    for pid_file in sorted((stack.base / "nginx").glob("*/nginx.pid")):
        _terminate(pid_file, signal.SIGQUIT)
    for pid_file in sorted((stack.base / "app").glob("*/gunicorn.pid")):
        _terminate(pid_file, signal.SIGTERM)


def _terminate(pid_file: Path, sig: signal.Signals) -> None:
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text().strip())
        os.kill(pid, sig)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)


def teardown(stack: Stack) -> None:
    """Stop the processes and the database server."""
    stop_processes(stack)
    if stack.server is not None:
        with contextlib.suppress(Exception):
            stack.server.remove()
