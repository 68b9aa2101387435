"""Unit tests of the load balancer switch library: fakes for commands, HTTP and time."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.tracehub.deploy.plugins.module_utils.errors import UpstreamError
from ansible_collections.tracehub.deploy.plugins.module_utils.nginx_upstream import (
    HISTORY_LIMIT,
    NginxDriver,
    Probe,
    Upstream,
    VerifySpec,
    WatchSpec,
    http_probe,
    read_state,
    switch,
    verify_target,
    watch,
)
from ansible_collections.tracehub.deploy.plugins.module_utils.runner import CommandResult

BLUE = Upstream(name="tracehub", colour="blue", servers=("127.0.0.1:8101", "127.0.0.1:8102"))
GREEN = Upstream(name="tracehub", colour="green", servers=("127.0.0.1:8201", "127.0.0.1:8202"))
DRIVER = NginxDriver(binary="nginx", conf="/lb/conf/nginx.conf", prefix="/lb")


class FakeRun:
    """Records argv lists; answers rc per command verb (-t or -s)."""

    def __init__(self, validate_rc: int = 0, reload_rc: int = 0, validate_rcs: list[int] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.validate_rcs = list(validate_rcs or [])
        self.validate_rc = validate_rc
        self.reload_rc = reload_rc

    def __call__(self, argv, extra_env):
        argv = list(argv)
        self.calls.append(argv)
        if "-t" in argv:
            rc = self.validate_rcs.pop(0) if self.validate_rcs else self.validate_rc
            err = "" if rc == 0 else 'nginx: [emerg] unexpected "}" in /lb/conf/upstream.conf:4\nnginx: test failed'
            return CommandResult(tuple(argv), rc, "", err)
        return CommandResult(tuple(argv), self.reload_rc, "", "" if self.reload_rc == 0 else "invalid PID number")


def probes(*answers: tuple[int | None, str | None]):
    """A probe function answering the given (status, colour) pairs in turn, then repeating the last."""
    queue = list(answers)

    def probe(url, headers, timeout):
        status, colour = queue.pop(0) if len(queue) > 1 else queue[0]
        return Probe(status, colour, 0.002, None if status else "ConnectionRefusedError: refused")

    return probe


def no_sleep(_seconds: float) -> None:
    return None


@pytest.fixture
def paths(tmp_path):
    upstream = tmp_path / "conf" / "upstream.conf"
    upstream.parent.mkdir()
    return upstream, tmp_path / "state" / "lb-state.json"


def test_render_then_parse_roundtrip_returns_colour_and_servers():
    text = DRIVER.render(GREEN)
    assert "upstream tracehub {" in text
    assert "server 127.0.0.1:8201 max_fails=1 fail_timeout=5s;" in text
    assert DRIVER.parse(text) == {"name": "tracehub", "colour": "green", "servers": list(GREEN.servers)}


def test_render_keepalive_zero_omits_directive_and_positive_adds_it():
    assert "keepalive" not in DRIVER.render(GREEN)
    with_keepalive = Upstream(name="tracehub", colour="green", servers=GREEN.servers, keepalive=16)
    assert "    keepalive 16;" in DRIVER.render(with_keepalive)


def test_parse_foreign_file_returns_none():
    assert DRIVER.parse("upstream app { server 10.0.0.1:80; }\n") is None
    assert DRIVER.parse(None) is None


@pytest.mark.parametrize(
    ("upstream", "fragment"),
    [
        (Upstream("tracehub; evil", "green", ("127.0.0.1:1",)), "Upstream name"),
        (Upstream("tracehub", "gr een", ("127.0.0.1:1",)), "Colour"),
        (Upstream("tracehub", "green", ()), "No servers"),
        (Upstream("tracehub", "green", ("127.0.0.1:1; include /etc/passwd",)), "host:port"),
        (Upstream("tracehub", "green", ("127.0.0.1",)), "host:port"),
    ],
)
def test_switch_unsafe_upstream_is_refused(paths, upstream, fragment):
    path, state = paths
    with pytest.raises(UpstreamError, match=fragment):
        switch(str(path), upstream, DRIVER, FakeRun(), state_path=str(state))
    assert not path.exists()


def test_driver_argv_uses_prefix_conf_and_error_log():
    driver = NginxDriver(binary="/usr/sbin/nginx", conf="/lb/nginx.conf", prefix="/lb", error_log="/lb/logs/e.log")
    assert driver.validate_argv() == [
        "/usr/sbin/nginx",
        "-p",
        "/lb",
        "-c",
        "/lb/nginx.conf",
        "-e",
        "/lb/logs/e.log",
        "-t",
        "-q",
    ]
    assert driver.reload_argv()[-2:] == ["-s", "reload"]
    assert NginxDriver(reload_command=("systemctl", "reload", "nginx")).reload_argv() == [
        "systemctl",
        "reload",
        "nginx",
    ]


def test_switch_check_mode_plans_without_writing(paths):
    path, state = paths
    path.write_text(DRIVER.render(BLUE))
    run = FakeRun()
    result = switch(str(path), GREEN, DRIVER, run, state_path=str(state), dry_run=True)
    assert result.changed is True
    assert result.previous_colour == "blue"
    assert run.calls == []
    assert result.commands == [DRIVER.validate_argv(), DRIVER.reload_argv()]
    assert DRIVER.parse(path.read_text())["colour"] == "blue"
    assert not state.exists()
    assert "Would switch" in result.msg


def test_switch_to_new_colour_validates_reloads_verifies_and_records(paths):
    path, state = paths
    path.write_text(DRIVER.render(BLUE))
    run = FakeRun()
    verify = VerifySpec(url="http://lb/health", colour="green", requests=3, interval=0)
    result = switch(
        str(path),
        GREEN,
        DRIVER,
        run,
        verify=verify,
        state_path=str(state),
        run_id="r1",
        probe=probes((200, "blue"), (200, "green")),
        sleep=no_sleep,
        clock=lambda: "2026-12-03T10:00:00Z",
    )
    assert result.changed and result.verified
    assert result.verified_requests == 4
    assert run.calls == [DRIVER.validate_argv(), DRIVER.reload_argv()]
    assert path.read_text() == DRIVER.render(GREEN)
    recorded = read_state(str(state))
    assert recorded["active_colour"] == "green"
    assert recorded["history"] == [
        {
            "at": "2026-12-03T10:00:00Z",
            "from": "blue",
            "to": "green",
            "servers": list(GREEN.servers),
            "verified_requests": 4,
            "run_id": "r1",
        }
    ]
    assert result.before == DRIVER.render(BLUE) and result.after == DRIVER.render(GREEN)


def test_switch_same_colour_twice_reports_unchanged_second_time(paths):
    path, state = paths
    verify = VerifySpec(url="http://lb/health", colour="green", requests=2, interval=0)
    kwargs = {"verify": verify, "state_path": str(state), "probe": probes((200, "green")), "sleep": no_sleep}
    first = switch(str(path), GREEN, DRIVER, FakeRun(), **kwargs)
    run = FakeRun()
    second = switch(str(path), GREEN, DRIVER, run, **kwargs)
    assert first.changed is True
    assert second.changed is False
    assert run.calls == []
    assert second.verified is True
    assert len(read_state(str(state))["history"]) == 1


def test_switch_invalid_config_restores_previous_file_without_reload(paths):
    path, state = paths
    previous = DRIVER.render(BLUE)
    path.write_text(previous)
    run = FakeRun(validate_rc=1)
    with pytest.raises(UpstreamError) as caught:
        switch(str(path), GREEN, DRIVER, run, state_path=str(state))
    assert "rejected the new configuration" in str(caught.value)
    assert "unexpected" in str(caught.value)
    assert caught.value.details["rc"] == 1
    assert path.read_text() == previous
    assert not any("-s" in call for call in run.calls)
    assert not state.exists()


def test_switch_invalid_config_on_first_install_removes_the_file(paths):
    path, state = paths
    with pytest.raises(UpstreamError):
        switch(str(path), GREEN, DRIVER, FakeRun(validate_rc=1), state_path=str(state))
    assert not path.exists()


def test_switch_reload_failure_restores_previous_file(paths):
    path, state = paths
    previous = DRIVER.render(BLUE)
    path.write_text(previous)
    with pytest.raises(UpstreamError, match="Is the load balancer running"):
        switch(str(path), GREEN, DRIVER, FakeRun(reload_rc=1), state_path=str(state))
    assert path.read_text() == previous


def test_switch_unproven_restores_and_reloads_previous(paths):
    path, state = paths
    previous = DRIVER.render(BLUE)
    path.write_text(previous)
    run = FakeRun()
    verify = VerifySpec(url="http://lb/health", colour="green", requests=3, timeout=0, interval=0)
    with pytest.raises(UpstreamError) as caught:
        switch(str(path), GREEN, DRIVER, run, verify=verify, state_path=str(state), probe=probes((503, "green")))
    message = str(caught.value)
    assert "did not reach green" in message and "HTTP 503 from green" in message
    assert "traffic is unchanged" in message
    assert path.read_text() == previous
    assert run.calls == [DRIVER.validate_argv(), DRIVER.reload_argv(), DRIVER.validate_argv(), DRIVER.reload_argv()]
    assert not state.exists()


def test_switch_without_reload_only_writes_and_validates(paths):
    path, state = paths
    run = FakeRun()
    verify = VerifySpec(url="http://lb/health", colour="blue", timeout=0)
    result = switch(str(path), BLUE, DRIVER, run, verify=verify, state_path=str(state), reload=False)
    assert result.changed and not result.verified
    assert run.calls == [DRIVER.validate_argv()]
    assert read_state(str(state))["history"][0]["from"] is None


def test_switch_unchanged_but_not_served_fails_naming_the_load_balancer(paths):
    path, _state = paths
    path.write_text(DRIVER.render(GREEN))
    verify = VerifySpec(url="http://lb/health", colour="green", requests=2, timeout=0, interval=0)
    with pytest.raises(UpstreamError, match="does not serve it"):
        switch(str(path), GREEN, DRIVER, FakeRun(), verify=verify, probe=probes((None, None)))
    assert path.read_text() == DRIVER.render(GREEN)


def test_switch_history_is_capped(paths):
    path, state = paths
    state.parent.mkdir()
    state.write_text(json.dumps({"history": [{"to": "x"}] * (HISTORY_LIMIT + 5)}))
    switch(str(path), GREEN, DRIVER, FakeRun(), state_path=str(state))
    history = read_state(str(state))["history"]
    assert len(history) == HISTORY_LIMIT
    assert history[-1]["to"] == "green"


def test_read_state_broken_json_raises(tmp_path):
    broken = tmp_path / "s.json"
    broken.write_text("{nope")
    with pytest.raises(UpstreamError, match="not JSON"):
        read_state(str(broken))
    assert read_state(str(tmp_path / "missing.json")) == {}


def test_verify_target_wrong_colour_breaks_the_streak():
    spec = VerifySpec(url="u", colour="green", requests=2, timeout=5, interval=0)
    sent = verify_target(
        spec, probe=probes((200, "green"), (200, "blue"), (200, "green"), (200, "green")), sleep=no_sleep
    )
    assert sent == 4


class Clock:
    """A monotonic clock advanced by the fake sleep."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_watch_healthy_window_is_not_breached():
    clock = Clock()
    spec = WatchSpec(urls=("a", "b"), duration=5, interval=0.5, expect_colour="green")
    result = watch(spec, probe=probes((200, "green")), monotonic=clock.monotonic, sleep=clock.sleep)
    assert result.breached is False
    assert result.failures == 0
    assert result.requests == 11
    assert result.colours == {"green": 11}
    assert result.latency_ms_p50 == 2.0


