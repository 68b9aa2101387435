"""Zero-downtime benchmark: migrate 002 -> 006 while v1.2 keeps writing, the project's revisions beside the plan's.

    .venv/bin/python -m bench.zero_downtime                 # scale 1796 (about 2.5 M rows), 4 writers
    .venv/bin/python -m bench.zero_downtime --smoke         # a few thousand rows, seconds: proves it still runs

Starts its own PostgreSQL (tools.localpg, free port, temporary directory), seeds revision 002 once
(tools.seed) and clones it for each variant, so both migrate the same data:

- ``project``: the collection's online revisions (alembic/), through ``alembic_ops.migrate`` with its defaults;
- ``baseline``: the sprint plan's revisions copied literally (bench/zero_downtime/baseline/).

While a variant migrates, ``--writers`` processes replay v1.2's pattern (inserts without organization_id into
shipments, documents, container_events, audit_logs and notifications; updates of shipments; reads), timing
every statement. Afterwards every acknowledged insert must exist and be owned by VIBOTAJ, and every shipment
must hold the last value its writer updated it to. Prints a comparison table; writes JSON and a PNG chart
(write latency over time with the revision boundaries) under .local/bench/zero_downtime/.

Targets (issue 3): the chain completes; 0 failed writes; 0 lost writes; max write latency <= 0.25 s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[2]
for entry in (PROJECT_DIR / ".collections", PROJECT_DIR):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

import psycopg2  # noqa: E402
from psycopg2 import sql  # noqa: E402

from ansible_collections.tracehub.deploy.plugins.module_utils import alembic_ops  # noqa: E402
from ansible_collections.tracehub.deploy.plugins.module_utils.errors import DeployError  # noqa: E402
from ansible_collections.tracehub.deploy.plugins.module_utils.pg import ConnInfo, connect  # noqa: E402
from tools.localpg import LocalServer, free_port, wait_until_accepting  # noqa: E402
from tools.seed import TENANT_TABLES, planned_counts, seed  # noqa: E402

VIBOTAJ = "00000000-0000-0000-0000-000000000001"
TARGET_MAX_LATENCY = 0.25
VARIANTS = {
    "project": PROJECT_DIR / "alembic",
    "baseline": PROJECT_DIR / "bench" / "zero_downtime" / "baseline",
}
OUT_DIR = PROJECT_DIR / ".local" / "bench" / "zero_downtime"
DOCS_CHART = PROJECT_DIR / "docs" / "zero_downtime.png"
APP_USER = "tracehub_bench"
APP_PASSWORD = "b3nch%z@ro:down"
# v1.2's mix of statements (weights).
MIX = (
    ("insert shipments", 10),
    ("insert documents", 15),
    ("insert container_events", 20),
    ("insert audit_logs", 20),
    ("insert notifications", 10),
    ("update shipments", 15),
    ("read", 10),
)


# --- the old application (v1.2): never sends organization_id ---------------------------------------------


def _writer(
    index: int,
    writers: int,
    kwargs: dict[str, Any],
    shipments: list[str],
    users: list[str],
    think: float,
    stop: Any,
    queue: Any,
) -> None:
    """One v1.2 worker: a loop of single-statement transactions, each timed; results go to ``queue``."""
    rng = random.Random(1000 + index)
    ops = [name for name, weight in MIX for _slot in range(weight)]
    own = shipments[index::writers] or shipments
    samples: list[tuple[float, float, str, bool, str]] = []
    acked: dict[str, list[str]] = {
        t: [] for t in ("shipments", "documents", "container_events", "audit_logs", "notifications")
    }
    updated: dict[str, str] = {}
    connection = psycopg2.connect(**kwargs)
    n = 0
    try:
        while not stop.is_set():
            n += 1
            op = rng.choice(ops)
            new_id = str(uuid.uuid4())
            value = f"w{index}-{n}"
            started = time.monotonic()
            error = ""
            try:
                with connection.cursor() as cur:
                    target = _statement(cur, op, new_id, value, rng, own, shipments, users, index, n)
                connection.commit()
                ok = True
            except psycopg2.Error as exc:
                ok = False
                error = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                try:
                    connection.rollback()
                except psycopg2.Error:
                    connection = psycopg2.connect(**kwargs)
            elapsed = time.monotonic() - started
            samples.append((started, elapsed, op, ok, error))
            if ok and op.startswith("insert "):
                acked[op.split(" ", 1)[1]].append(new_id)
            elif ok and op == "update shipments":
                updated[target] = value
            if think > 0:
                time.sleep(think * (0.5 + rng.random()))
    finally:
        connection.close()
        queue.put({"index": index, "samples": samples, "acked": acked, "updated": updated})


def _statement(
    cur: Any,
    op: str,
    new_id: str,
    value: str,
    rng: random.Random,
    own: list[str],
    shipments: list[str],
    users: list[str],
    index: int,
    n: int,
) -> str | None:
    """Run one v1.2 statement; returns the shipment an update targeted."""
    if op == "insert shipments":
        cur.execute(
            "INSERT INTO shipments (id, reference, container_number, status, vessel_name) "
            "VALUES (%s, %s, %s, 'DRAFT', %s)",
            (new_id, f"ZD-{index}-{n}-{new_id[:8]}", f"MSCU{n:07d}", value),
        )
    elif op == "insert documents":
        cur.execute(
            "INSERT INTO documents (id, shipment_id, name, document_type, status) "
            "VALUES (%s, %s, %s, 'OTHER', 'UPLOADED')",
            (new_id, rng.choice(shipments), f"scan {value}.pdf"),
        )
    elif op == "insert container_events":
        cur.execute(
            "INSERT INTO container_events (id, shipment_id, event_status, event_time, location_name, source) "
            "VALUES (%s, %s, 'OTHER', now(), 'Lagos Apapa', 'bench')",
            (new_id, rng.choice(shipments)),
        )
    elif op == "insert audit_logs":
        cur.execute(
            "INSERT INTO audit_logs (id, user_id, action, resource_type, resource_id, details) "
            "VALUES (%s, %s, 'update', 'shipment', %s, '{\"by\": \"v1.2\"}')",
            (new_id, rng.choice(users), rng.choice(shipments)),
        )
    elif op == "insert notifications":
        cur.execute(
            "INSERT INTO notifications (id, user_id, notification_type, title, message, shipment_id) "
            "VALUES (%s, %s, 'CONTAINER_UPDATE', 'Container moved', %s, %s)",
            (new_id, rng.choice(users), value, rng.choice(shipments)),
        )
    elif op == "update shipments":
        target = rng.choice(own)
        cur.execute("UPDATE shipments SET vessel_name = %s, updated_at = now() WHERE id = %s", (value, target))
        return target
    else:
        cur.execute(
            "SELECT s.reference, count(d.id) FROM shipments s LEFT JOIN documents d ON d.shipment_id = s.id "
            "WHERE s.id = %s GROUP BY s.reference",
            (rng.choice(shipments),),
        )
        cur.fetchall()
    return None


# --- one variant ----------------------------------------------------------------------------------------


def _admin_execute(server: LocalServer, statement: Any, dbname: str = "postgres") -> None:
    connection = server.admin_connect(dbname)
    connection.autocommit = True
    try:
        with connection.cursor() as cur:
            cur.execute(statement)
    finally:
        connection.close()


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _window_stats(samples: list[tuple], start: float, end: float) -> dict[str, Any]:
    writes = [s for s in samples if s[2] != "read" and start <= s[0] < end]
    latencies = [s[1] for s in writes]
    return {
        "writes": len(writes),
        "failed": sum(1 for s in writes if not s[3]),
        "p50_s": round(_percentile(latencies, 0.50), 4),
        "p99_s": round(_percentile(latencies, 0.99), 4),
        "max_s": round(max(latencies, default=0.0), 4),
    }


def run_variant(server: LocalServer, name: str, template: str, args: argparse.Namespace) -> dict[str, Any]:
    """Clone the seeded database, start the writers, migrate 002 -> 006, stop, verify, summarise."""
    dbname = f"zd_{name}"
    _admin_execute(server, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
    _admin_execute(
        server,
        sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
            sql.Identifier(dbname), sql.Identifier(template), sql.Identifier(APP_USER)
        ),
    )
    conn = ConnInfo(
        host="127.0.0.1",
        port=server.port,
        user=APP_USER,
        password=APP_PASSWORD,
        dbname=dbname,
        sslmode="disable",
        application_name="bench migrate",
    )
    connection = connect(conn)
    with connection.cursor() as cur:
        cur.execute("SELECT id::text FROM shipments ORDER BY md5(id::text) LIMIT 600")
        shipments = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT id::text FROM users ORDER BY email")
        users = [r[0] for r in cur.fetchall()]
    connection.close()

    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    queue = ctx.Queue()
    kwargs = conn.with_application_name(f"v1.2 writer ({name})").psycopg2_kwargs()
    workers = [
        ctx.Process(target=_writer, args=(i, args.writers, kwargs, shipments, users, args.think, stop, queue))
        for i in range(args.writers)
    ]
    t0 = time.monotonic()
    for worker in workers:
        worker.start()
    time.sleep(args.warmup)

    boundaries: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    migration_start = time.monotonic()
    last = migration_start

    def on_progress(revision: str, message: str, elapsed: float) -> None:
        nonlocal last
        now = time.monotonic()
        boundaries.append(
            {
                "revision": revision,
                "start": last - t0,
                "end": now - t0,
                "duration_s": round(now - last, 3),
                "status": "ok",
            }
        )
        last = now

    failures: list[str] = []
    # An operator re-runs a failed migration: each variant gets the same number of attempts.
    for _attempt in range(args.attempts):
        try:
            alembic_ops.migrate(
                conn,
                str(VARIANTS[name]),
                "006",
                on_progress=on_progress,
                on_event=events.append,
                settings=alembic_ops.OnlineSettings(),
            )
            break
        except DeployError as exc:
            failures.append(exc.msg)
            now = time.monotonic()
            boundaries.append(
                {
                    "revision": exc.details.get("failed_revision", "?"),
                    "start": last - t0,
                    "end": now - t0,
                    "duration_s": round(now - last, 3),
                    "status": "failed",
                }
            )
            last = now
    failure = failures[-1] if failures and alembic_ops.current(conn) != ("006",) else None
    migration_end = time.monotonic()
    time.sleep(args.cooldown)
    stop.set()
    results = [queue.get(timeout=120) for _worker in workers]
    for worker in workers:
        worker.join(timeout=30)

    samples = [s for r in results for s in r["samples"]]
    # Relative times for the chart and the windows.
    rel = [(s[0] - t0, s[1], s[2], s[3], s[4]) for s in samples]
    verification = _verify(conn, results)
    revision = alembic_ops.current(conn)
    during = _window_stats(rel, migration_start - t0, migration_end - t0)
    whole = _window_stats(rel, 0.0, float("inf"))
    per_revision = [b | _window_stats(rel, b["start"], b["end"]) for b in boundaries]
    errors: dict[str, int] = {}
    for s in samples:
        if not s[3]:
            errors[s[4]] = errors.get(s[4], 0) + 1
    return {
        "variant": name,
        "script_location": str(VARIANTS[name].relative_to(PROJECT_DIR)),
        "chain_completed": revision == ("006",) and failure is None,
        "revision_after": revision[0] if revision else None,
        "failure": failure,
        "failures": failures,
        "migration_s": round(migration_end - migration_start, 3),
        "revisions": per_revision,
        "during_migration": during,
        "whole_run": whole,
        "reads": len([s for s in samples if s[2] == "read"]),
        "errors": errors,
        "lost_writes": verification["lost"],
        "unowned_writes": verification["unowned"],
        "verification": verification,
        "backfill": [e for e in events if e.get("event") == "backfill" and e.get("done")],
        "lock_retries": [e for e in events if e.get("event") == "lock_retry"],
        "samples": [(round(s[0], 4), round(s[1], 5), s[2], s[3]) for s in rel if s[2] != "read"],
    }


def _verify(conn: ConnInfo, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Every acknowledged insert exists and is VIBOTAJ's; every shipment holds its last acknowledged update."""
    connection = connect(conn)
    out: dict[str, Any] = {
        "acked_inserts": 0,
        "missing": {},
        "unowned_by_table": {},
        "updates_checked": 0,
        "updates_lost": 0,
    }
    try:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = 'shipments' "
                "AND column_name = 'organization_id'"
            )
            has_org = cur.fetchone()[0] == 1
            for table in ("shipments", "documents", "container_events", "audit_logs", "notifications"):
                ids = [i for r in results for i in r["acked"][table]]
                out["acked_inserts"] += len(ids)
                query = sql.SQL("SELECT count(*), count(*) FILTER (WHERE {owned}) FROM {t} WHERE id = ANY(%s::uuid[])")
                owned = sql.SQL("organization_id = %s::uuid") if has_org else sql.SQL("false")
                params = (VIBOTAJ, ids) if has_org else (ids,)
                cur.execute(query.format(owned=owned, t=sql.Identifier(table)), params)
                found, owned_n = cur.fetchone()
                out["missing"][table] = len(ids) - found
                out["unowned_by_table"][table] = found - owned_n
            updated = {k: v for r in results for k, v in r["updated"].items()}
            if updated:
                cur.execute("SELECT id::text, vessel_name FROM shipments WHERE id = ANY(%s::uuid[])", (list(updated),))
                final = dict(cur.fetchall())
                out["updates_checked"] = len(updated)
                out["updates_lost"] = sum(1 for k, v in updated.items() if final.get(k) != v)
            cur.execute(
                " UNION ALL ".join(f"SELECT count(*) FROM {t} WHERE organization_id IS NULL" for t in TENANT_TABLES)
                if has_org
                else "SELECT 0"
            )
            out["null_organization_rows"] = sum(r[0] for r in cur.fetchall()) if has_org else "n/a (no column)"
    finally:
        connection.close()
    out["lost"] = sum(out["missing"].values()) + out["updates_lost"]
    out["unowned"] = sum(out["unowned_by_table"].values())
    return out


