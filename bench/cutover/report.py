"""Figures and chart of a cutover benchmark run: totals, per-second series, the switch moments."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile, None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return round(ordered[rank - 1], 2)


def _ok(sample: dict[str, Any]) -> bool:
    status = sample.get("status")
    return status is not None and 200 <= status < 300


def build_report(
    samples: list[dict[str, Any]],
    switches: list[dict[str, Any]],
    steps: list[dict[str, Any]],
    phases: list[dict[str, Any]],
    rate: float,
) -> dict[str, Any]:
    """Totals, per-second series and failures of one run."""
    samples = sorted(samples, key=lambda s: s["t"])
    latencies = [s["latency_ms"] for s in samples if _ok(s)]
    failed = [s for s in samples if not _ok(s)]
    duration = (samples[-1]["t"] - samples[0]["t"]) if len(samples) > 1 else 0.0
    per_second: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for sample in samples:
        per_second[int(sample["t"])].append(sample)
    series = []
    for second in range(int(duration) + 1 if samples else 0):
        bucket = per_second.get(second, [])
        ok_lat = [s["latency_ms"] for s in bucket if _ok(s)]
        series.append(
            {
                "second": second,
                "requests": len(bucket),
                "failed": sum(1 for s in bucket if not _ok(s)),
                "p50_ms": percentile(ok_lat, 50),
                "p95_ms": percentile(ok_lat, 95),
                "p99_ms": percentile(ok_lat, 99),
                "max_ms": max(ok_lat) if ok_lat else None,
                "colours": dict(Counter(s.get("colour") or "none" for s in bucket)),
            }
        )
    by_kind = {
        kind: {"requests": len(group), "failed": sum(1 for s in group if not _ok(s))}
        for kind, group in _group(samples, "kind").items()
    }
    return {
        "summary": {
            "requests": len(samples),
            "failed": len(failed),
            "target_rate": rate,
            "duration_s": round(duration, 2),
            "throughput_rps": round(len(samples) / duration, 1) if duration else None,
            "latency_ms": {
                "p50": percentile(latencies, 50),
                "p95": percentile(latencies, 95),
                "p99": percentile(latencies, 99),
                "max": max(latencies) if latencies else None,
            },
            "by_kind": by_kind,
            "client_late_ms": {
                "p50": percentile([s.get("late_ms", 0.0) for s in samples], 50),
                "p99": percentile([s.get("late_ms", 0.0) for s in samples], 99),
                "max": max((s.get("late_ms", 0.0) for s in samples), default=None),
            },
            "colours": dict(Counter(s.get("colour") or "none" for s in samples)),
            "switches": len(switches),
        },
        "switches": switches,
        "steps": steps,
        "phases": phases,
        "failures": failed[:50],
        "series": series,
    }


def _group(samples: list[dict[str, Any]], key: str) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sample in samples:
        groups[sample[key]].append(sample)
    return groups


def print_table(report: dict[str, Any]) -> None:
    """The run's figures as a plain table."""
    s = report["summary"]
    lat = s["latency_ms"]
    rows = [
        ("requests sent", f"{s['requests']:,}"),
        ("failed (non-2xx or connection error)", f"{s['failed']:,}"),
        (
            "dropped (all users busy, not sent)",
            f"{s.get('dropped', 0):,} of {s.get('scheduled', s['requests']):,} scheduled",
        ),
        ("target rate", f"{s['target_rate']:g} req/s"),
        ("measured throughput", f"{s['throughput_rps']} req/s over {s['duration_s']} s"),
        ("latency p50 / p95 / p99 / max", f"{lat['p50']} / {lat['p95']} / {lat['p99']} / {lat['max']} ms"),
        (
            "client start lateness p50 / p99 / max",
            f"{s['client_late_ms']['p50']} / {s['client_late_ms']['p99']} / {s['client_late_ms']['max']} ms",
        ),
        ("answered by colour", ", ".join(f"{k} {v:,}" for k, v in sorted(s["colours"].items()))),
        ("switches", ", ".join(f"{w['from']} -> {w['to']} at {w['t']:.1f} s" for w in report["switches"]) or "none"),
    ]
    rows += [(f"  {kind}", f"{v['requests']:,} sent, {v['failed']} failed") for kind, v in sorted(s["by_kind"].items())]
    rows += [
        (f"step {step['name']}", f"{step['t_start']:.1f} s -> {step['t_end']:.1f} s, rc {step['rc']}")
        for step in report["steps"]
    ]
    width = max(len(label) for label, _value in rows)
    print("\nBlue-green cutover benchmark")
    print("-" * (width + 40))
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    print("-" * (width + 40))
    for failure in report["failures"][:10]:
        print(f"  failed at {failure['t']:.2f} s: {failure['kind']} {failure['error']}")


def write_chart(report: dict[str, Any], path: Path) -> Path | None:
    """PNG: latency percentiles and failed requests per second, switch moments and phases marked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -r requirements-bench.txt): no chart.")
        return None
    series = report["series"]
    seconds = [p["second"] for p in series]
    fig, (ax_lat, ax_req) = plt.subplots(2, 1, figsize=(11, 6), sharex=True, height_ratios=[3, 2])
    for key, label in (("p50_ms", "p50"), ("p95_ms", "p95"), ("max_ms", "max")):
        ax_lat.plot(seconds, [p[key] if p[key] is not None else float("nan") for p in series], label=label, lw=1)
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("latency (ms, log)")
    for phase in report["phases"]:
        if phase["phase"] == "migrate" and phase["t_end"] is not None:
            ax_lat.axvspan(phase["t_start"], phase["t_end"], color="orange", alpha=0.12, label="migrate 002→006")
    ax_req.bar(seconds, [p["requests"] - p["failed"] for p in series], width=1.0, color="tab:green", label="ok")
    ax_req.bar(seconds, [p["failed"] for p in series], width=1.0, color="tab:red", label="failed")
    ax_req.set_ylabel("requests / s")
    ax_req.set_xlabel("seconds since the load started")
    for ax in (ax_lat, ax_req):
        for switch in report["switches"]:
            ax.axvline(switch["t"], color="black", ls="--", lw=1)
    for switch in report["switches"]:
        ax_lat.annotate(
            f"{switch['from']}→{switch['to']}",
            (switch["t"], 1),
            xycoords=("data", "axes fraction"),
            xytext=(3, -12),
            textcoords="offset points",
            fontsize=9,
        )
    s = report["summary"]
    ax_lat.set_title(
        f"Blue-green cutover through nginx: {s['requests']:,} requests at {s['target_rate']:g}/s, {s['failed']} failed"
    )
    handles, labels = ax_lat.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=False))
    ax_lat.legend(unique.values(), unique.keys(), loc="upper left", fontsize=8)
    ax_req.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
