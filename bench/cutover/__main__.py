"""Benchmark: zero failed requests across a blue-green cutover and its rollback, measured.

    .venv/bin/python -m bench.cutover                 # ~200 req/s, >= 10,000 requests, both switches
    .venv/bin/python -m bench.cutover --smoke         # seconds: a small run that proves the bench works

It builds a throwaway stack (its own PostgreSQL seeded at revision 002, two blue v1.2 and two green v1.3
gunicorn instances, a real nginx, all on free loopback ports), starts blue and nginx with
``playbooks/serve_blue.yml``, then sends steady traffic through nginx (reads and writes, open loop) while it
runs the real playbooks: ``deploy.yml`` (backup -> online migration 002 -> 006 with blue writing -> checks ->
green -> cutover -> backup) and ``rollback.yml -e rollback_level=2`` (back to blue). It reports requests sent
and failed (non-2xx or connection error), throughput and latency percentiles per second, writes JSON and a
PNG chart with the switch moments marked under ``.local/bench/cutover/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.cutover.load import LoadGenerator
from bench.cutover.report import build_report, print_table, write_chart
from bench.cutover.stack import (
    PROJECT_DIR,
    SMOKE_USER,
    Stack,
    run_playbook,
    start_database,
    teardown,
    write_inventory,
)

MARKED_PHASES = {"backup", "migrate", "validate", "cutover", "rollback_level_2"}


def _relative(step: dict, origin: float) -> dict:
    return step | {"t_start": round(step["start"] - origin, 3), "t_end": round(step["end"] - origin, 3)}


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _run_step(stack: Stack, name: str, playbook: str, *args: str) -> dict:
    started = time.time()
    completed = run_playbook(stack, playbook, *args)
    step = {"name": name, "playbook": playbook, "rc": completed.returncode, "start": started, "end": time.time()}
    log = stack.base / f"{name}.log"
    log.write_text(completed.stdout + completed.stderr)
    step["log"] = str(log)
    print(f"  {name}: {playbook} rc={completed.returncode} in {step['end'] - started:.1f} s", flush=True)
    if completed.returncode != 0:
        print(completed.stdout[-4000:], file=sys.stderr)
    return step


def run(args: argparse.Namespace) -> int:
    base = Path(tempfile.mkdtemp(prefix="tracehub-bench-cutover-"))
    stack = Stack(base=base)
    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    run_id = f"bench-cutover-{time.strftime('%Y%m%dT%H%M%S')}"
    load = None
    steps: list[dict] = []
    try:
        print(f"Stack in {base}: PostgreSQL, seed at 002, blue x{args.instances}, green x{args.instances}, nginx")
        start_database(stack)
        from tools.seed import seed

        seed(stack.conn, scale=args.scale)
        write_inventory(stack, blue=args.instances, green=args.instances)
        steps.append(_run_step(stack, "serve_blue", "serve_blue.yml", "-e", f"tracehub_run_id={run_id}"))
        if steps[-1]["rc"] != 0:
            return 2
        load = LoadGenerator(
            stack.lb_url(), rate=args.rate, headers={"X-TraceHub-User": SMOKE_USER}, max_in_flight=args.max_in_flight
        )
        load.start()
        print(f"Load: {args.rate:g} req/s through {stack.lb_url()}", flush=True)
        time.sleep(args.settle)
        common = ["-e", f"tracehub_run_id={run_id}", "-e", f"cutover_monitor_seconds={args.monitor_seconds}"]
        deploy_args = [] if args.strict_counts else ["--skip-tags", "migrate_verify"]
        steps.append(_run_step(stack, "deploy", "deploy.yml", *common, *deploy_args))
        time.sleep(args.settle)
        steps.append(
            _run_step(
                stack,
                "rollback_level_2",
                "rollback.yml",
                *common,
                "-e",
                "rollback_level=2",
                "-e",
                f"rollback_monitor_seconds={args.monitor_seconds}",
            )
        )
        deadline = time.monotonic() + 600
        time.sleep(args.settle)
        while load.count() < args.min_requests and time.monotonic() < deadline:
            time.sleep(0.5)
        load.stop()
        history = stack.state().get("history", [])
        switches = [
            {"t": round(_epoch(h["at"]) - load.started_wall, 3), "from": h["from"], "to": h["to"], "at": h["at"]}
            for h in history
            if h.get("from")
        ]
        phases = _phases(stack, run_id, load.started_wall)
        report = build_report(
            load.snapshot(),
            switches=switches,
            steps=[
                s
                | {"t_start": round(s["start"] - load.started_wall, 3), "t_end": round(s["end"] - load.started_wall, 3)}
                for s in steps
            ],
            phases=phases,
            rate=args.rate,
        )
        report["summary"]["scheduled"] = load.scheduled
        report["summary"]["dropped"] = len(load.dropped)
        report["dropped_at"] = load.dropped
        stamp = time.strftime("%Y%m%dT%H%M%S")
        json_path = out_dir / f"cutover-{stamp}.json"
        json_path.write_text(json.dumps(report, indent=2))
        (out_dir / "latest.json").write_text(json.dumps(report, indent=2))
        print_table(report)
        chart = write_chart(report, out_dir / f"cutover-{stamp}.png")
        if chart is not None:
            shutil.copyfile(chart, out_dir / "latest.png")
            print(f"Chart: {chart}")
        print(f"JSON:  {json_path}")
        ok = report["summary"]["failed"] == 0 and all(s["rc"] == 0 for s in steps) and len(switches) >= 2
        print("RESULT:", "PASS (0 failed requests across both switches)" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        if load is not None:
            load.stop()
        if args.keep:
            print(f"Kept the stack in {base} (processes still running).")
        else:
            teardown(stack)
            shutil.rmtree(base, ignore_errors=True)


def _phases(stack: Stack, run_id: str, origin: float) -> list[dict]:
    record = stack.base / "runs" / f"{run_id}.json"
    if not record.exists():
        return []
    phases = []
    for entry in json.loads(record.read_text()).get("phases", []):
        if entry.get("phase") in {"backup", "migrate", "validate", "cutover", "rollback_level_2"} and entry.get(
            "started"
        ):
            phases.append(
                {
                    "phase": entry["phase"],
                    "host": entry.get("host"),
                    "t_start": round(_epoch(entry["started"]) - origin, 3),
                    "t_end": round(_epoch(entry["finished"]) - origin, 3) if entry.get("finished") else None,
                }
            )
    return phases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    parser.add_argument("--min-requests", type=int, default=10_000, help="keep the load on until this many")
    parser.add_argument(
        "--max-in-flight", type=int, default=128, help="open requests at most; beyond, a request is dropped"
    )
    parser.add_argument("--settle", type=float, default=10.0, help="seconds of load before, between and after")
    parser.add_argument("--monitor-seconds", type=float, default=15.0, help="cutover monitoring window")
    parser.add_argument("--instances", type=int, default=2, help="app instances per colour")
    parser.add_argument("--scale", type=int, default=1, help="tools.seed scale of the database")
    parser.add_argument("--out", default=str(PROJECT_DIR / ".local" / "bench" / "cutover"))
    parser.add_argument(
        "--strict-counts",
        action="store_true",
        help="keep the migrate role's equal-row-count check, which live writers necessarily break",
    )
    parser.add_argument("--keep", action="store_true", help="leave the stack running for inspection")
    parser.add_argument("--smoke", action="store_true", help="tiny run (seconds): rate 30, 200 requests")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rate, args.min_requests, args.settle, args.monitor_seconds, args.instances = 30.0, 200, 2.0, 2.0, 1
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