def test_watch_error_rate_above_threshold_is_breached():
    clock = Clock()
    answers = [(200, "green")] * 8 + [(500, "green")] + [(200, "green")] * 20
    spec = WatchSpec(urls=("a",), duration=4, interval=0.5, max_error_rate=0.05, expect_colour="green")
    result = watch(spec, probe=probes(*answers), monotonic=clock.monotonic, sleep=clock.sleep)
    assert result.breached is True
    assert result.failures == 1
    assert "above the threshold" in result.reason
    assert result.failed_samples[0]["status"] == 500


def test_watch_consecutive_failures_stop_early():
    clock = Clock()
    spec = WatchSpec(urls=("a",), duration=60, interval=1, max_consecutive_failures=3)
    result = watch(spec, probe=probes((None, None)), monotonic=clock.monotonic, sleep=clock.sleep)
    assert result.breached is True
    assert result.requests == 3
    assert result.reason == "3 consecutive failed requests"


def test_watch_wrong_colour_counts_as_failure():
    clock = Clock()
    spec = WatchSpec(urls=("a",), duration=1, interval=0.5, expect_colour="green", max_error_rate=0)
    result = watch(spec, probe=probes((200, "blue")), monotonic=clock.monotonic, sleep=clock.sleep)
    assert result.breached is True
    assert result.failed_samples[0]["error"] == "served by blue"


def test_watch_without_urls_raises():
    with pytest.raises(UpstreamError):
        watch(WatchSpec(urls=()))


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        status = 200 if self.path in ("/health", "/api/shipments?limit=5") else 503
        self.send_response(status)
        self.send_header("X-TraceHub-Colour", "green")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        return None


def test_http_probe_reads_status_and_colour_and_survives_errors():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        ok = http_probe(f"{base}/health", {}, 2)
        with_query = http_probe(f"{base}/api/shipments?limit=5", {}, 2)
        unhealthy = http_probe(f"{base}/other", {}, 2)
    finally:
        server.shutdown()
        server.server_close()
    refused = http_probe(f"{base}/health", {}, 1)
    assert (ok.status, ok.colour, ok.ok, ok.error) == (200, "green", True, None)
    assert with_query.ok, "the query string must reach the server"
    assert (unhealthy.status, unhealthy.colour, unhealthy.ok, unhealthy.error) == (503, "green", False, "HTTP 503")
    assert refused.status is None and "ConnectionRefusedError" in refused.error
