"""The cutover with a real nginx and real gunicorn instances, through the project's playbooks.

One stack per module (bench.cutover.stack): its own PostgreSQL seeded and migrated to 006, blue (v1.2) and
green (v1.3) instances, a project-local nginx, all on free loopback ports in a temporary directory.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT_DIR))

from ansible_collections.tracehub.deploy.plugins.module_utils.errors import UpstreamError  # noqa: E402
from ansible_collections.tracehub.deploy.plugins.module_utils.nginx_upstream import (  # noqa: E402
    NginxDriver,
    Upstream,
    VerifySpec,
    switch,
)
from ansible_collections.tracehub.deploy.plugins.module_utils.runner import subprocess_runner  # noqa: E402
from bench.cutover.stack import (  # noqa: E402
    Stack,
    run_playbook,
    start_database,
    teardown,
    write_inventory,
)

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (make setup as root)")


def _migrate(stack: Stack, revision: str) -> None:
    from alembic.config import Config

    from alembic import command

    config = Config()
    config.set_main_option("script_location", str(PROJECT_DIR / "alembic").replace("%", "%%"))
    config.attributes["url"] = stack.conn.sqlalchemy_url()
    command.upgrade(config, revision)


@pytest.fixture(scope="module")
def stack():
    from tools.seed import seed

    base = Path(tempfile.mkdtemp(prefix="tracehub-test-cutover-"))
    built = Stack(base=base)
    try:
        start_database(built)
        seed(built.conn)
        _migrate(built, "head")
        write_inventory(built, blue=2, green=2, cutover_monitor_seconds=2, cutover_verify_timeout=15)
        run_playbook(built, "serve_blue.yml", check=True)
        run_playbook(built, "deploy_green.yml", check=True)
        yield built
    finally:
        teardown(built)
        shutil.rmtree(base, ignore_errors=True)


def colour_of(url: str) -> str | None:
    with urllib.request.urlopen(f"{url}/health", timeout=5) as response:  # noqa: S310 - loopback test URL
        return response.headers.get("X-TraceHub-Colour")


def colours_seen(url: str, requests: int = 8) -> set[str | None]:
    return {colour_of(url) for _request in range(requests)}


def changed_count(output: str, host: str) -> int:
    match = re.search(rf"^{re.escape(host)}\s+: ok=\d+\s+changed=(\d+)", output, flags=re.MULTILINE)
    assert match, output[-3000:]
    return int(match.group(1))


def ensure_blue(stack: Stack) -> None:
    if stack.state().get("active_colour") != "blue":
        run_playbook(stack, "rollback.yml", "-e", "rollback_level=2", check=True)


def test_cutover_switch_and_switch_back_reach_each_colour(stack):
    ensure_blue(stack)
    assert colours_seen(stack.lb_url()) == {"blue"}

    run_playbook(stack, "cutover.yml", check=True)
    assert colours_seen(stack.lb_url()) == {"green"}
    assert stack.state()["active_colour"] == "green"

    run_playbook(stack, "rollback.yml", "-e", "rollback_level=2", check=True)
    assert colours_seen(stack.lb_url()) == {"blue"}
    history = stack.state()["history"]
    assert [(h["from"], h["to"]) for h in history[-2:]] == [("blue", "green"), ("green", "blue")]
    assert all(h["verified_requests"] >= 5 for h in history[-2:])


def test_cutover_rerun_is_idempotent(stack):
    ensure_blue(stack)
    first = run_playbook(stack, "cutover.yml", check=True)
    second = run_playbook(stack, "cutover.yml", check=True)
    assert changed_count(first.stdout, "lb-1") >= 1
    assert changed_count(second.stdout, "lb-1") == 0
    assert colours_seen(stack.lb_url()) == {"green"}


def test_cutover_check_mode_changes_nothing(stack):
    ensure_blue(stack)
    upstream = stack.nginx_dir() / "conf" / "upstream.conf"
    before_file, before_state = upstream.read_text(), stack.state()
    result = run_playbook(stack, "cutover.yml", "--check", "--diff")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "green" in result.stdout  # the diff shows the upstream it would write
    assert upstream.read_text() == before_file
    assert stack.state() == before_state
    assert colours_seen(stack.lb_url()) == {"blue"}


def test_cutover_unhealthy_green_is_refused_and_traffic_unchanged(stack):
    ensure_blue(stack)
    green_dir = stack.base / "app" / "green-1"
    subprocess.run(
        [sys.executable, "-m", "tracehub_app.ctl", "stop", "--dir", str(green_dir)],
        cwd=PROJECT_DIR / "app",
        check=True,
        capture_output=True,
    )
    try:
        result = run_playbook(stack, "cutover.yml")
        assert result.returncode != 0
        assert "Require every instance of the target colour to report healthy: green" in result.stdout
        assert "Nothing was switched: traffic stays on blue." in " ".join(result.stdout.split())
        assert stack.state()["active_colour"] == "blue"
        assert colours_seen(stack.lb_url()) == {"blue"}
    finally:
        run_playbook(stack, "deploy_green.yml", check=True)


def test_cutover_failure_in_monitoring_window_switches_back_automatically(stack):
    ensure_blue(stack)
    result = run_playbook(
        stack,
        "cutover.yml",
        "-e",
        json.dumps({"cutover_monitor_urls": [f"{stack.lb_url()}/api/no-such-endpoint"], "cutover_monitor_seconds": 5}),
    )
    assert result.returncode != 0
    assert "Monitoring window breached" in result.stdout
    assert "Traffic was switched back to blue" in " ".join(result.stdout.split())
    history = stack.state()["history"]
    assert [(h["from"], h["to"]) for h in history[-2:]] == [("blue", "green"), ("green", "blue")]
    assert colours_seen(stack.lb_url()) == {"blue"}
    record = sorted((stack.base / "runs").glob("*.json"))
    entries = [p for r in record for p in json.loads(r.read_text())["phases"] if p["phase"] == "cutover"]
    assert entries[-1]["status"] == "failed"
    assert entries[-1]["data"]["watch"]["breached"] is True


def test_cutover_invalid_nginx_config_is_refused_and_traffic_unchanged(stack):
    ensure_blue(stack)
    lb_dir = stack.nginx_dir()
    upstream = lb_dir / "conf" / "upstream.conf"
    before = upstream.read_text()
    driver = NginxDriver(
        conf=str(lb_dir / "conf" / "nginx.conf"), prefix=str(lb_dir), error_log=str(lb_dir / "logs" / "error.log")
    )
    unresolvable = Upstream(name="tracehub", colour="green", servers=("no-such-host.invalid:8000",))
    with pytest.raises(UpstreamError) as caught:
        switch(
            str(upstream),
            unresolvable,
            driver,
            subprocess_runner,
            verify=VerifySpec(url=f"{stack.lb_url()}/health", colour="green", timeout=5),
            state_path=str(lb_dir / "state" / "lb-state.json"),
        )
    assert "rejected the new configuration" in str(caught.value)
    assert "host not found" in str(caught.value)
    assert upstream.read_text() == before
    assert stack.state()["active_colour"] == "blue"
    assert colours_seen(stack.lb_url()) == {"blue"}


def test_retire_blue_refuses_within_the_keep_window(stack):
    run_playbook(stack, "cutover.yml", check=True)
    result = run_playbook(stack, "retire_blue.yml")
    assert result.returncode != 0
    assert "Not retiring blue" in result.stdout
    assert colour_of(f"http://127.0.0.1:{stack.blue_ports[0]}") == "blue"

    forced = run_playbook(stack, "retire_blue.yml", "-e", "retire_force=true")
    assert forced.returncode == 0, forced.stdout[-3000:]
    with pytest.raises(OSError):
        colour_of(f"http://127.0.0.1:{stack.blue_ports[0]}")
    assert colours_seen(stack.lb_url()) == {"green"}


def test_maintenance_window_shows_the_page_then_serves_green(stack):
    result = run_playbook(stack, "maintenance.yml", "-e", "migrate_backup_waiver=true")
    assert result.returncode == 0, result.stdout[-4000:]
    history = [(h["from"], h["to"]) for h in stack.state()["history"]]
    assert history[-2:] == [(history[-2][0], "maintenance"), ("maintenance", "green")]
    assert colours_seen(stack.lb_url()) == {"green"}
