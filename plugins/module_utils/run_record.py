# SPDX-License-Identifier: GPL-3.0-or-later
"""One JSON record per run: who ran what, where, when, and what each phase did.

A record is ``<records_dir>/<run_id>.json``. Every phase appends one entry; the write is a
read-modify-write under an exclusive ``flock`` on a sidecar lock file, then an atomic rename, so
concurrent phases (serial batches, several environments) never lose each other's entries and a
reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import re
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ansible_collections.tracehub.deploy.plugins.module_utils.errors import RecordError

RECORD_FORMAT_VERSION = 1
_RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Whole words of a key only: "db_password" and "api_token" are secrets, "passed" and "tokens_seen" are not.
_SECRET_KEY_PATTERN = re.compile(
    r"(^|[_\-.])(password|passwd|passphrase|pass|secret|token|pgpass|dsn|credentials?)($|[_\-.])", re.IGNORECASE
)


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class PhaseEntry:
    """What one phase did, as appended to the record."""

    phase: str
    status: str
    environment: str | None
    database: str | None
    host: str | None
    started: str | None
    finished: str
    duration_s: float | None
    changed: bool
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "phase": self.phase,
            "status": self.status,
            "environment": self.environment,
            "database": self.database,
            "host": self.host,
            "started": self.started,
            "finished": self.finished,
            "duration_s": self.duration_s,
            "changed": self.changed,
            "data": self.data,
        }


def scrub_secrets(value: Any) -> Any:
    """A copy of ``value`` where any key that looks like a secret holds a placeholder, at any depth."""
    if isinstance(value, dict):
        return {
            key: ("********" if _SECRET_KEY_PATTERN.search(str(key)) else scrub_secrets(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [scrub_secrets(item) for item in value]
    return value


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise RecordError(f"Recording the phase failed: started={text!r} is not an ISO-8601 time.") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def record_path(records_dir: Path, run_id: str) -> Path:
    """Where the record of ``run_id`` lives; refuses ids that could escape the directory."""
    if not _RUN_ID_PATTERN.match(run_id):
        raise RecordError(
            f"Run id {run_id!r} is not usable as a file name: use letters, digits, '.', '_' or '-' (at most 128)."
        )
    return records_dir / f"{run_id}.json"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock_path = path.with_suffix(".lock")
    with open(lock_path, "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_record(path: Path) -> dict[str, Any]:
    """The record at ``path``; a clear error when it is not a record."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RecordError(f"No run record at {path}.") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise RecordError(f"Reading the run record {path} failed: {exc}. Move the file aside and run again.") from exc
    if not isinstance(data, dict) or not isinstance(data.get("phases"), list):
        raise RecordError(f"{path} is not a tracehub.deploy run record (no 'phases' list).")
    return data


def append_phase(
    records_dir: Path,
    run_id: str,
    entry_fields: dict[str, Any],
    run_facts: dict[str, Any],
    dry_run: bool = False,
    clock: Callable[[], datetime] = utc_now,
) -> tuple[dict[str, Any], PhaseEntry, Path]:
    """Append one phase to the run's record, creating the record (and directory, 0700) on first use.

    :param entry_fields: phase, status, environment, database, host, started, changed, data.
    :param run_facts: facts about the run stored once, at creation: inventory, git_commit, user, controller.
    :returns: (the record as it now is, the entry appended, the record's path). In dry-run nothing is written.
    """
    if not records_dir.is_absolute():
        raise RecordError(
            f"Recording the phase failed: the records directory {str(records_dir)!r} is not an absolute path. "
            "Set tracehub_records_dir in the inventory to an absolute directory."
        )
    path = record_path(records_dir, run_id)
    finished = clock()
    started = _parse_time(entry_fields.get("started"))
    entry = PhaseEntry(
        phase=entry_fields["phase"],
        status=entry_fields.get("status", "ok"),
        environment=entry_fields.get("environment"),
        database=entry_fields.get("database"),
        host=entry_fields.get("host"),
        started=started.isoformat().replace("+00:00", "Z") if started else None,
        finished=finished.isoformat().replace("+00:00", "Z"),
        duration_s=round((finished - started).total_seconds(), 3) if started else None,
        changed=bool(entry_fields.get("changed", False)),
        data=scrub_secrets(entry_fields.get("data") or {}),
    )
    if dry_run:
        record = read_record(path) if path.exists() else _new_record(run_id, run_facts, finished)
        record["phases"] = [*record["phases"], entry.as_dict()]
        return record, entry, path
    try:
        records_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _locked(path):
            record = read_record(path) if path.exists() else _new_record(run_id, run_facts, finished)
            record["phases"].append(entry.as_dict())
            record["updated_at"] = entry.finished
            _write_atomically(path, record)
    except OSError as exc:
        raise RecordError(f"Writing the run record {path} failed: {exc.strerror or exc}.") from exc
    return record, entry, path


def _new_record(run_id: str, run_facts: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "format_version": RECORD_FORMAT_VERSION,
        "run_id": run_id,
        "created_at": now.isoformat().replace("+00:00", "Z"),
        "updated_at": now.isoformat().replace("+00:00", "Z"),
        "inventory": run_facts.get("inventory"),
        "git_commit": run_facts.get("git_commit"),
        "user": run_facts.get("user") or _current_user(),
        "controller": run_facts.get("controller") or socket.gethostname(),
        "phases": [],
    }


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _write_atomically(path: Path, record: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2, sort_keys=False, default=str)
            handle.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
