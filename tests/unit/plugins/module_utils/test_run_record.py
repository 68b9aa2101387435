from __future__ import annotations

import json
import stat
import threading
from datetime import UTC, datetime, timedelta

import pytest

from ansible_collections.tracehub.deploy.plugins.module_utils.errors import RecordError
from ansible_collections.tracehub.deploy.plugins.module_utils.run_record import append_phase, read_record, scrub_secrets

T0 = datetime(2026, 12, 3, 18, 0, 0, tzinfo=UTC)


def clock_at(moment):
    return lambda: moment


def test_append_phase_first_call_creates_private_record_with_run_facts(tmp_path):
    records = tmp_path / "runs"
    record, entry, path = append_phase(
        records,
        "run-1",
        {"phase": "backup", "started": "2026-12-03T17:59:30Z", "changed": True},
        {"inventory": "inventories/local", "git_commit": "abc123", "user": "ops"},
        clock=clock_at(T0),
    )
    assert stat.S_IMODE(records.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    on_disk = json.loads(path.read_text())
    assert on_disk == record
    assert (
        on_disk["inventory"] == "inventories/local" and on_disk["git_commit"] == "abc123" and on_disk["user"] == "ops"
    )
    assert entry.duration_s == 30.0
    assert on_disk["phases"][0]["phase"] == "backup"


def test_append_phase_second_call_appends_and_keeps_run_facts(tmp_path):
    append_phase(tmp_path, "run-1", {"phase": "backup"}, {"inventory": "first"}, clock=clock_at(T0))
    record, _entry, _path = append_phase(
        tmp_path, "run-1", {"phase": "migrate"}, {"inventory": "second"}, clock=clock_at(T0 + timedelta(minutes=1))
    )
    assert [p["phase"] for p in record["phases"]] == ["backup", "migrate"]
    assert record["inventory"] == "first"


def test_append_phase_dry_run_writes_nothing(tmp_path):
    record, _entry, path = append_phase(tmp_path / "runs", "run-1", {"phase": "backup"}, {}, dry_run=True)
    assert record["phases"][0]["phase"] == "backup"
    assert not path.exists()
    assert not (tmp_path / "runs").exists()


def test_append_phase_concurrent_writers_lose_nothing(tmp_path):
    def write(index):
        append_phase(tmp_path, "run-1", {"phase": f"p{index}"}, {})

    threads = [threading.Thread(target=write, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    phases = {p["phase"] for p in read_record(tmp_path / "run-1.json")["phases"]}
    assert phases == {f"p{i}" for i in range(20)}


@pytest.mark.parametrize("run_id", ["../escape", "a/b", "", ".hidden", "x" * 200])
def test_append_phase_unsafe_run_id_refused(tmp_path, run_id):
    with pytest.raises(RecordError, match="not usable as a file name"):
        append_phase(tmp_path, run_id, {"phase": "backup"}, {})


def test_append_phase_bad_started_time_refused(tmp_path):
    with pytest.raises(RecordError, match="not an ISO-8601 time"):
        append_phase(tmp_path, "run-1", {"phase": "backup", "started": "yesterday"}, {})


def test_read_record_corrupt_file_names_fix(tmp_path):
    path = tmp_path / "run-1.json"
    path.write_text("{not json")
    with pytest.raises(RecordError, match="Move the file aside"):
        read_record(path)


def test_scrub_secrets_masks_nested_secret_keys():
    data = {"manifest": {"db_password": "x", "rows": 3}, "items": [{"token": "t", "name": "n"}]}
    assert scrub_secrets(data) == {
        "manifest": {"db_password": "********", "rows": 3},
        "items": [{"token": "********", "name": "n"}],
    }


def test_scrub_secrets_keeps_lookalike_keys():
    # Regression: "passed" matched the secret pattern and every run record showed "passed": "********".
    data = {"passed": 12, "passwords_rotated": 1, "tokens_seen": 3, "bypass": "x", "db_pass": "y", "api_token": "z"}
    assert scrub_secrets(data) == {
        "passed": 12,
        "passwords_rotated": 1,
        "tokens_seen": 3,
        "bypass": "x",
        "db_pass": "********",
        "api_token": "********",
    }


@pytest.mark.parametrize("records_dir", ["", "runs", "./runs"])
def test_append_phase_relative_records_dir_refused(records_dir):
    from pathlib import Path

    with pytest.raises(RecordError, match="not an absolute path"):
        append_phase(Path(records_dir), "run-1", {"phase": "validate"}, {})
