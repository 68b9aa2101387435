"""Backup/restore benchmark: the collection's pg_backup and pg_restore against raw pg_dump/pg_restore.

    .venv/bin/python -m bench.backup_restore            # scale 1796 (about 2.5 M rows), 5 rounds per format, each
                                                        # with 5 restore pairs
    .venv/bin/python -m bench.backup_restore --smoke    # a few thousand rows, seconds: proves it still runs

Starts its own PostgreSQL (tools.localpg, free port; data directory and archives in memory, /dev/shm, when it
holds the run, see ``--storage``) and seeds revision 002 once. Then, in
one run and per format (custom with 1 job, directory with ``--jobs`` jobs), interleaving raw and collection runs
so that drift hits both alike (each pair in turn: raw first in even rounds, collection first in odd ones; a
``CHECKPOINT`` and a ``sync`` before every timed run, so no run pays for writing out what the one before it
dirtied; the seeded source vacuumed once and autovacuum off, so that it lands in no timed run):

- dump: raw ``pg_dump`` vs ``backup.create(verify="none")`` (snapshot, counts, dump, sha256, manifest);
- verification: the verification stage of ``backup.create(verify="restore")`` (``pg_restore --list``, test restore
  into a scratch database, exact row counts, scratch dropped), timed inside that run, vs a raw ``pg_restore`` (the
  median of the round's);
- restore: raw ``createdb`` + ``pg_restore`` vs ``restore.restore`` without the safety backup (checks, restore
  into a fresh database, exact counts, swap), both of the verified backup's archive. The column "added" is the
  part of the collection's restore outside its own ``pg_restore`` run: the work it adds, apart from the
  run-to-run spread of ``pg_restore`` itself. A restore's spread is the widest of the three, so each round times
  ``--restore-pairs`` restore pairs.

Each figure is the median of its runs, each ratio the median of the pairs' own ratios (the ratio of the medians
is in the JSON too), given with a bootstrap 95 % interval. Beside the restore ratio: the same work (the
collection's own ``pg_restore`` run against raw, whose distance from 1 is this run's spread) and what the
collection adds, as a fraction of a raw restore. Prints a table of seconds and ratios; writes JSON under
.local/bench/backup_restore/. Targets (issue 4): dump <= 1.05x raw, restore <= 1.05x raw, verification <= 1.2x a
raw restore, directory format with 2 jobs faster than custom (dump + restore).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[2]
for entry in (PROJECT_DIR / ".collections", PROJECT_DIR):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

from psycopg2 import sql  # noqa: E402

from ansible_collections.tracehub.deploy.plugins.module_utils import backup, restore  # noqa: E402
from ansible_collections.tracehub.deploy.plugins.module_utils.pg import ConnInfo, connect, pgpass_file  # noqa: E402
from ansible_collections.tracehub.deploy.plugins.module_utils.runner import subprocess_runner  # noqa: E402
from tools.localpg import LocalServer, find_bindir, free_port, wait_until_accepting  # noqa: E402
from tools.seed import seed  # noqa: E402

OUT_DIR = PROJECT_DIR / ".local" / "bench" / "backup_restore"
APP_USER = "tracehub_bench"
APP_PASSWORD = "b3nch%b@ck:up"
TARGETS = {"dump": 1.05, "restore": 1.05, "verification": 1.2}
MEMORY_ROOT = Path("/dev/shm")  # noqa: S108 - only ever a parent for tempfile.mkdtemp
# The run's peak footprint per tools.seed scale unit: the seeded source, one restored copy, WAL up to the local
# server's max_wal_size and the archives (about 7 GB at scale 1796). HEADROOM stays free for everything else.
FOOTPRINT_PER_SCALE = 4 * 1024**2
HEADROOM = 4 * 1024**3


def available_memory() -> int:
    """MemAvailable of /proc/meminfo, in bytes (0 where there is none)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def choose_storage(choice: str, scale: int) -> tuple[Path | None, str]:
    """Where the server's data directory and the archives live: (root for tempfile, None for its default; why).

    In memory (tmpfs), no timed run shares the VM's disk with the host's other tenants. A restore writes about
    3 GB of data files and WAL, more than the kernel lets sit dirty before it starts writing back; on disk,
    single raw restores spread more than twice as wide as on tmpfs (CV 6.8 % against 3.0 %, ten each, taken in
    turn in one run, same median). The server runs with fsync off either way: what is compared is the work of
    the tools, not the disk's.
    """
    if choice == "disk":
        return None, "disk (asked for)"
    needed = scale * FOOTPRINT_PER_SCALE + HEADROOM
    try:
        room = shutil.disk_usage(MEMORY_ROOT).free
    except OSError:
        room = 0
    memory = available_memory()
    if room >= needed and memory >= needed:
        return MEMORY_ROOT, f"memory ({MEMORY_ROOT}, {needed / 1024**3:.1f} GB needed)"
    why = (
        f"{MEMORY_ROOT} has {room / 1024**3:.1f} GB free and the machine {memory / 1024**3:.1f} GB available, "
        f"{needed / 1024**3:.1f} GB needed"
    )
    if choice == "memory":
        raise SystemExit(f"--storage memory: {why}. Lower --scale or use --storage disk.")
    return None, f"disk ({why})"


