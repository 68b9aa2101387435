"""Shared fixtures: the collection on sys.path, and a real PostgreSQL server the suite starts itself."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR / ".collections"))
sys.path.insert(0, str(PROJECT_DIR))

from ansible_collections.tracehub.deploy.plugins.module_utils.pg import ConnInfo  # noqa: E402
from tools.localpg import LocalServer, free_port, wait_until_accepting  # noqa: E402

# Holds %, @ and : on purpose: every path from inventory to libpq must cope with them.
APP_USER = "tracehub_app"
APP_PASSWORD = "s3cr%t@pa:ss"


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server in a temporary directory, as an unprivileged user, for the whole session."""
    base = Path(tempfile.mkdtemp(prefix="tracehub-test-pg-"))
    base.chmod(0o755)
    server = LocalServer(name="test", port=free_port(), base_dir=base)
    server.start()
    wait_until_accepting(server)
    connection = server.admin_connect()
    connection.autocommit = True
    with connection.cursor() as cur:
        cur.execute(f"CREATE ROLE {APP_USER} LOGIN CREATEDB PASSWORD %s", (APP_PASSWORD,))
    connection.close()
    yield server
    server.remove()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def admin_conn(pg_server) -> ConnInfo:
    """Superuser ConnInfo of the test server (database ``postgres``)."""
    return ConnInfo(
        host="127.0.0.1",
        port=pg_server.port,
        user="postgres",
        password=pg_server.superuser_password(),
        dbname="postgres",
        sslmode="disable",
    )


@pytest.fixture
def fresh_db(pg_server, admin_conn) -> ConnInfo:
    """A throwaway empty database owned by the application role; dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg_server.ensure_application_database(name, APP_USER, APP_PASSWORD)
    yield ConnInfo(
        host="127.0.0.1", port=pg_server.port, user=APP_USER, password=APP_PASSWORD, dbname=name, sslmode="disable"
    )
    pg_server.drop_database(name)


def pytest_collection_modifyitems(config, items):
    """Everything under tests/integration is marked ``integration``."""
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


os.environ.setdefault("ANSIBLE_CONFIG", str(PROJECT_DIR / "ansible.cfg"))
