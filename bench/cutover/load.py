"""An open-loop load generator: steady requests (reads and writes) at a fixed rate through the load balancer.

Open loop: requests are started on a fixed schedule whatever the latency, as real users do, so a stall shows
as latency and errors instead of quietly lowering the rate. Each request uses a new connection
(``Connection: close``): a client-side keepalive race at an nginx reload would otherwise be hidden by, or
blamed on, client retries; here every failure counts. A request fails on a non-2xx answer or any connection
error.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
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
    # How late the request started after its scheduled moment (the client's own queueing).
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


@dataclass
class LoadGenerator:
    """Sends ``rate`` requests per second to ``base_url`` until ``stop()``; collects ``samples``."""

    base_url: str
    rate: float = 200.0
    headers: dict[str, str] = field(default_factory=dict)
    workers: int = 64
    timeout: float = 10.0
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._known_ids: list[str] = []
        self._schedule = [kind for kind, weight in MIX for _ in range(weight)]
        self._thread: threading.Thread | None = None
        self.started_at = 0.0
        self.started_wall = 0.0
        self.scheduled = 0

    def _request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict, str | None]:
        connection = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = dict(self.headers) | {"Connection": "close"}
            if payload is not None:
                headers["Content-Type"] = "application/json"
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
            parsed = {}
            if data and response.getheader("Content-Type", "").startswith("application/json"):
                try:
                    parsed = json.loads(data)
                except ValueError:
                    parsed = {}
            return response.status, parsed, response.getheader("X-TraceHub-Colour")
        finally:
            connection.close()

    def _one(self, kind: str, t: float) -> None:
        started = time.monotonic()
        late_ms = round((started - self.started_at - t) * 1000, 2)
        status = colour = error = None
        try:
            status, body, colour = self._call(kind)
            if status is not None and not 200 <= status < 300:
                error = f"HTTP {status}: {str(body.get('error', ''))[:120]}"
        except (OSError, http.client.HTTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"
        sample = Sample(t, kind, status, round((time.monotonic() - started) * 1000, 2), colour, error, late_ms)
        with self._lock:
            self.samples.append(sample)

    def _shipment_id(self) -> str | None:
        with self._lock:
            return (
                self._known_ids[-1 - (len(self.samples) % max(1, min(len(self._known_ids), 50)))]
                if self._known_ids
                else None
            )

    def _call(self, kind: str) -> tuple[int, dict, str | None]:
        shipment = self._shipment_id()
        if kind in ("get_shipment", "list_events", "create_event") and shipment is None:
            kind = "list_shipments"
        if kind == "list_shipments":
            status, body, colour = self._request("GET", "/api/shipments?limit=5")
            ids = [s["id"] for s in body.get("shipments", [])] if status == 200 else []
            if ids:
                with self._lock:
                    self._known_ids = (self._known_ids + ids)[-200:]
            return status, body, colour
        if kind == "health":
            return self._request("GET", "/health")
        if kind == "get_shipment":
            return self._request("GET", f"/api/shipments/{shipment}")
        if kind == "list_events":
            return self._request("GET", f"/api/shipments/{shipment}/events?limit=5")
        if kind == "create_shipment":
            ref = f"BENCH-{uuid.uuid4().hex[:16]}"
            status, body, colour = self._request("POST", "/api/shipments", {"reference": ref, "vessel_name": "bench"})
            if status == 201 and body.get("id"):
                with self._lock:
                    self._known_ids.append(body["id"])
            return status, body, colour
        return self._request(
            "POST", f"/api/shipments/{shipment}/events", {"event_status": "GATE_IN", "location_name": "bench"}
        )

    def _loop(self) -> None:
        interval = 1.0 / self.rate
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="load")
        n = 0
        try:
            while not self._stop.is_set():
                due = self.started_at + n * interval
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(self._one, self._schedule[n % len(self._schedule)], round(due - self.started_at, 4))
                n += 1
        finally:
            # Requests still queued in the client were never sent: drop them; in-flight ones finish.
            pool.shutdown(wait=True, cancel_futures=True)
            self.scheduled = n

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.started_wall = time.time()
        self._thread = threading.Thread(target=self._loop, name="load-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def count(self) -> int:
        with self._lock:
            return len(self.samples)

    def snapshot(self) -> list[dict]:
        with self._lock:
            return [asdict(s) for s in self.samples]
