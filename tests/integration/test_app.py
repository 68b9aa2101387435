"""The TraceHub demo application (app/) as real gunicorn processes against a real database."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]
APP_DIR = PROJECT_DIR / "app"
sys.path.insert(0, str(PROJECT_DIR))

from tools.localpg import free_port  # noqa: E402
from tools.seed import seed  # noqa: E402

VIBOTAJ = "00000000-0000-0000-0000-000000000001"


def alembic(conn, direction: str, revision: str) -> None:
    from alembic.config import Config

    from alembic import command

    config = Config()
    config.set_main_option("script_location", str(PROJECT_DIR / "alembic").replace("%", "%%"))
    config.attributes["url"] = conn.sqlalchemy_url()
    getattr(command, direction)(config, revision)


class Instance:
    """One app instance run by tracehub_app.ctl in a temporary directory."""

    def __init__(self, base: Path, conn, version: str, colour: str) -> None:
        self.dir = base / f"{colour}-{version}"
        self.dir.mkdir()
        self.port = free_port()
        config = {
            "version": version,
            "colour": colour,
            "instance": f"{colour}-test",
            "database": {
                "host": conn.host,
                "port": conn.port,
                "name": conn.dbname,
                "user": conn.user,
                "password": conn.password,
                "sslmode": "disable",
            },
        }
        (self.dir / "config.json").write_text(json.dumps(config))
        (self.dir / "config.json").chmod(0o600)

    def ctl(self, action: str) -> tuple[int, dict]:
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "tracehub_app.ctl",
                action,
                "--dir",
                str(self.dir),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
                "--threads",
                "2",
            ],
            cwd=APP_DIR,
            capture_output=True,
            text=True,
            check=False,
        )
        return completed.returncode, json.loads(completed.stdout)

    def call(self, method: str, path: str, body: dict | None = None, user: str | None = None):
        headers = {"Content-Type": "application/json"}
        if user:
            headers["X-TraceHub-User"] = user
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers=headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status, json.loads(response.read()), dict(response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}"), dict(exc.headers)


@pytest.fixture
def seeded(fresh_db):
    seed(fresh_db)
    return fresh_db


@pytest.fixture
def instances(tmp_path):
    started: list[Instance] = []

    def make(conn, version: str, colour: str) -> Instance:
        instance = Instance(tmp_path, conn, version, colour)
        started.append(instance)
        return instance

    yield make
    for instance in started:
        instance.ctl("stop")


def member_email(conn) -> str:
    from ansible_collections.tracehub.deploy.plugins.module_utils.pg import connect

    connection = connect(conn)
    try:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT u.email FROM users u JOIN org_memberships m ON m.user_id = u.id "
                "WHERE u.is_active AND m.status = 'active' ORDER BY u.email LIMIT 1"
            )
            return cur.fetchone()[0]
    finally:
        connection.close()


def test_app_v12_at_002_serves_lists_and_writes_with_headers(seeded, instances):
    blue = instances(seeded, "1.2", "blue")
    rc, started = blue.ctl("start")
    assert rc == 0, started
    status, health, headers = blue.call("GET", "/health")
    assert status == 200
    assert health | {"instance": None} == health | {
        "status": "ok",
        "version": "1.2.0",
        "colour": "blue",
        "revision": "002",
        "instance": None,
    }
    assert headers["X-TraceHub-Version"] == "1.2.0" and headers["X-TraceHub-Colour"] == "blue"
    status, created, _headers = blue.call("POST", "/api/shipments", {"reference": "APP-TEST-1"})
    assert status == 201
    status, read, _headers = blue.call("GET", f"/api/shipments/{created['id']}")
    assert (status, read["reference"]) == (200, "APP-TEST-1")
    status, event, _headers = blue.call("POST", f"/api/shipments/{created['id']}/events", {"event_status": "LOADED"})
    assert (status, event["event_status"]) == (201, "LOADED")
    status, _duplicate, _headers = blue.call("POST", "/api/shipments", {"reference": "APP-TEST-1"})
    assert status == 409
    rc, again = blue.ctl("start")
    assert (rc, again["changed"]) == (0, False)


def test_app_v13_below_006_refuses_to_start(seeded, instances):
    green = instances(seeded, "1.3", "green")
    rc, result = green.ctl("start")
    assert rc == 1
    assert "refuses to start" in result["msg"] and "revision 002" in result["msg"]
    assert green.ctl("status")[1]["state"] == "stopped"


def test_app_v13_scopes_reads_and_writes_to_the_caller_organization(seeded, instances):
    alembic(seeded, "upgrade", "head")
    green = instances(seeded, "1.3", "green")
    rc, result = green.ctl("start")
    assert rc == 0, result
    email = member_email(seeded)
    assert green.call("GET", "/api/shipments")[0] == 401
    assert green.call("GET", "/api/shipments", user="nobody@example.invalid")[0] == 403
    status, created, _headers = green.call("POST", "/api/shipments", {"reference": "ORG-TEST-1"}, user=email)
    assert status == 201

    from ansible_collections.tracehub.deploy.plugins.module_utils.pg import connect

    connection = connect(seeded)
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT organization_id::text FROM shipments WHERE id = %s", (created["id"],))
            assert cur.fetchone()[0] == VIBOTAJ
            cur.execute(
                "INSERT INTO organizations (name, slug, type) VALUES ('Other', 'other', 'customer') RETURNING id"
            )
            other = cur.fetchone()[0]
            cur.execute(
                "INSERT INTO shipments (reference, organization_id) VALUES ('OTHER-ORG-1', %s) RETURNING id", (other,)
            )
            foreign = str(cur.fetchone()[0])
        connection.commit()
    finally:
        connection.close()
    status, listing, _headers = green.call("GET", "/api/shipments?limit=100", user=email)
    assert status == 200
    assert "OTHER-ORG-1" not in {s["reference"] for s in listing["shipments"]}
    assert green.call("GET", f"/api/shipments/{foreign}", user=email)[0] == 404
    assert green.call("GET", f"/api/shipments/{created['id']}", user=email)[0] == 200


def test_app_v12_at_006_writes_without_organization_and_rows_go_to_vibotaj(seeded, instances):
    alembic(seeded, "upgrade", "head")
    blue = instances(seeded, "1.2", "blue")
    assert blue.ctl("start")[0] == 0
    status, created, _headers = blue.call("POST", "/api/shipments", {"reference": "LEGACY-AT-006"})
    assert status == 201, created

    from ansible_collections.tracehub.deploy.plugins.module_utils.pg import connect

    connection = connect(seeded)
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT organization_id::text FROM shipments WHERE id = %s", (created["id"],))
            assert cur.fetchone()[0] == VIBOTAJ
    finally:
        connection.close()


def test_app_v13_reports_unhealthy_once_the_database_drops_below_006(seeded, instances):
    alembic(seeded, "upgrade", "head")
    green = instances(seeded, "1.3", "green")
    assert green.ctl("start")[0] == 0
    assert green.call("GET", "/health")[0] == 200
    alembic(seeded, "downgrade", "005")
    status, health, _headers = green.call("GET", "/health")
    assert status == 503
    assert health["status"] == "unhealthy" and health["revision"] == "005"
    assert "needs revision 006" in health["reason"]