def timed(action: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    started = time.perf_counter()
    action(*args, **kwargs)
    return time.perf_counter() - started


def run_raw(argv: list[str], conn: ConnInfo) -> None:
    with pgpass_file(conn) as passfile:
        env = {**conn.libpq_env(passfile), "LC_ALL": "C"}
        completed = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0 or "error:" in completed.stderr:
        raise RuntimeError(f"{argv[0]} failed: {completed.stderr.strip()[-500:]}")


SUPERUSER: ConnInfo | None = None


def admin(conn: ConnInfo, statement: sql.Composable, database: str = "postgres") -> None:
    # As the superuser: DROP ... WITH (FORCE) must also end autovacuum on a freshly restored database.
    connection = connect((SUPERUSER or conn).with_db(database))
    connection.autocommit = True
    try:
        with connection.cursor() as cur:
            cur.execute(statement)
    finally:
        connection.close()


def drop(conn: ConnInfo, name: str) -> None:
    admin(conn, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def settle(conn: ConnInfo) -> None:
    """Vacuum the seeded source once, then turn autovacuum off for the run.

    Autovacuum wakes on the source and on each freshly restored database at moments of its own choosing; on
    2 cores a pass over 2.5 M rows slows whichever run it lands in and not that run's pair. Neither the raw
    tools nor the collection count on it.
    """
    admin(conn, sql.SQL("VACUUM (ANALYZE)"), database=conn.dbname)
    admin(conn, sql.SQL("ALTER SYSTEM SET autovacuum = off"))
    admin(conn, sql.SQL("SELECT pg_reload_conf()"))


def checkpoint(conn: ConnInfo) -> None:
    # Before every timed run: the previous run's dirty buffers are written now, not by the checkpointer in the
    # middle of whichever run comes next; and, the server running with fsync off, the kernel writes them (and
    # the dumps) to disk now, not by its writeback 30 s later, in the middle of the next run.
    admin(conn, sql.SQL("CHECKPOINT"))
    os.sync()


def in_turn(conn: ConnInfo, round_: int, raw: Callable[[], Any], collection: Callable[[], Any]) -> tuple[Any, Any]:
    """Run a raw/collection pair, the raw one first in even rounds and second in odd ones, each after a checkpoint:
    neither side always runs on the cache (or the background work) the other left behind. Returns both results."""
    order = (raw, collection) if round_ % 2 == 0 else (collection, raw)
    results = {}
    for action in order:
        checkpoint(conn)
        results[action] = action()
    return results[raw], results[collection]


def raw_restore(conn: ConnInfo, pg_restore_argv: list[str], dbname: str) -> float:
    """Seconds of ``CREATE DATABASE`` + ``pg_restore`` into a new ``dbname`` (dropped before and after)."""
    drop(conn, dbname)
    started = time.perf_counter()
    admin(
        conn,
        sql.SQL("CREATE DATABASE {} TEMPLATE template0 OWNER {}").format(
            sql.Identifier(dbname), sql.Identifier(conn.user)
        ),
    )
    run_raw([*pg_restore_argv, f"--dbname={dbname}"], conn)
    elapsed = time.perf_counter() - started
    drop(conn, dbname)
    return elapsed


def collection_restore(conn: ConnInfo, request: restore.RestoreRequest) -> tuple[float, float]:
    """(seconds of the collection's restore, seconds of it outside its own pg_restore run); target dropped after."""
    started = time.perf_counter()
    result = restore.restore(request, run=subprocess_runner)
    elapsed = time.perf_counter() - started
    drop(conn, request.conn.dbname)
    # What the collection adds to pg_restore: checks, scratch database, counts, revision, swap.
    return elapsed, elapsed - result.restore["timings"]["restore_s"]


def measure_format(
    conn: ConnInfo, work: Path, fmt: str, jobs: int, repeat: int, restore_pairs: int, bindir: Path
) -> dict[str, Any]:
    """Median seconds of raw and collection dump, verification and restore for one format/job count.

    Each of the ``repeat`` rounds times one dump pair, one verified dump and ``restore_pairs`` restore pairs: a
    restore's run-to-run spread is the widest here, and a restore pair is the cheapest to repeat.
    """
    pg_dump, pg_restore = str(bindir / "pg_dump"), str(bindir / "pg_restore")
    parallel = [f"--jobs={jobs}"] if jobs > 1 else []
    keys = (
        "raw_dump",
        "dump",
        "dump_verified",
        "verification",
        "raw_restore",
        "raw_restore_of_round",
        "restore",
        "restore_outside_pg_restore",
    )
    times: dict[str, list[float]] = {k: [] for k in keys}
    raw_path = work / f"raw.{fmt}"
    dump_argv = [
        pg_dump,
        f"--format={fmt}",
        f"--file={raw_path}",
        *(parallel if fmt == "directory" else []),
        "--no-password",
        f"--dbname={conn.dbname}",
    ]
    for round_ in range(repeat):
        # Raw dump and the collection's dump alone (verify none), in turn; then the collection's with verification.
        shutil.rmtree(raw_path, ignore_errors=True)
        raw_path.unlink(missing_ok=True)
        dest = work / f"backups-{fmt}-{round_}"
        dump_request = backup.BackupRequest(
            conn=conn,
            dest=dest,
            environment="bench",
            name="dump-only",
            verify="none",
            pg_bin_dir=bindir,
            format=fmt,
            jobs=jobs,
        )
        raw_seconds, seconds = in_turn(
            conn,
            round_,
            functools.partial(timed, run_raw, dump_argv, conn),
            functools.partial(timed, backup.create, dump_request, run=subprocess_runner),
        )
        times["raw_dump"].append(raw_seconds)
        times["dump"].append(seconds)
        verified_request = dataclasses.replace(dump_request, name="verified", verify="restore")
        checkpoint(conn)
        started = time.perf_counter()
        verified = backup.create(verified_request, run=subprocess_runner)
        times["dump_verified"].append(time.perf_counter() - started)
        # Measured inside the run: pg_restore --list + test restore + exact counts + scratch create/drop.
        times["verification"].append(verified.timings["verify_s"])

        # Raw createdb + pg_restore into a new database and the collection's restore (no safety backup), in turn,
        # both of the verified backup's archive: the same bytes on both sides.
        restore_argv = [
            pg_restore,
            "--no-owner",
            "--exit-on-error",
            *parallel,
            "--no-password",
            str(verified.backup["path"]),
        ]
        restore_request = restore.RestoreRequest(
            conn=conn.with_db("bench_target"),
            backup_dir=dest,
            environment="bench",
            name="verified",
            allow_foreign=True,
            safety_backup=False,
            jobs=jobs,
            keep_old=0,
            pg_bin_dir=bindir,
            force=True,
        )
        round_raw_restores = []
        for pair in range(restore_pairs):
            raw_seconds, (seconds, added) = in_turn(
                conn,
                round_ * restore_pairs + pair,
                functools.partial(raw_restore, conn, restore_argv, "bench_raw"),
                functools.partial(collection_restore, conn, restore_request),
            )
            round_raw_restores.append(raw_seconds)
            times["restore"].append(seconds)
            times["restore_outside_pg_restore"].append(added)
        times["raw_restore"] += round_raw_restores
        times["raw_restore_of_round"].append(statistics.median(round_raw_restores))
        shutil.rmtree(dest, ignore_errors=True)
        print(
            f"{fmt} round {round_ + 1}/{repeat}: dump {times['dump'][-1] / times['raw_dump'][-1]:.3f}, restore "
            + " ".join(f"{ratio:.3f}" for ratio in pair_ratios(times["restore"][-restore_pairs:], round_raw_restores)),
            flush=True,
        )
    size = backup.sha256_path(raw_path)[1]
    shutil.rmtree(raw_path, ignore_errors=True)
    raw_path.unlink(missing_ok=True)
    medians = {key: statistics.median(values) for key, values in times.items()}
    # The collection's own pg_restore run (its restore minus what it adds) does the raw run's work: how far
    # its ratio lands from 1 is how far this run's restore pairs spread.
    own_pg_restore = [
        total - added for total, added in zip(times["restore"], times["restore_outside_pg_restore"], strict=True)
    ]
    pairs = {
        "dump": ("dump", "raw_dump"),
        "restore": ("restore", "raw_restore"),
        # The verified dump runs once a round: against the median of that round's raw restores.
        "verification": ("verification", "raw_restore_of_round"),
    }
    return {
        "format": fmt,
        "jobs": jobs,
        "size_bytes": size,
        "runs": times,
        "seconds": medians,
        # The verdicts: the median of each pair's own ratio. A pair's two runs are a minute apart at most,
        # so a slow spell of the machine mostly hits both; the ratio of the medians is kept beside it.
        "ratios": {key: paired_ratio(times[mine], times[raw]) for key, (mine, raw) in pairs.items()},
        "ratio_intervals": {key: paired_interval(times[mine], times[raw]) for key, (mine, raw) in pairs.items()},
        "ratios_of_medians": {key: medians[mine] / medians[raw] for key, (mine, raw) in pairs.items()},
        "same_work_ratio": paired_ratio(own_pg_restore, times["raw_restore"]),
        # What the collection's restore adds to a raw one with pg_restore's own spread left out: its seconds
        # outside its pg_restore run, over a raw restore.
        "restore_added_fraction": medians["restore_outside_pg_restore"] / medians["raw_restore"],
    }


def pair_ratios(collection: list[float], raw: list[float]) -> list[float]:
    """collection / raw of each pair: each pair's two runs compared with each other."""
    return [mine / theirs for mine, theirs in zip(collection, raw, strict=True)]


def paired_ratio(collection: list[float], raw: list[float]) -> float:
    """Median over the pairs of collection / raw."""
    return statistics.median(pair_ratios(collection, raw))


def paired_interval(
    collection: list[float], raw: list[float], level: float = 0.95, resamples: int = 2000
) -> tuple[float, float]:
    """Bootstrap interval of ``paired_ratio``: the pairs resampled with replacement (seeded: the same runs give
    the same interval). It says how far the pairs' spread leaves the median free to move."""
    ratios = pair_ratios(collection, raw)
    draw = random.Random(0)
    medians = sorted(statistics.median(draw.choices(ratios, k=len(ratios))) for _resample in range(resamples))
    tail = (1 - level) / 2
    return medians[int(tail * resamples)], medians[min(resamples - 1, int((1 - tail) * resamples))]


def report(results: list[dict[str, Any]], rows: int, storage: str) -> tuple[str, dict[str, bool]]:
    lines = [
        f"Backup/restore benchmark, {rows:,} rows (median seconds; ratio: median of each pair's collection / raw)",
        f"Server data and archives on {storage}",
        "",
        f"{'format':<16}{'raw dump':>10}{'dump':>8}{'ratio':>7}{'verify':>9}{'ratio':>7}"
        f"{'raw rest.':>11}{'restore':>9}{'ratio':>7}{'added':>7}{'size MB':>9}",
    ]
    for r in results:
        s, q = r["seconds"], r["ratios"]
        lines.append(
            f"{r['format'] + ' -j' + str(r['jobs']):<16}{s['raw_dump']:>10.2f}{s['dump']:>8.2f}{q['dump']:>7.3f}"
            f"{s['verification']:>9.2f}{q['verification']:>7.3f}{s['raw_restore']:>11.2f}{s['restore']:>9.2f}"
            f"{q['restore']:>7.3f}{s['restore_outside_pg_restore']:>7.2f}{r['size_bytes'] / 1e6:>9.1f}"
        )
    lines.append("")
    for r in results:
        low, high = r["ratio_intervals"]["restore"]
        lines.append(
            f"{r['format'] + ' -j' + str(r['jobs']):<16}restore {r['ratios']['restore']:.3f} (95 % interval "
            f"{low:.3f}-{high:.3f} over {len(r['runs']['restore'])} pairs); the same work (its own pg_restore run "
            f"against raw) {r['same_work_ratio']:.3f}; added {100 * r['restore_added_fraction']:.1f} % of a raw restore"
        )
    verdicts = {}
    for key, limit in TARGETS.items():
        verdicts[f"{key} <= {limit}x"] = all(r["ratios"][key] <= limit for r in results)
    by_format = {r["format"]: r for r in results}
    if {"custom", "directory"} <= set(by_format):
        custom = by_format["custom"]["seconds"]
        directory = by_format["directory"]["seconds"]
        verdicts["directory -j2 faster than custom (dump + restore)"] = (
            directory["dump"] + directory["restore"] < custom["dump"] + custom["restore"]
        )
    limit = TARGETS["restore"]
    verdicts[f"restore adds <= {100 * (limit - 1):.0f} % to a raw restore (outside its own pg_restore run)"] = all(
        r["restore_added_fraction"] <= limit - 1 for r in results
    )
    lines += ["", *[f"{'PASS' if ok else 'MISS'}  {name}" for name, ok in verdicts.items()]]
    return "\n".join(lines), verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backup_restore", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1796, help="tools.seed scale (1796: about 2.5 M rows)")
    parser.add_argument("--jobs", type=int, default=2, help="jobs of the directory format")
    parser.add_argument(
        "--repeat", type=int, default=5, help="rounds per format (medians are reported; the machine is noisy)"
    )
    parser.add_argument(
        "--restore-pairs",
        type=int,
        default=5,
        help="raw/collection restore pairs per round (restores spread the most from run to run)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="scale 2, two rounds (both orders) of two restore pairs: seconds, proves it still works",
    )
    parser.add_argument(
        "--storage",
        choices=("auto", "memory", "disk"),
        default="auto",
        help=f"where the server's data and the archives live: memory ({MEMORY_ROOT}), disk (the temporary "
        "directory), auto (memory when it holds the run with room to spare)",
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="directory of the JSON result")
    args = parser.parse_args(argv)
    scale = 2 if args.smoke else args.scale
    repeat = 2 if args.smoke else args.repeat
    restore_pairs = 2 if args.smoke else args.restore_pairs
    if repeat < 1 or restore_pairs < 1:
        parser.error("--repeat and --restore-pairs take 1 or more")

    root, storage = choose_storage(args.storage, scale)
    print(f"Storage: {storage}", flush=True)
    base = Path(tempfile.mkdtemp(prefix="tracehub-bench-br-", dir=root))
    base.chmod(0o755)
    server = LocalServer(name="br", port=free_port(), base_dir=base)
    work = Path(tempfile.mkdtemp(prefix="tracehub-bench-br-work-", dir=root))
    try:
        server.start()
        wait_until_accepting(server)
        server.ensure_application_database("bench_source", APP_USER, APP_PASSWORD)
        global SUPERUSER
        SUPERUSER = ConnInfo(
            host="127.0.0.1", port=server.port, user="postgres", password=server.superuser_password(), sslmode="disable"
        )
        conn = ConnInfo(
            host="127.0.0.1",
            port=server.port,
            user=APP_USER,
            password=APP_PASSWORD,
            dbname="bench_source",
            sslmode="disable",
        )
        started = time.perf_counter()
        counts = seed(conn, scale)
        rows = sum(counts.values())
        print(f"Seeded {rows:,} rows (scale {scale}) in {time.perf_counter() - started:.0f} s", flush=True)
        settle(conn)
        bindir = find_bindir()
        results = [
            measure_format(conn, work, "custom", 1, repeat, restore_pairs, bindir),
            measure_format(conn, work, "directory", args.jobs, repeat, restore_pairs, bindir),
        ]
    finally:
        server.remove()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    table, verdicts = report(results, rows, storage)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / ("smoke.json" if args.smoke else "results.json")
    out.write_text(
        json.dumps(
            {
                "rows": rows,
                "scale": scale,
                "repeat": repeat,
                "restore_pairs": restore_pairs,
                "storage": storage,
                "results": results,
                "targets": verdicts,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