# --- report ------------------------------------------------------------------------------------------------


def _verdict(result: dict[str, Any]) -> dict[str, bool]:
    return {
        "chain completes": result["chain_completed"],
        "0 failed writes": result["whole_run"]["failed"] == 0,
        "0 lost writes": result["lost_writes"] == 0,
        f"max write latency <= {TARGET_MAX_LATENCY} s": result["whole_run"]["max_s"] <= TARGET_MAX_LATENCY,
    }


def table(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The side-by-side comparison as text."""
    names = [r["variant"] for r in results]
    rows: list[tuple[str, ...]] = []

    def row(label: str, fn: Any) -> None:
        rows.append((label, *[str(fn(r)) for r in results]))

    row(
        "chain 002 -> 006",
        lambda r: (
            ("completed" if r["chain_completed"] else f"FAILED at {r['revisions'][-1]['revision']}")
            + (f" ({len(r['failures'])} failed run(s))" if r["failures"] else "")
        ),
    )
    row("migration time (s)", lambda r: f"{r['migration_s']:.1f}")
    for rev in ("003", "004", "005", "006"):
        row(
            f"  revision {rev} (s)",
            lambda r, rev=rev: (
                ", ".join(
                    f"{b['duration_s']:.1f}{'' if b['status'] == 'ok' else ' FAILED'}"
                    for b in r["revisions"]
                    if b["revision"] == rev
                )
                or "not run"
            ),
        )
    row("writes (whole run)", lambda r: r["whole_run"]["writes"])
    row("writes during migration", lambda r: r["during_migration"]["writes"])
    row("failed writes", lambda r: r["whole_run"]["failed"])
    row("lost writes", lambda r: r["lost_writes"])
    row("acked inserts not VIBOTAJ's", lambda r: r["unowned_writes"])
    row("rows with NULL organization_id", lambda r: r["verification"].get("null_organization_rows", "?"))
    row("write latency p50 (s)", lambda r: f"{r['during_migration']['p50_s']:.4f}")
    row("write latency p99 (s)", lambda r: f"{r['during_migration']['p99_s']:.4f}")
    row("write latency max (s)", lambda r: f"{r['whole_run']['max_s']:.3f}")
    for target in _verdict(results[0]):
        row(f"target: {target}", lambda r, t=target: "met" if _verdict(r)[t] else "MISSED")
    widths = [max(len(x[i]) for x in [*rows, ("", *names)]) for i in range(len(names) + 1)]
    lines = [
        f"Zero-downtime benchmark: {meta['rows']:,} rows (scale {meta['scale']}), {meta['writers']} v1.2 writers, "
        f"PostgreSQL {meta['server_version']}",
        "  ".join(h.ljust(w) for h, w in zip(("", *names), widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    for r in results:
        for number, failure in enumerate(r["failures"], 1):
            lines.append(f"{r['variant']} run {number}: {failure}")
        if r["errors"]:
            top = sorted(r["errors"].items(), key=lambda kv: -kv[1])[:3]
            lines.append(f"{r['variant']} write errors: " + "; ".join(f"{n} x {e}" for e, n in top))
    return "\n".join(lines)


def chart(results: list[dict[str, Any]], meta: dict[str, Any], path: Path) -> None:
    """Write latency over time, one panel per variant, revision boundaries as shaded spans."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(11, 3.4 * len(results)), sharey=True, squeeze=False)
    colours = {"003": "#e8f0fe", "004": "#fef7e0", "005": "#fce8e6", "006": "#e6f4ea"}
    for ax, result in zip(axes[:, 0], results, strict=True):
        ok = [(t, lat) for t, lat, _operation, good in result["samples"] if good]
        bad = [(t, lat) for t, lat, _operation, good in result["samples"] if not good]
        for b in result["revisions"]:
            ax.axvspan(b["start"], b["end"], color=colours.get(b["revision"], "#eeeeee"), alpha=0.9, lw=0)
            ax.axvline(b["end"], color="#9aa0a6", lw=0.6)
            label = b["revision"] + ("" if b["status"] == "ok" else " failed")
            ax.text(
                (b["start"] + b["end"]) / 2,
                0.97,
                label,
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="top",
                fontsize=8,
                color="#202124",
            )
        if ok:
            ax.scatter(*zip(*ok, strict=True), s=3, color="#1a73e8", label="write", rasterized=True)
        if bad:
            ax.scatter(*zip(*bad, strict=True), s=10, color="#d93025", marker="x", label="failed write")
        ax.axhline(TARGET_MAX_LATENCY, color="#d93025", lw=0.8, ls="--", label=f"target {TARGET_MAX_LATENCY} s")
        ax.set_yscale("log")
        ax.set_ylim(1e-4, max(60.0, result["whole_run"]["max_s"] * 1.5))
        status = "chain completed" if result["chain_completed"] else "chain FAILED"
        ax.set_title(
            f"{result['variant']}: {status}, migration {result['migration_s']:.0f} s, max write "
            f"{result['whole_run']['max_s']:.2f} s, {result['whole_run']['failed']} failed, "
            f"{result['lost_writes']} lost",
            fontsize=10,
        )
        ax.set_ylabel("write latency (s)")
        ax.legend(loc="upper right", fontsize=7, markerscale=2)
    axes[-1, 0].set_xlabel("seconds since the writers started")
    fig.suptitle(f"v1.2 writes during 002 -> 006 at {meta['rows']:,} rows ({meta['writers']} writers)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --- main -------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=1796, help="tools.seed scale (1796 = about 2.5 M rows)")
    parser.add_argument("--writers", type=int, default=4, help="concurrent v1.2 writer processes")
    parser.add_argument("--think", type=float, default=0.02, help="mean pause (s) between a writer's statements")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of writes before migrating")
    parser.add_argument("--cooldown", type=float, default=3.0, help="seconds of writes after migrating")
    parser.add_argument("--variants", default="project,baseline", help="comma-separated: project, baseline")
    parser.add_argument("--attempts", type=int, default=3, help="runs of a failing migration (an operator re-runs)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="directory for result.json and latency.png")
    parser.add_argument("--smoke", action="store_true", help="tiny scale, short run: proves the bench works")
    parser.add_argument("--no-docs-chart", action="store_true", help="do not copy the chart to docs/")
    args = parser.parse_args(argv)
    if args.smoke:
        args.scale, args.writers, args.warmup, args.cooldown = min(args.scale, 2), 2, 0.5, 0.5
        args.no_docs_chart = True
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = set(names) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)}")

    base = Path(tempfile.mkdtemp(prefix="tracehub-bench-zd-"))
    base.chmod(0o755)
    server = LocalServer(name="zd", port=free_port(), base_dir=base)
    try:
        server.start()
        wait_until_accepting(server)
        server.ensure_application_database("zd_seed", APP_USER, APP_PASSWORD)
        seed_conn = ConnInfo(
            host="127.0.0.1",
            port=server.port,
            user=APP_USER,
            password=APP_PASSWORD,
            dbname="zd_seed",
            sslmode="disable",
        )
        started = time.monotonic()
        counts = seed(seed_conn, args.scale)
        _admin_execute(server, "VACUUM ANALYZE", "zd_seed")
        print(
            f"seeded {sum(counts.values()):,} rows at scale {args.scale} in {time.monotonic() - started:.0f} s",
            flush=True,
        )
        connection = server.admin_connect()
        with connection.cursor() as cur:
            cur.execute("SHOW server_version")
            version = cur.fetchone()[0]
        connection.close()
        meta = {
            "scale": args.scale,
            "rows": sum(counts.values()),
            "counts": counts,
            "writers": args.writers,
            "think_s": args.think,
            "server_version": version,
            "cpus": os.cpu_count(),
            "settings": alembic_ops.OnlineSettings().as_dict(),
            "planned_counts": planned_counts(args.scale),
        }
        results = []
        for name in names:
            print(f"running {name} ...", flush=True)
            results.append(run_variant(server, name, "zd_seed", args))
            _admin_execute(
                server, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(f"zd_{name}"))
            )
    except Exception:
        traceback.print_exc()
        return 2
    finally:
        server.remove()
        shutil.rmtree(base, ignore_errors=True)

    text = table(results, meta)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "result.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str))
    (args.out / "table.txt").write_text(text + "\n")
    png = args.out / "latency.png"
    chart(results, meta, png)
    print(f"wrote {args.out / 'result.json'}, {args.out / 'table.txt'} and {png}")
    if not args.no_docs_chart and png.stat().st_size < 200_000:
        DOCS_CHART.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, DOCS_CHART)
        print(f"copied the chart to {DOCS_CHART.relative_to(PROJECT_DIR)}")
    project = next((r for r in results if r["variant"] == "project"), None)
    return 0 if project is None or all(_verdict(project).values()) else 1


if __name__ == "__main__":
    sys.exit(main())
