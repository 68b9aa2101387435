"""An open-loop load generator: steady requests (reads and writes) at a fixed rate through the load balancer.

Constant arrival rate, like k6's ``constant-arrival-rate`` executor: requests start on a fixed schedule
whatever the latency, so a stall shows as latency instead of quietly lowering the rate, with at most
``max_in_flight`` requests open at once (a finite set of users). A request whose moment comes while all of
them are busy is not sent and is counted as ``dropped`` (k6's dropped_iterations): that measures the
machine's capacity, not a failure of the switch, and the report shows it separately. One asyncio event loop
(in its own thread) drives every request, so the generator itself costs little CPU; ``late_ms`` records how
late each request started against its schedule.

Each request uses a new connection (``Connection: close``): a client-side keepalive race at an nginx reload
would otherwise be hidden by, or blamed on, client retries; here every failure counts. A request fails on a
non-2xx answer or any connection error.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit


@dataclass(slots=True)
class Sample:
    """One request: when it started (seconds since the load began), what it was, how it ended."""

    t: float
    kind: str
    status: int | None
    latency_ms: float
    colour: str | None
    error: str | None = None
    # How late the request started after its scheduled moment (the generator's own lag).
    late_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


# The mix: mostly reads, a steady share of writes (v1.2 writes without organization_id, v1.3 in the
# caller's organization). Weights per 20 requests.
MIX = (
    ("list_shipments", 6),
    ("health", 3),
    ("get_shipment", 4),
    ("list_events", 2),
    ("create_shipment", 3),
    ("create_event", 2),
)


class HttpError(Exception):
    """The answer could not be read as HTTP."""


def _decode_chunked(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _crlf, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return bytes(out)


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, lower-cased headers and body of a complete HTTP/1.1 answer read until the server closed."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise HttpError(f"incomplete answer ({len(data)} bytes)")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise HttpError(f"bad status line {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        name, _colon, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _decode_chunked(body)
    return int(parts[1]), headers, body


@dataclass
class LoadGenerator:
    """Sends ``rate`` requests per second to ``base_url`` until ``stop()``; collects ``samples``."""

    base_url: str
    rate: float = 200.0
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0
    max_in_flight: int = 128
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._known_ids: list[str] = []
        self._schedule = [kind for kind, weight in MIX for _slot in range(weight)]
        self._thread: threading.Thread | None = None
        self.started_at = 0.0
        self.started_wall = 0.0
        self.scheduled = 0
        self.dropped: list[float] = []

    async def _request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict, str | None]:
        payload = json.dumps(body).encode() if body is not None else b""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}:{self._port}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        reader, writer = await asyncio.open_connection(self._host, self._port)
        try:
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
            await writer.drain()
            data = await reader.read(-1)
        finally:
            writer.close()
        status, headers, raw = parse_response(data)
        parsed: dict = {}
        if raw and headers.get("content-type", "").startswith("application/json"):
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = {}
        return status, parsed, headers.get("x-tracehub-colour")

    async def _one(self, kind: str, due: float) -> None:
        started = time.monotonic()
        late_ms = round((started - self.started_at - due) * 1000, 2)
        status = colour = error = None
        try:
            status, body, colour = await asyncio.wait_for(self._call(kind), self.timeout)
            if not 200 <= status < 300:
                error = f"HTTP {status}: {str(body.get('error', ''))[:120]}"
        except (OSError, HttpError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        t = round(started - self.started_at, 4)
        sample = Sample(t, kind, status, round((time.monotonic() - started) * 1000, 2), colour, error, late_ms)
        with self._lock:
            self.samples.append(sample)

    def _shipment_id(self) -> str | None:
        with self._lock:
            if not self._known_ids:
                return None
            return self._known_ids[-1 - (len(self.samples) % min(len(self._known_ids), 50))]

    async def _call(self, kind: str) -> tuple[int, dict, str | None]:
        shipment = self._shipment_id()
        if kind in ("get_shipment", "list_events", "create_event") and shipment is None:
            kind = "list_shipments"
        if kind == "list_shipments":
            status, body, colour = await self._request("GET", "/api/shipments?limit=5")
            ids = [s["id"] for s in body.get("shipments", [])] if status == 200 else []
            if ids:
                with self._lock:
                    self._known_ids = (self._known_ids + ids)[-200:]
            return status, body, colour
        if kind == "health":
            return await self._request("GET", "/health")
        if kind == "get_shipment":
            return await self._request("GET", f"/api/shipments/{shipment}")
        if kind == "list_events":
            return await self._request("GET", f"/api/shipments/{shipment}/events?limit=5")
        if kind == "create_shipment":
            ref = f"BENCH-{uuid.uuid4().hex[:16]}"
            status, body, colour = await self._request(
                "POST", "/api/shipments", {"reference": ref, "vessel_name": "bench"}
            )
            if status == 201 and body.get("id"):
                with self._lock:
                    self._known_ids.append(body["id"])
            return status, body, colour
        return await self._request(
            "POST", f"/api/shipments/{shipment}/events", {"event_status": "GATE_IN", "location_name": "bench"}
        )

    async def _main(self) -> None:
        interval = 1.0 / self.rate
        pending: set[asyncio.Task] = set()
        n = 0
        while not self._stop.is_set():
            due = n * interval
            delay = self.started_at + due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(pending) >= self.max_in_flight:
                self.dropped.append(round(due, 4))
            else:
                task = asyncio.create_task(self._one(self._schedule[n % len(self._schedule)], due))
                pending.add(task)
                task.add_done_callback(pending.discard)
            n += 1
        self.scheduled = n
        if pending:
            await asyncio.wait(pending, timeout=self.timeout + 5)

    def start(self) -> None:
        """Start sending in a background thread."""
        self.started_at = time.monotonic()
        self.started_wall = time.time()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), name="load", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop scheduling; requests in flight finish (at most ``timeout`` seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def count(self) -> int:
        with self._lock:
            return len(self.samples)

    def snapshot(self) -> list[dict]:
        with self._lock:
            return [asdict(s) for s in self.samples]
