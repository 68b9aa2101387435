"""bench.backup_restore --smoke still runs end to end (own server, seconds) and writes its JSON."""

from __future__ import annotations

import json
import statistics

import pytest

from bench.backup_restore import __main__ as bench
from bench.backup_restore.__main__ import main


def test_bench_backup_restore_smoke_writes_ratios_for_both_formats(tmp_path):
    assert main(["--smoke", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "smoke.json").read_text())
    assert data["storage"].startswith(("memory", "disk"))
    assert [(r["format"], r["jobs"]) for r in data["results"]] == [("custom", 1), ("directory", 2)]
    for result in data["results"]:
        assert set(result["ratios"]) == set(result["ratios_of_medians"]) == {"dump", "restore", "verification"}
        # Both orders of each raw/collection pair; two restore pairs in each of the two rounds.
        restores = {"raw_restore", "restore", "restore_outside_pg_restore"}
        assert {key: len(runs) for key, runs in result["runs"].items()} == {
            key: 4 if key in restores else 2 for key in result["runs"]
        }
        raw_restores = result["runs"]["raw_restore"]
        assert result["runs"]["raw_restore_of_round"] == [statistics.median(raw_restores[i : i + 2]) for i in (0, 2)]
        assert 0 < result["restore_added_fraction"] < 1
        assert result["same_work_ratio"] > 0
        for key, (low, high) in result["ratio_intervals"].items():
            assert low <= result["ratios"][key] <= high, key
        assert 0 < result["seconds"]["restore_outside_pg_restore"] < result["seconds"]["restore"]
        assert all(value > 0 for value in result["seconds"].values())


def test_storage_is_memory_only_when_it_holds_the_run_with_headroom(monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "MEMORY_ROOT", tmp_path)
    free = bench.shutil.disk_usage(tmp_path).free
    monkeypatch.setattr(bench, "available_memory", lambda: free)
    fits = (free - bench.HEADROOM) // bench.FOOTPRINT_PER_SCALE
    assert bench.choose_storage("auto", fits // 2) == (
        tmp_path,
        f"memory ({tmp_path}, {(fits // 2 * bench.FOOTPRINT_PER_SCALE + bench.HEADROOM) / 1024**3:.1f} GB needed)",
    )
    root, why = bench.choose_storage("auto", fits + 1)
    assert root is None
    assert why.startswith("disk (") and "needed" in why
    assert bench.choose_storage("disk", 1) == (None, "disk (asked for)")
    with pytest.raises(SystemExit, match="Lower --scale or use --storage disk"):
        bench.choose_storage("memory", fits + 1)


def test_storage_falls_back_to_disk_when_memory_is_short(monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "MEMORY_ROOT", tmp_path)
    monkeypatch.setattr(bench, "available_memory", lambda: bench.HEADROOM)
    root, why = bench.choose_storage("auto", 2)
    assert root is None
    assert "available" in why
