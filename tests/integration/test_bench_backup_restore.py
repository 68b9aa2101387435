"""bench.backup_restore --smoke still runs end to end (own server, seconds) and writes its JSON."""

from __future__ import annotations

import json

from bench.backup_restore.__main__ import main


def test_bench_backup_restore_smoke_writes_ratios_for_both_formats(tmp_path):
    assert main(["--smoke", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "smoke.json").read_text())
    assert [(r["format"], r["jobs"]) for r in data["results"]] == [("custom", 1), ("directory", 2)]
    for result in data["results"]:
        assert set(result["ratios"]) == set(result["ratios_of_medians"]) == {"dump", "restore", "verification"}
        assert all(len(runs) == 2 for runs in result["runs"].values())  # both orders of each raw/collection pair
        assert 0 < result["seconds"]["restore_outside_pg_restore"] < result["seconds"]["restore"]
        assert all(value > 0 for value in result["seconds"].values())
