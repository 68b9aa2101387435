"""bench.backup_restore --smoke still runs end to end (own server, seconds) and writes its JSON."""

from __future__ import annotations

import json
import statistics

from bench.backup_restore.__main__ import main


def test_bench_backup_restore_smoke_writes_ratios_for_both_formats(tmp_path):
    assert main(["--smoke", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "smoke.json").read_text())
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
