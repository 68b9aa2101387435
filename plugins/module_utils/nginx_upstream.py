# SPDX-License-Identifier: GPL-3.0-or-later
"""Switch a load balancer between the blue and the green application instances, and watch the result.

The flow is the same for every load balancer; only the ``LoadBalancerDriver`` knows its dialect:

1. render the upstream for the target colour (``driver.render``) and compare it with the file in place;
2. write it atomically (temp file + rename, mode kept), validate the whole configuration
   (``driver.validate_argv``: ``nginx -t``), reload gracefully (``driver.reload_argv``: ``nginx -s reload``:
   old workers finish their requests, new connections reach the new workers);
3. prove through the load balancer that new requests reach the target colour (N consecutive answers
   carrying ``X-TraceHub-Colour: <colour>``);
4. if validation, reload or the proof fails: put the previous file back, validate and reload again, and
   raise ``UpstreamError`` (traffic unchanged);
5. record the active colour and the switch history in a JSON state file on the load balancer host.

``NginxDriver`` is the only driver today. An HAProxy driver would render a ``backend`` section, validate
with ``haproxy -c -f <cfg>`` and reload through the master socket or ``systemctl reload haproxy``; nothing
else changes. ``watch`` is the monitoring window after a switch: it samples URLs through the load
balancer for a while and reports the error rate, so the caller can switch back past a threshold.

Side effects are injected: ``run`` for commands, ``probe`` for HTTP, ``clock``/``sleep`` for time.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ansible_collections.tracehub.deploy.plugins.module_utils.errors import UpstreamError
from ansible_collections.tracehub.deploy.plugins.module_utils.runner import CommandResult, Run

COLOUR_HEADER = "X-TraceHub-Colour"
HISTORY_LIMIT = 100
_MARKER = "# tracehub.deploy nginx_upstream:"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_SERVER_RE = re.compile(r"^[A-Za-z0-9_.:\[\]-]+:\d+$")


@dataclass(frozen=True, slots=True)
class Upstream:
    """What the load balancer should send traffic to: one colour's instances."""

    name: str
    colour: str
    servers: tuple[str, ...]
    max_fails: int = 1
    fail_timeout: int = 5
    keepalive: int = 0

    def check(self) -> None:
        """Refuse names and addresses that could inject configuration."""
        if not _NAME_RE.match(self.name):
            raise UpstreamError(f"Upstream name {self.name!r} may only hold letters, digits, '.', '_' and '-'.")
        if not _NAME_RE.match(self.colour):
            raise UpstreamError(f"Colour {self.colour!r} may only hold letters, digits, '.', '_' and '-'.")
        if not self.servers:
            raise UpstreamError(f"No servers given for the {self.colour} upstream {self.name}: nothing to switch to.")
        bad = [server for server in self.servers if not _SERVER_RE.match(server)]
        if bad:
            raise UpstreamError(f"Server addresses must look like host:port; refused: {', '.join(bad)}.")


class LoadBalancerDriver(Protocol):
    """The dialect of one load balancer: how to render, read back, validate and reload an upstream."""

    kind: str

    def render(self, upstream: Upstream) -> str:
        """The managed file's full text for ``upstream``."""

    def parse(self, text: str | None) -> dict[str, Any] | None:
        """``{"name", "colour", "servers"}`` of a managed file's text; None when not ours or absent."""

    def validate_argv(self) -> list[str]:
        """Command that validates the whole configuration with the managed file in place."""

    def reload_argv(self) -> list[str]:
        """Command that makes the running load balancer read its configuration gracefully."""


