# SPDX-License-Identifier: GPL-3.0-or-later
"""Alembic driven through its Python API: read the current revision, plan, migrate, render offline SQL.

Nothing here shells out to the ``alembic`` CLI or writes an ini file: the ``Config`` lives in memory,
``script_location`` is set at runtime and the database is handed to the project's ``env.py`` through
``config.attributes`` (``connection``: an open SQLAlchemy Connection for online runs, ``url``: a SQLAlchemy
``URL`` object for offline rendering; a URL never goes through ConfigParser, which mangles ``%``).

``env.py`` contract (the project's ``alembic/env.py`` and the test fixtures honour it):
``context.configure(..., transaction_per_migration=True,
on_version_apply=config.attributes.get("on_version_apply"))``.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.tracehub.deploy.plugins.module_utils.errors import DeployError, MigrationError
from ansible_collections.tracehub.deploy.plugins.module_utils.pg import (
    ConnInfo,
    explain_connection_error,
    operation_lock,
)

try:
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from alembic.script.revision import RevisionError
    from alembic.util.exc import CommandError

    from alembic import command

    HAS_ALEMBIC = True
except ImportError:  # pragma: no cover - reported by the modules through missing_required_lib
    HAS_ALEMBIC = False

try:
    from sqlalchemy import create_engine
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.pool import NullPool

    HAS_SQLALCHEMY = True
except ImportError:  # pragma: no cover - reported by the modules through missing_required_lib
    HAS_SQLALCHEMY = False

UPGRADE = "upgrade"
DOWNGRADE = "downgrade"
NONE = "none"
BASE = "base"
CONCURRENTLY_ERROR = "cannot run inside a transaction block"
_RELATIVE = re.compile(r"^(?P<anchor>head|base|current)?(?P<delta>[+-]\d+)$")

# (revision, message, elapsed seconds of that step)
ProgressFn = Callable[[str, str, float], None]
# Events from inside a revision (alembic/online_ddl.py): backfill progress, lock retries, index rebuilds.
EventFn = Callable[[dict[str, Any]], None]
# Key of config.attributes that the project's revisions read their online settings from.
ONLINE_SETTINGS_KEY = "tracehub_online"
RERUN_HINT = "Every step of this revision checks what is already done: run the migration again to resume from here"


@dataclass(frozen=True, slots=True)
class OnlineSettings:
    """How the revisions change tables under live traffic (read by the project's alembic/online_ddl.py).

    ``lock_timeout``: longest wait (s) for a lock that blocks reads or writes; ``lock_retries``: further
    attempts after a timeout, each after ``lock_retry_delay`` (s) doubled per attempt; ``batch_size``: rows
    per backfill transaction; ``batch_pause``: pause (s) between backfill batches (throttle);
    ``progress_interval``: least seconds between two backfill progress events; ``weak_lock_timeout``: longest
    wait (s) of statements that block no reads or writes (concurrent index builds waiting for older
    transactions, VALIDATE CONSTRAINT).
    """

    lock_timeout: float = 0.2
    lock_retries: int = 10
    lock_retry_delay: float = 0.5
    batch_size: int = 2000
    batch_pause: float = 0.0
    progress_interval: float = 1.0
    weak_lock_timeout: float = 60.0

    def __post_init__(self) -> None:
        problems = []
        if not self.lock_timeout > 0:
            problems.append(f"lock_timeout must be > 0 seconds (got {self.lock_timeout})")
        if self.lock_retries < 0:
            problems.append(f"lock_retries must be >= 0 (got {self.lock_retries})")
        if self.lock_retry_delay < 0:
            problems.append(f"lock_retry_delay must be >= 0 seconds (got {self.lock_retry_delay})")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1 row (got {self.batch_size})")
        if self.batch_pause < 0:
            problems.append(f"batch_pause must be >= 0 seconds (got {self.batch_pause})")
        if problems:
            raise MigrationError("Invalid migration settings: " + "; ".join(problems) + ".")

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for results."""
        return {
            "lock_timeout": self.lock_timeout,
            "lock_retries": self.lock_retries,
            "lock_retry_delay": self.lock_retry_delay,
            "batch_size": self.batch_size,
            "batch_pause": self.batch_pause,
            "progress_interval": self.progress_interval,
            "weak_lock_timeout": self.weak_lock_timeout,
        }

    def attributes(self, on_event: EventFn | None = None) -> dict[str, Any]:
        """The ``config.attributes["tracehub_online"]`` value for the revisions."""
        return self.as_dict() | ({"on_progress": on_event} if on_event is not None else {})


@dataclass(frozen=True, slots=True)
class PlanStep:
    """One revision to apply (upgrade) or to undo (downgrade)."""

    revision: str
    message: str
    down_revision: str | None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for results."""
        return {"revision": self.revision, "message": self.message, "down_revision": self.down_revision}


@dataclass(frozen=True, slots=True)
class Plan:
    """What it takes to go from ``current`` to ``target`` (``None`` means base, the empty schema)."""

    current: str | None
    target: str | None
    direction: str
    steps: tuple[PlanStep, ...] = ()

    def previous_of(self, index: int) -> str | None:
        """The revision the database is at before step ``index`` runs."""
        if index == 0:
            return self.current
        step = self.steps[index - 1]
        return step.revision if self.direction == UPGRADE else step.down_revision

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for results."""
        return {
            "current": self.current,
            "target": self.target,
            "direction": self.direction,
            "steps": [s.as_dict() for s in self.steps],
        }


@dataclass(frozen=True, slots=True)
class AppliedStep:
    """A revision that ran, with how long it took."""

    revision: str
    message: str
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for results."""
        return {"revision": self.revision, "message": self.message, "duration_s": round(self.duration_s, 3)}


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """The outcome of ``migrate``; ``sql`` holds offline SQL per pending revision in dry-run only."""

    database: str
    from_revision: str | None
    to_revision: str | None
    direction: str
    pending: tuple[PlanStep, ...]
    applied: tuple[AppliedStep, ...]
    changed: bool
    dry_run: bool
    sql: tuple[dict[str, str], ...] = ()
    backfill: tuple[dict[str, Any], ...] = ()
    lock_retries: tuple[dict[str, Any], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for results."""
        return {
            "database": self.database,
            "from_revision": self.from_revision,
            "to_revision": self.to_revision,
            "direction": self.direction,
            "pending": [s.as_dict() for s in self.pending],
            "applied": [s.as_dict() for s in self.applied],
            "changed": self.changed,
            "dry_run": self.dry_run,
            "sql": [dict(s) for s in self.sql],
            "backfill": [dict(b) for b in self.backfill],
            "lock_retries": [dict(r) for r in self.lock_retries],
        }


@dataclass(frozen=True, slots=True)
class ContractResult:
    """The outcome of ``contract``: the temporary expand-phase objects removed (or that would be)."""

    database: str
    revision: str | None
    steps: tuple[dict[str, Any], ...]
    changed: bool
    dry_run: bool

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for results."""
        return {
            "database": self.database,
            "revision": self.revision,
            "steps": [dict(s) for s in self.steps],
            "changed": self.changed,
            "dry_run": self.dry_run,
        }


@dataclass(frozen=True, slots=True)
class MigrationInfo:
    """Read-only state: where the database is, where the scripts end, what is pending."""

    database: str
    current: tuple[str, ...]
    heads: tuple[str, ...]
    pending: tuple[PlanStep, ...]
    is_at_head: bool
    script_location: str

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for results."""
        return {
            "database": self.database,
            "current": list(self.current),
            "heads": list(self.heads),
            "pending": [s.as_dict() for s in self.pending],
            "is_at_head": self.is_at_head,
            "script_location": self.script_location,
        }


@dataclass(slots=True)
class _Collector:
    """Receives Alembic's ``on_version_apply`` callbacks and times each step."""

    direction: str
    on_progress: ProgressFn | None = None
    clock: Callable[[], float] = time.monotonic
    on_event: EventFn | None = None
    applied: list[AppliedStep] = field(default_factory=list)
    backfill: list[dict[str, Any]] = field(default_factory=list)
    lock_retries: list[dict[str, Any]] = field(default_factory=list)
    _last: float = 0.0

    def event(self, event: dict[str, Any]) -> None:
        """An event from inside a revision: keep the summaries, forward everything."""
        if event.get("event") == "backfill" and event.get("done"):
            self.backfill.append(
                {k: event.get(k) for k in ("revision", "table", "rows_done", "rows_total", "rate_rows_s", "elapsed_s")}
            )
        elif event.get("event") == "lock_retry":
            self.lock_retries.append(
                {k: event.get(k) for k in ("revision", "step", "table", "attempt", "retry_in_s", "blocking")}
            )
        if self.on_event is not None:
            self.on_event(event)

    def start(self) -> None:
        self._last = self.clock()

    def __call__(self, *, ctx: Any, step: Any, heads: Any, run_args: Any) -> None:
        now = self.clock()
        elapsed, self._last = now - self._last, now
        # Alembic's step info names the upper revision in both directions: the one applied or undone.
        revision = next(iter(step.up_revision_ids), "")
        script = step.up_revisions[0] if step.up_revisions else None
        message = doc_line(getattr(script, "doc", "") or "")
        self.applied.append(AppliedStep(revision, message, elapsed))
        if self.on_progress is not None:
            self.on_progress(revision, message, elapsed)


# --- pure helpers --------------------------------------------------------------------------------


def doc_line(doc: str) -> str:
    """The first line of a revision's docstring: its message."""
    for line in (doc or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def rev_label(revision: str | None) -> str:
    """A revision for humans: ``None`` is ``base``."""
    return revision if revision else BASE


def load_scripts(script_location: str) -> Any:
    """The ``ScriptDirectory`` at ``script_location``, or a ``MigrationError`` saying what is missing."""
    location = os.path.abspath(os.path.expanduser(script_location))
    if not os.path.isdir(location):
        raise MigrationError(
            f"Reading the Alembic scripts failed: {location} is not a directory. "
            "Point script_location at the directory that holds env.py and versions/.",
            script_location=location,
        )
    if not os.path.isfile(os.path.join(location, "env.py")):
        raise MigrationError(
            f"Reading the Alembic scripts failed: {location} has no env.py. "
            "Point script_location at the directory that holds env.py and versions/.",
            script_location=location,
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            script = ScriptDirectory.from_config(make_config(location))
            script.get_heads()  # the revision map loads lazily: load it now, while errors are explained here
        except Exception as exc:
            # A revision file can fail in any way on import; Alembic's warning names a dangling down_revision.
            cause = str(caught[-1].message) if caught else first_line(exc)
            raise MigrationError(
                f"Reading the Alembic scripts in {location} failed: {cause}. Fix that revision file.",
                script_location=location,
            ) from exc
    return script


def make_config(
    script_location: str,
    *,
    url: Any = None,
    connection: Any = None,
    on_version_apply: Callable[..., None] | None = None,
    output_buffer: io.StringIO | None = None,
    online: dict[str, Any] | None = None,
) -> Any:
    """An in-memory Alembic ``Config``: no ini file, no URL in any option, everything in ``attributes``."""
    cfg = Config(stdout=io.StringIO(), output_buffer=output_buffer)
    # ConfigParser interpolates '%': a path holding one must be escaped.
    cfg.set_main_option("script_location", script_location.replace("%", "%%"))
    if online is not None:
        cfg.attributes[ONLINE_SETTINGS_KEY] = online
    if url is not None:
        cfg.attributes["url"] = url
    if connection is not None:
        cfg.attributes["connection"] = connection
    if on_version_apply is not None:
        cfg.attributes["on_version_apply"] = on_version_apply
    return cfg


def first_line(exc: BaseException) -> str:
    """The first meaningful line of an error, preferring the DB driver's own message."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def _script_heads(script: Any) -> tuple[str, ...]:
    return tuple(sorted(script.get_heads()))


def _script_dir(script: Any) -> str:
    return str(script.dir)


def _get(script: Any, revision: str) -> Any:
    """The Script for ``revision`` (full id or unique prefix), or ``None`` if unknown."""
    try:
        found = script.get_revision(revision)
    except (CommandError, RevisionError):
        return None
    return found


def _down_of(rev: Any) -> str | None:
    down = rev.down_revision
    if isinstance(down, (tuple, list)):
        return down[0] if len(down) == 1 else ",".join(down)
    return down


def _ancestors(script: Any, revision: str | None) -> list[str]:
    """``revision`` and every revision below it, nearest first (linear walk along first parents too)."""
    out: list[str] = []
    seen: set[str] = set()
    todo = [revision] if revision else []
    while todo:
        rev_id = todo.pop(0)
        if rev_id in seen:
            continue
        seen.add(rev_id)
        out.append(rev_id)
        rev = script.get_revision(rev_id)
        down = rev.down_revision
        if down is None:
            continue
        todo.extend(down if isinstance(down, (tuple, list)) else [down])
    return out


def check_current_known(script: Any, current: tuple[str, ...], database: str) -> None:
    """Refuse a database stamped with revisions that the scripts don't know."""
    for rev in current:
        if _get(script, rev) is None:
            raise MigrationError(
                f"Database {database} is at Alembic revision {rev!r}, which the scripts in {_script_dir(script)} "
                f"do not know (their heads: {', '.join(_script_heads(script)) or 'none'}). Either script_location "
                "points at the wrong directory, or a newer application version migrated this database: deploy "
                "the matching scripts before migrating.",
                revision=rev,
                script_location=_script_dir(script),
            )


def resolve_target(script: Any, current: str | None, target: str) -> str | None:
    """The concrete revision id ``target`` names (``None`` for base), relative to ``current`` where needed."""
    heads = _script_heads(script)
    target = (target or "head").strip()
    if target in ("head", "heads"):
        if len(heads) > 1:
            raise MigrationError(
                f"The scripts in {_script_dir(script)} have several heads ({', '.join(heads)}), so 'head' is "
                'ambiguous. Merge them with `alembic merge -m "merge heads" '
                f"{' '.join(heads)}` and commit the merge revision, or name one revision as the target.",
                heads=list(heads),
            )
        return heads[0] if heads else None
    if target == BASE:
        return None
    match = _RELATIVE.match(target)
    if match:
        delta = int(match.group("delta"))
        anchor = match.group("anchor")
        start = {"head": heads[0] if len(heads) == 1 else None, "base": None}.get(anchor or "current", current)
        if anchor == "head" and len(heads) != 1:
            raise MigrationError(f"Target {target!r} needs exactly one head; the scripts have {', '.join(heads)}.")
        return _step_from(script, start, delta, target)
    found = _get(script, target)
    if found is None:
        raise MigrationError(
            f"Target revision {target!r} is not among the scripts in {_script_dir(script)} "
            f"(heads: {', '.join(heads) or 'none'}; known revisions: {', '.join(known_revisions(script))}). "
            "Use head, base, a relative step like -1, or one of the known revisions.",
            revision=target,
            heads=list(heads),
        )
    return found.revision


def _step_from(script: Any, start: str | None, delta: int, target: str) -> str | None:
    rev = start
    for _step in range(abs(delta)):
        if delta < 0:
            if rev is None:
                raise MigrationError(f"Target {target!r} goes below base: the database has no revision to undo.")
            rev = _down_of(script.get_revision(rev))
            if rev is not None and "," in rev:
                raise MigrationError(f"Target {target!r} crosses the merge revision {rev}: name the target revision.")
        else:
            nexts = sorted(script.get_revision(rev).nextrev) if rev else sorted(script.get_bases())
            if not nexts:
                raise MigrationError(
                    f"Target {target!r} goes past the head {rev_label(rev)}: nothing newer exists in "
                    f"{_script_dir(script)}."
                )
            if len(nexts) > 1:
                raise MigrationError(f"Target {target!r} is ambiguous after {rev_label(rev)}: {', '.join(nexts)}.")
            rev = nexts[0]
    return rev


def known_revisions(script: Any) -> list[str]:
    """Every revision id of the scripts, oldest first."""
    return [s.revision for s in reversed(list(script.walk_revisions()))]


def plan_from(script: Any, current: tuple[str, ...], target: str, database: str = "the database") -> Plan:
    """The ordered steps from the database's ``current`` heads to ``target``; pure (no database)."""
    check_current_known(script, current, database)
    if len(current) > 1:
        raise MigrationError(
            f"Database {database} has several Alembic heads ({', '.join(current)}); this collection migrates "
            "linear histories only. Merge the branches with `alembic merge` first.",
            current=list(current),
        )
    cur = script.get_revision(current[0]).revision if current else None
    tgt = resolve_target(script, cur, target)
    if tgt == cur:
        return Plan(cur, tgt, NONE)
    below_cur = _ancestors(script, cur)
    if tgt is None or tgt in below_cur:
        # Downgrade: undo everything above tgt, nearest first.
        undo = below_cur[: below_cur.index(tgt)] if tgt is not None else below_cur
        steps = tuple(_step(script, rev) for rev in undo)
        return Plan(cur, tgt, DOWNGRADE, steps)
    below_tgt = _ancestors(script, tgt)
    if cur is not None and cur not in below_tgt:
        raise MigrationError(
            f"Target {tgt} is on another branch than the database's revision {cur}: neither is an ancestor of "
            "the other. Merge the branches with `alembic merge` or migrate to a common revision first.",
            revision=tgt,
        )
    todo = below_tgt[: below_tgt.index(cur)] if cur is not None else below_tgt
    return Plan(cur, tgt, UPGRADE, tuple(_step(script, rev) for rev in reversed(todo)))


def _step(script: Any, revision: str) -> PlanStep:
    rev = script.get_revision(revision)
    return PlanStep(rev.revision, doc_line(rev.doc), _down_of(rev))


def downgrade_refusal(plan: Plan, database: str) -> MigrationError:
    """The error for a downgrade that ``allow_downgrade`` did not permit, naming what would be undone."""
    undone = ", ".join(f"{s.revision} ({s.message})" if s.message else s.revision for s in plan.steps)
    return MigrationError(
        f"Refusing to downgrade {database} from {rev_label(plan.current)} to {rev_label(plan.target)}: it would "
        f"undo {len(plan.steps)} revision(s): {undone}. Nothing was changed. Set allow_downgrade: true to "
        f"downgrade on purpose (playbooks: ansible-playbook playbooks/rollback.yml -e rollback_level=1 "
        f"-e rollback_target_revision={rev_label(plan.target)}).",
        revision=rev_label(plan.target),
        would_undo=[s.revision for s in plan.steps],
    )


def step_failure_message(
    database: str,
    plan: Plan,
    index: int,
    cause: str,
    left_at: tuple[str, ...],
    script_location: str,
    rerunnable: bool = False,
) -> str:
    """The message for a revision that failed: which one, the DB's first error line, where the DB was left."""
    step = plan.steps[index]
    verb = "Upgrading" if plan.direction == UPGRADE else "Downgrading"
    what = f"{step.revision} ({step.message})" if step.message else step.revision
    expected = plan.previous_of(index)
    actual = ", ".join(left_at) if left_at else BASE
    if tuple(x for x in [expected] if x) == left_at:
        where = f"The database was left at the previous revision {actual}"
    else:
        where = f"The database is now at revision {actual} (expected {rev_label(expected)})"
    verb_rev = "upgrade" if plan.direction == UPGRADE else "downgrade"
    msg = f"{verb} {database}: revision {what} failed: {cause.rstrip('.')}. {where}"
    if index:
        done = ", ".join(s.revision for s in plan.steps[:index])
        msg += f"; the revisions before it ({done}) stay applied"
    msg += "."
    if rerunnable and RERUN_HINT not in cause:
        msg += (
            f" Nothing of revision {step.revision} is half-applied: its finished steps stay (each is skipped when "
            "done) and the failed one was rolled back; run the migration again to resume."
        )
    if CONCURRENTLY_ERROR in cause and "CONCURRENTLY" in cause.upper():
        msg += (
            f" Revision {step.revision} creates or drops an index CONCURRENTLY inside the migration's transaction: "
            f"wrap those operations of its {verb_rev}() in `with op.get_context().autocommit_block():` "
            f"(in {script_location})."
        )
    return msg


def failed_index(plan_: Plan, left_at: tuple[str, ...], applied: int) -> int:
    """Which step failed: the one after the revision the database was left at (else after the applied ones)."""
    for index in range(len(plan_.steps)):
        if tuple(x for x in [plan_.previous_of(index)] if x) == left_at:
            return index
    return min(applied, len(plan_.steps) - 1)


def describe_move(database: str, plan: Plan, dry_run: bool) -> str:
    """The one-sentence summary: ``Upgraded tracehub from 002 to 006 (4 revisions).``"""
    if plan.direction == NONE:
        return f"{database} is already at revision {rev_label(plan.current)}; nothing to do."
    verb = {UPGRADE: ("Upgraded", "Would upgrade"), DOWNGRADE: ("Downgraded", "Would downgrade")}[plan.direction]
    n = len(plan.steps)
    noun = "revision" if n == 1 else "revisions"
    moved = f"from {rev_label(plan.current)} to {rev_label(plan.target)}"
    return f"{verb[1] if dry_run else verb[0]} {database} {moved} ({n} {noun})."


def describe_state(state: MigrationInfo) -> str:
    """The one-sentence summary of ``info``: ``tracehub is at 002; 4 revisions pending up to 006.``"""
    where = f"{state.database} is at {', '.join(state.current) or BASE}"
    heads = ", ".join(state.heads) or BASE
    if state.is_at_head:
        return f"{where}, the head of the scripts; nothing pending."
    if len(state.heads) > 1:
        return f"{where}; the scripts have several heads ({heads}): merge them before migrating."
    n = len(state.pending)
    if n == 0:
        return f"{where}, which is not below the scripts' head {heads}; nothing to upgrade."
    return f"{where}; {n} revision{'s' if n != 1 else ''} pending up to {heads}."


# --- database side -------------------------------------------------------------------------------


@contextlib.contextmanager
def _engine_connection(conn: ConnInfo) -> Iterator[Any]:
    """A fresh SQLAlchemy connection (NullPool, no transaction begun); friendly connection errors."""
    engine = create_engine(conn.sqlalchemy_url(), poolclass=NullPool)
    try:
        try:
            connection = engine.connect()
        except sa_exc.OperationalError as exc:
            raise explain_connection_error(conn, exc.orig if exc.orig is not None else exc) from exc
        try:
            yield connection
        finally:
            with contextlib.suppress(Exception):
                connection.close()
    finally:
        engine.dispose()


def _read_heads(connection: Any) -> tuple[str, ...]:
    """The database's current Alembic heads; a pure read (no version table is created)."""
    context = MigrationContext.configure(connection)
    heads = tuple(sorted(context.get_current_heads()))
    if connection.in_transaction():
        connection.rollback()
    return heads


def current(conn: ConnInfo, script_location: str | None = None) -> tuple[str, ...]:
    """Current Alembic heads of the database (empty at base); checked against the scripts when given."""
    with _quiet(), _engine_connection(conn) as connection:
        heads = _read_heads(connection)
    if script_location is not None:
        check_current_known(load_scripts(script_location), heads, conn.dbname)
    return heads


def plan(conn: ConnInfo, script_location: str, target: str = "head") -> Plan:
    """Direction and ordered pending revisions from the database's current revision to ``target``."""
    script = load_scripts(script_location)
    return plan_from(script, current(conn), target, conn.dbname)


def info(conn: ConnInfo, script_location: str) -> MigrationInfo:
    """Current revision(s), heads of the scripts and what upgrading to head would apply."""
    script = load_scripts(script_location)
    heads = _script_heads(script)
    cur = current(conn)
    check_current_known(script, cur, conn.dbname)
    pending: tuple[PlanStep, ...] = ()
    if len(heads) == 1 and len(cur) <= 1:
        upgrade = plan_from(script, cur, "head", conn.dbname)
        pending = upgrade.steps if upgrade.direction == UPGRADE else ()
    return MigrationInfo(
        database=conn.dbname,
        current=cur,
        heads=heads,
        pending=pending,
        is_at_head=set(cur) == set(heads),
        script_location=_script_dir(script),
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep anything a revision or env.py prints off stdout (a module's stdout is its JSON result)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def render_offline_sql(
    conn: ConnInfo, script_location: str, plan_: Plan, settings: OnlineSettings | None = None
) -> tuple[dict[str, str], ...]:
    """The SQL of each planned step, rendered by Alembic in offline mode; never touches the database."""
    rendered: list[dict[str, str]] = []
    online = (settings or OnlineSettings()).attributes()
    for index, step in enumerate(plan_.steps):
        buffer = io.StringIO()
        cfg = make_config(script_location, url=conn.sqlalchemy_url(), output_buffer=buffer, online=online)
        before = plan_.previous_of(index)
        try:
            with _quiet():
                if plan_.direction == UPGRADE:
                    command.upgrade(cfg, f"{before}:{step.revision}" if before else step.revision, sql=True)
                else:
                    command.downgrade(cfg, f"{step.revision}:{rev_label(step.down_revision)}", sql=True)
            text = buffer.getvalue().strip()
        except Exception as exc:
            text = f"-- revision {step.revision} cannot be rendered offline: {first_line(exc)}"
        rendered.append({"revision": step.revision, "message": step.message, "sql": text})
    return tuple(rendered)


def migrate(
    conn: ConnInfo,
    script_location: str,
    target: str = "head",
    allow_downgrade: bool = False,
    dry_run: bool = False,
    on_progress: ProgressFn | None = None,
    clock: Callable[[], float] = time.monotonic,
    settings: OnlineSettings | None = None,
    lock_wait: float = 0.0,
    on_event: EventFn | None = None,
) -> MigrationResult:
    """Bring the database to ``target`` (head, a revision id, base, or relative like -1).

    Dry-run reads the current revision only and renders each pending revision's SQL offline. A real run
    holds the per-database operation lock (waiting up to ``lock_wait`` seconds for another run to finish,
    then failing naming it); each revision commits on its own (``transaction_per_migration``), so a failing
    revision leaves the database at the previous one, which is re-read and reported. ``settings`` reach the
    revisions through ``config.attributes["tracehub_online"]``; ``on_event`` receives their events
    (backfill progress with rows, rate and ETA; lock retries naming the blocking session).
    """
    settings = settings or OnlineSettings()
    script = load_scripts(script_location)
    location = _script_dir(script)
    plan_ = plan_from(script, current(conn), target, conn.dbname)
    if plan_.direction == DOWNGRADE and not allow_downgrade:
        raise downgrade_refusal(plan_, conn.dbname)
    if dry_run or plan_.direction == NONE:
        return MigrationResult(
            database=conn.dbname,
            from_revision=plan_.current,
            to_revision=plan_.target,
            direction=plan_.direction,
            pending=plan_.steps,
            applied=(),
            changed=plan_.direction != NONE,
            dry_run=dry_run,
            sql=render_offline_sql(conn, location, plan_, settings) if dry_run else (),
        )
    with operation_lock(conn, "migrate", wait_seconds=lock_wait):
        # Re-plan under the lock: another run may have moved the database since the first read.
        plan_ = plan_from(script, current(conn), target, conn.dbname)
        if plan_.direction == DOWNGRADE and not allow_downgrade:
            raise downgrade_refusal(plan_, conn.dbname)
        if plan_.direction == NONE:
            return MigrationResult(conn.dbname, plan_.current, plan_.target, NONE, (), (), False, False)
        collector = _run(conn, location, plan_, on_progress, clock, settings, on_event)
    after = current(conn)
    return MigrationResult(
        database=conn.dbname,
        from_revision=plan_.current,
        to_revision=after[0] if len(after) == 1 else (",".join(after) or None),
        direction=plan_.direction,
        pending=plan_.steps,
        applied=tuple(collector.applied),
        changed=True,
        dry_run=False,
        backfill=tuple(collector.backfill),
        lock_retries=tuple(collector.lock_retries),
    )


def _run(
    conn: ConnInfo,
    location: str,
    plan_: Plan,
    on_progress: ProgressFn | None,
    clock: Callable[[], float],
    settings: OnlineSettings | None = None,
    on_event: EventFn | None = None,
) -> _Collector:
    collector = _Collector(plan_.direction, on_progress, clock, on_event)
    started = clock()
    online = (settings or OnlineSettings()).attributes(collector.event)
    try:
        with _quiet(), _engine_connection(conn) as connection:
            cfg = make_config(
                location,
                url=conn.sqlalchemy_url(),
                connection=connection,
                on_version_apply=collector,
                online=online,
            )
            collector.start()
            if plan_.direction == UPGRADE:
                command.upgrade(cfg, rev_label(plan_.target))
            else:
                command.downgrade(cfg, rev_label(plan_.target))
            if connection.in_transaction():
                connection.commit()
    except DeployError:
        raise
    except Exception as exc:
        try:
            left_at = current(conn)
        except DeployError as reread:
            left_at = ("unknown: " + reread.msg,)
        index = failed_index(plan_, left_at, len(collector.applied))
        cause = first_line(exc)
        rerunnable = bool(getattr(exc, "rerunnable", False))
        extra = {k: v for k, v in (getattr(exc, "details", None) or {}).items() if k in ("table", "step", "blocking")}
        raise MigrationError(
            step_failure_message(conn.dbname, plan_, index, cause, left_at, location, rerunnable),
            revision=plan_.steps[index].revision,
            failed_revision=plan_.steps[index].revision,
            left_at=list(left_at),
            applied=[a.as_dict() for a in collector.applied],
            cause=cause,
            rerunnable=rerunnable,
            backfill=list(collector.backfill),
            # Revisions before the failing one were committed, and online revisions commit per step: the
            # database did change.
            changed=bool(collector.applied) or rerunnable,
            **extra,
        ) from exc
    if not collector.applied and plan_.steps:
        # env.py did not forward on_version_apply: report the plan with the whole run's time spread evenly.
        each = (clock() - started) / len(plan_.steps)
        collector.applied = [AppliedStep(s.revision, s.message, each) for s in plan_.steps]
    return collector


def contract(
    conn: ConnInfo,
    script_location: str,
    dry_run: bool = False,
    settings: OnlineSettings | None = None,
    lock_wait: float = 0.0,
) -> ContractResult:
    """Run the contract step of every applied revision that has one (the end of expand/contract).

    A revision may define ``contract_pending(connection) -> list[str]`` (what its temporary expand-phase
    objects still are, read only) and ``contract(connection, settings) -> list[str]`` (remove them, each in
    a short transaction under ``lock_timeout``). For TraceHub, 005's default that gives v1.2's inserts to
    VIBOTAJ: remove it only once v1.2 (blue) is retired. Idempotent; dry-run only reads.
    """
    settings = settings or OnlineSettings()
    script = load_scripts(script_location)
    cur = current(conn)
    check_current_known(script, cur, conn.dbname)
    if len(cur) > 1:
        raise MigrationError(f"Database {conn.dbname} has several Alembic heads ({', '.join(cur)}); merge them first.")
    applied = list(reversed(_ancestors(script, cur[0]))) if cur else []
    modules = [
        (rev, script.get_revision(rev).module)
        for rev in applied
        if callable(getattr(script.get_revision(rev).module, "contract", None))
    ]
    steps: list[dict[str, Any]] = []
    changed = False
    try:
        with contextlib.ExitStack() as stack:
            if not dry_run:
                stack.enter_context(operation_lock(conn, "contract", wait_seconds=lock_wait))
            for rev, module in modules:
                with _quiet(), _engine_connection(conn) as connection:
                    pending = list(module.contract_pending(connection))
                    if connection.in_transaction():
                        connection.rollback()
                    done = pending if dry_run or not pending else list(module.contract(connection, settings.as_dict()))
                what = doc_line(getattr(module, "CONTRACT", "") or "") or f"contract step of revision {rev}"
                steps.append({"revision": rev, "description": what, "pending": pending, "done": done})
                changed = changed or bool(done)
    except DeployError:
        raise
    except Exception as exc:
        raise MigrationError(
            f"The contract step on {conn.dbname} failed: {first_line(exc)}. Finished tables stay contracted; "
            "run it again to finish the others.",
            cause=first_line(exc),
            steps=steps,
            **{k: v for k, v in (getattr(exc, "details", None) or {}).items() if k in ("table", "blocking")},
        ) from exc
    return ContractResult(conn.dbname, cur[0] if cur else None, tuple(steps), changed, dry_run)


def describe_contract(result: ContractResult) -> str:
    """One sentence: what the contract step did (or would do)."""
    tables = sorted({t for s in result.steps for t in s["done"]})
    if not tables:
        return f"{result.database}: nothing to contract at revision {rev_label(result.revision)}."
    verb = "Would contract" if result.dry_run else "Contracted"
    what = "; ".join(s["description"] for s in result.steps if s["done"])
    return f"{verb} {result.database} on {len(tables)} table(s) ({', '.join(tables)}): {what}"