@dataclass(frozen=True, slots=True)
class NginxDriver:
    """nginx: an ``upstream {}`` block in a file that the main configuration includes inside ``http {}``."""

    binary: str = "nginx"
    conf: str | None = None
    prefix: str | None = None
    error_log: str | None = None
    reload_command: tuple[str, ...] = ()
    kind: str = "nginx"

    def _base(self) -> list[str]:
        argv = [self.binary]
        if self.prefix:
            argv += ["-p", self.prefix]
        if self.conf:
            argv += ["-c", self.conf]
        if self.error_log:
            argv += ["-e", self.error_log]
        return argv

    def render(self, upstream: Upstream) -> str:
        """The upstream block; servers fail over within a colour (max_fails/fail_timeout)."""
        lines = [
            "# Managed by tracehub.deploy (nginx_upstream): edits are overwritten at the next switch.",
            f"{_MARKER} name={upstream.name} colour={upstream.colour}",
            f"upstream {upstream.name} {{",
        ]
        lines += [
            f"    server {server} max_fails={upstream.max_fails} fail_timeout={upstream.fail_timeout}s;"
            for server in upstream.servers
        ]
        if upstream.keepalive > 0:
            lines.append(f"    keepalive {upstream.keepalive};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def parse(self, text: str | None) -> dict[str, Any] | None:
        """Read back the colour and servers of a file this driver rendered."""
        if not text:
            return None
        marker = next((line for line in text.splitlines() if line.startswith(_MARKER)), None)
        if marker is None:
            return None
        fields = dict(part.split("=", 1) for part in marker[len(_MARKER) :].split() if "=" in part)
        servers = re.findall(r"^\s*server\s+(\S+?)(?:\s|;)", text, flags=re.MULTILINE)
        return {"name": fields.get("name"), "colour": fields.get("colour"), "servers": servers}

    def validate_argv(self) -> list[str]:
        """``nginx -t -q`` on the main configuration."""
        return [*self._base(), "-t", "-q"]

    def reload_argv(self) -> list[str]:
        """``nginx -s reload`` (the pid file of the main configuration), or the configured command."""
        if self.reload_command:
            return list(self.reload_command)
        return [*self._base(), "-s", "reload"]


@dataclass(frozen=True, slots=True)
class VerifySpec:
    """How to prove the switch: ``requests`` consecutive answers from ``colour`` within ``timeout`` s."""

    url: str
    colour: str
    requests: int = 5
    timeout: float = 30.0
    interval: float = 0.2
    request_timeout: float = 5.0
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Probe:
    """One HTTP answer (or its absence) seen through the load balancer."""

    status: int | None
    colour: str | None
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return self.status is not None and 200 <= self.status < 300


ProbeFn = Callable[[str, Mapping[str, str], float], Probe]


def http_probe(url: str, headers: Mapping[str, str], timeout: float) -> Probe:
    """GET ``url`` on a new connection; non-2xx answers and connection errors are Probes, not exceptions.

    No redirect is followed and no connection is reused: the probe sees exactly what one fresh client
    request through the load balancer gets.
    """
    parts = urllib.parse.urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname or "localhost", parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    started = time.monotonic()
    try:
        connection.request("GET", target, headers=dict(headers) | {"Connection": "close"})
        response = connection.getresponse()
        response.read()
        status = response.status
        error = None if 200 <= status < 300 else f"HTTP {status}"
        return Probe(status, response.getheader(COLOUR_HEADER), time.monotonic() - started, error)
    except (OSError, http.client.HTTPException) as exc:
        return Probe(None, None, time.monotonic() - started, f"{type(exc).__name__}: {exc}")
    finally:
        connection.close()


def _utc_now() -> str:
    """UTC ISO-8601 with microseconds always present and a Z: one format for every reader."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(slots=True)
class SwitchResult:
    """What a switch did: the ``upstream`` domain key of the module result."""

    changed: bool
    msg: str
    kind: str
    name: str
    path: str
    colour: str
    previous_colour: str | None
    servers: list[str]
    verified: bool = False
    verified_requests: int = 0
    state_path: str | None = None
    history_entry: dict[str, Any] | None = None
    commands: list[list[str]] = field(default_factory=list)
    before: str = ""
    after: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Plain values for a module result."""
        out = asdict(self)
        out.pop("before")
        out.pop("after")
        return out


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to a temp file beside ``path`` and rename it into place (readers never see half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        mode = path.stat().st_mode & 0o777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _first_lines(text: str, count: int = 3) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[:count]) or "no output"


def verify_target(spec: VerifySpec, probe: ProbeFn = http_probe, sleep: Callable[[float], None] = time.sleep) -> int:
    """Wait until ``spec.requests`` consecutive answers through the load balancer come from ``spec.colour``.

    Returns the number of requests sent; raises ``UpstreamError`` naming what was seen instead.
    """
    deadline = time.monotonic() + spec.timeout
    streak = sent = 0
    seen: dict[str, int] = {}
    while True:
        answer = probe(spec.url, spec.headers, spec.request_timeout)
        sent += 1
        if answer.ok and answer.colour == spec.colour:
            streak += 1
            if streak >= spec.requests:
                return sent
        else:
            streak = 0
            label = answer.error or f"HTTP {answer.status} from {answer.colour or 'no colour'}"
            if answer.ok:
                label = f"{answer.colour or 'no colour'}"
            seen[label] = seen.get(label, 0) + 1
        if time.monotonic() >= deadline:
            observed = ", ".join(f"{label} x{count}" for label, count in sorted(seen.items(), key=lambda kv: -kv[1]))
            raise UpstreamError(
                f"Requests through {spec.url} did not reach {spec.colour} {spec.requests} times in a row within "
                f"{spec.timeout:g} s; seen instead: {observed or 'nothing'}.",
                verify_url=spec.url,
                observed=seen,
            )
        sleep(spec.interval)


def _update_state(
    state_path: Path, result: SwitchResult, entry: dict[str, Any] | None, now: str
) -> tuple[bool, dict[str, Any]]:
    """Record the active colour (and the switch, if one happened); returns (written, state)."""
    raw = _read(state_path)
    try:
        state = json.loads(raw) if raw else {}
    except ValueError:
        state = {}
    history = list(state.get("history", []))
    if entry is not None:
        history = [*history, entry][-HISTORY_LIMIT:]
    wanted = {
        "kind": result.kind,
        "upstream": result.name,
        "path": result.path,
        "active_colour": result.colour,
        "servers": result.servers,
    }
    current = {key: state.get(key) for key in wanted}
    if current == wanted and entry is None:
        return False, state
    new_state = wanted | {"updated_at": now, "history": history}
    write_atomically(state_path, json.dumps(new_state, indent=2) + "\n", mode=0o644)
    return True, new_state


def switch(
    path: str,
    upstream: Upstream,
    driver: LoadBalancerDriver,
    run: Run,
    verify: VerifySpec | None = None,
    state_path: str | None = None,
    run_id: str | None = None,
    dry_run: bool = False,
    reload: bool = True,
    probe: ProbeFn = http_probe,
    clock: Callable[[], str] = _utc_now,
    sleep: Callable[[float], None] = time.sleep,
) -> SwitchResult:
    """Point the load balancer's upstream at ``upstream.colour``; see the module docstring for the flow.

    With ``reload=False`` the file is written and validated only (first install, before the load
    balancer starts); nothing is reloaded or verified.
    """
    upstream.check()
    target = Path(path)
    before = _read(target)
    after = driver.render(upstream)
    previous = driver.parse(before)
    previous_colour = previous.get("colour") if previous else None
    file_changes = before != after
    result = SwitchResult(
        changed=file_changes,
        msg="",
        kind=driver.kind,
        name=upstream.name,
        path=str(target),
        colour=upstream.colour,
        previous_colour=previous_colour,
        servers=list(upstream.servers),
        state_path=state_path,
        before=before or "",
        after=after,
    )
    where = f"{driver.kind} upstream {upstream.name} ({target})"
    if dry_run:
        if file_changes:
            result.commands = [driver.validate_argv()] + ([driver.reload_argv()] if reload else [])
            result.msg = f"Would switch {where} from {previous_colour or 'nothing'} to {upstream.colour}."
        else:
            result.msg = f"{where} already sends traffic to {upstream.colour}."
        return result

    if file_changes:
        _apply(target, before, after, driver, run, result, where, reload=reload)
    if verify is not None and reload:
        try:
            result.verified_requests = verify_target(verify, probe=probe, sleep=sleep)
        except UpstreamError as exc:
            if file_changes:
                _restore(target, before, driver, run, result)
                raise UpstreamError(
                    f"Switching {where} to {upstream.colour} failed: {exc} The previous upstream "
                    f"({previous_colour or 'none'}) is back in place and reloaded; traffic is unchanged.",
                    commands=result.commands,
                    **exc.details,
                ) from exc
            raise UpstreamError(
                f"{where} already names {upstream.colour}, but the load balancer does not serve it: {exc} "
                "Check that the load balancer runs and the instances are healthy.",
                **exc.details,
            ) from exc
        result.verified = True
    entry = None
    now = clock()
    if file_changes:
        entry = {
            "at": now,
            "from": previous_colour,
            "to": upstream.colour,
            "servers": list(upstream.servers),
            "verified_requests": result.verified_requests,
            "run_id": run_id,
        }
        result.history_entry = entry
    if state_path:
        written, _state = _update_state(Path(state_path), result, entry, now)
        result.changed = result.changed or written
    proof = f", {result.verified_requests} requests verified" if result.verified else ""
    if file_changes:
        result.msg = f"Switched {where} from {previous_colour or 'nothing'} to {upstream.colour}{proof}."
    else:
        result.msg = f"{where} already sends traffic to {upstream.colour}{proof}."
    return result


def _apply(
    target: Path,
    before: str | None,
    after: str,
    driver: LoadBalancerDriver,
    run: Run,
    result: SwitchResult,
    where: str,
    reload: bool = True,
) -> None:
    """Write, validate, reload; on a refusal restore the previous file and raise."""
    write_atomically(target, after)
    checked = _run(run, driver.validate_argv(), result)
    if not checked.ok:
        _restore(target, before, driver, run, result, reload=False)
        raise UpstreamError(
            f"Switching {where} to {result.colour} was refused: {driver.kind} rejected the new configuration "
            f"(rc {checked.rc}): {_first_lines(checked.stderr or checked.stdout)}. The previous file is restored; "
            "the running load balancer was not reloaded and traffic is unchanged.",
            rc=checked.rc,
            stderr=checked.stderr,
            commands=result.commands,
        )
    if not reload:
        return
    reloaded = _run(run, driver.reload_argv(), result)
    if not reloaded.ok:
        _restore(target, before, driver, run, result, reload=False)
        raise UpstreamError(
            f"Reloading {driver.kind} for {where} failed (rc {reloaded.rc}): "
            f"{_first_lines(reloaded.stderr or reloaded.stdout)}. The previous file is restored; traffic is "
            "unchanged. Is the load balancer running?",
            rc=reloaded.rc,
            stderr=reloaded.stderr,
            commands=result.commands,
        )


def _restore(
    target: Path, before: str | None, driver: LoadBalancerDriver, run: Run, result: SwitchResult, reload: bool = True
) -> None:
    """Put the previous file back (or remove ours when there was none) and reload if asked."""
    if before is None:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
    else:
        write_atomically(target, before)
    if reload and _run(run, driver.validate_argv(), result).ok:
        _run(run, driver.reload_argv(), result)


def _run(run: Run, argv: Sequence[str], result: SwitchResult) -> CommandResult:
    result.commands.append(list(argv))
    return run(argv, {})


def read_state(state_path: str) -> dict[str, Any]:
    """The load balancer's recorded state (active colour, servers, history); empty when none yet."""
    raw = _read(Path(state_path))
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise UpstreamError(f"The load balancer state file {state_path} is not JSON: {exc}") from exc


@dataclass(frozen=True, slots=True)
class WatchSpec:
    """The monitoring window: sample ``urls`` through the load balancer for ``duration`` seconds."""

    urls: tuple[str, ...]
    duration: float = 60.0
    interval: float = 0.5
    max_error_rate: float = 0.01
    max_consecutive_failures: int = 5
    expect_colour: str | None = None
    request_timeout: float = 5.0
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class WatchResult:
    """What the monitoring window saw: the ``watch`` domain key."""

    requests: int
    failures: int
    error_rate: float
    breached: bool
    reason: str
    duration_seconds: float
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    colours: dict[str, int]
    failed_samples: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        """Plain values for a module result."""
        return asdict(self)


def _percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return round(ordered[index] * 1000, 2)


def watch(
    spec: WatchSpec,
    probe: ProbeFn = http_probe,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WatchResult:
    """Sample the URLs round robin; a failure is a non-2xx, a connection error or the wrong colour.

    Stops early when ``max_consecutive_failures`` failures come in a row. ``breached`` is true when the
    error rate exceeds ``max_error_rate`` or the early stop fired.
    """
    if not spec.urls:
        raise UpstreamError("The monitoring window needs at least one URL to watch.")
    started = monotonic()
    sent = failures = streak = 0
    latencies: list[float] = []
    colours: dict[str, int] = {}
    samples: list[dict[str, Any]] = []
    stopped_early = False
    while True:
        url = spec.urls[sent % len(spec.urls)]
        answer = probe(url, spec.headers, spec.request_timeout)
        sent += 1
        colours[answer.colour or "none"] = colours.get(answer.colour or "none", 0) + 1
        wrong = spec.expect_colour is not None and answer.ok and answer.colour != spec.expect_colour
        if answer.ok and not wrong:
            streak = 0
            latencies.append(answer.seconds)
        else:
            failures += 1
            streak += 1
            if len(samples) < 10:
                samples.append(
                    {
                        "url": url,
                        "at_seconds": round(monotonic() - started, 3),
                        "status": answer.status,
                        "colour": answer.colour,
                        "error": answer.error or (f"served by {answer.colour}" if wrong else None),
                    }
                )
            if streak >= spec.max_consecutive_failures:
                stopped_early = True
                break
        if monotonic() - started >= spec.duration:
            break
        sleep(spec.interval)
    rate = failures / sent
    breached = stopped_early or rate > spec.max_error_rate
    if stopped_early:
        reason = f"{streak} consecutive failed requests"
    elif breached:
        reason = f"error rate {rate:.2%} above the threshold {spec.max_error_rate:.2%}"
    else:
        reason = f"error rate {rate:.2%} within the threshold {spec.max_error_rate:.2%}"
    return WatchResult(
        requests=sent,
        failures=failures,
        error_rate=round(rate, 6),
        breached=breached,
        reason=reason,
        duration_seconds=round(monotonic() - started, 3),
        latency_ms_p50=_percentile(latencies, 50),
        latency_ms_p95=_percentile(latencies, 95),
        colours=colours,
        failed_samples=samples,
    )
