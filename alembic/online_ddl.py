"""Lock-safe ("online") schema changes for TraceHub's revisions: what lets v1.2 keep writing during 003-006.

Every revision that touches an existing table does it through :class:`Online`:

- **short strong locks**: each statement that needs a lock blocking reads or writes runs in its own short
  transaction (one table per transaction) with ``SET LOCAL lock_timeout``. A lock that cannot be had in time is
  retried with exponential backoff a bounded number of times; then the step fails naming the blocking session,
  with nothing of that transaction applied;
- **concurrent indexes**: ``CREATE INDEX CONCURRENTLY`` outside any transaction; an INVALID index left by an
  earlier failed build is detected, dropped and rebuilt;
- **constraints without long locks**: ``NOT VALID`` then ``VALIDATE`` (which only blocks other DDL);
- **batched backfills**: commits between batches (row locks are held for one batch only), resumable after an
  interruption (only rows still matching the predicate are touched), throttled by an optional pause between
  batches, reporting rows done, rate and ETA;
- **re-runnable**: every step checks the catalog first and skips what is already done, so a failed revision
  is simply run again (the Alembic version only moves once the whole revision is done).

Offline (``alembic upgrade --sql``), the same steps render as a psql-runnable script: the autocommit parts
are outside ``BEGIN``/``COMMIT`` and a backfill renders as a ``DO`` loop that commits per batch.

Settings come from ``config.attributes["tracehub_online"]`` (a dict the collection's ``alembic_ops`` fills
from the module options), else the defaults below:
``lock_timeout`` (s), ``lock_retries``, ``lock_retry_delay`` (s, doubled per attempt, capped),
``batch_size`` (rows), ``batch_pause`` (s), ``weak_lock_timeout`` (s, for statements that do not block
reads or writes: concurrent index builds, VALIDATE), ``on_progress`` (callable receiving event dicts),
``progress_interval`` (s).

This file is loaded by path from the revisions (``_online()`` in each), never imported as ``alembic.*``.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import sqlalchemy as sa

SETTINGS_KEY = "tracehub_online"
DEFAULTS: dict[str, Any] = {
    "lock_timeout": 0.2,
    "lock_retries": 10,
    "lock_retry_delay": 0.5,
    "lock_retry_max_delay": 15.0,
    "weak_lock_timeout": 60.0,
    "batch_size": 2000,
    "batch_pause": 0.0,
    "progress_interval": 1.0,
}
LOCK_NOT_AVAILABLE = "55P03"
MAX_PAGES_PER_BATCH = 4096
RERUN_HINT = "Every step of this revision checks what is already done: run the migration again to resume from here"


class OnlineMigrationError(RuntimeError):
    """A step of an online revision failed; what it did was rolled back and the revision can be run again."""

    rerunnable = True

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class LockNotAcquiredError(OnlineMigrationError):
    """A lock could not be had within lock_timeout after every retry."""


def _ms(seconds: float) -> str:
    return f"{max(1, round(float(seconds) * 1000))}ms"


def _pgcode(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    return getattr(orig if orig is not None else exc, "pgcode", None)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def settings_from(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """The effective settings: the defaults overridden by ``attributes[SETTINGS_KEY]``."""
    given = dict((attributes or {}).get(SETTINGS_KEY) or {})
    return DEFAULTS | {k: v for k, v in given.items() if v is not None}


class Online:
    """Lock-safe DDL and batched DML for one revision (or the contract step), online or rendered offline."""

    def __init__(
        self,
        revision: str,
        *,
        bind: Callable[[], Any] | None,
        emit: Callable[[str], None] | None,
        settings: Mapping[str, Any] | None = None,
        autocommit: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.revision = revision
        self._bind = bind
        self._emit = emit
        self.settings = DEFAULTS | dict(settings or {})
        self._autocommit = autocommit
        self._sleep = sleep
        self._clock = clock
        self._last_progress = 0.0
        self.report: list[dict[str, Any]] = []

    # --- construction ---------------------------------------------------------------------------------

    @classmethod
    def from_op(cls, op: Any, revision: str) -> Online:
        """The helper for a revision run by Alembic (online or ``--sql``)."""
        ctx = op.get_context()
        config = ctx.config
        settings = settings_from(config.attributes if config is not None else None)
        if ctx.as_sql:
            return cls(revision, bind=None, emit=lambda text: op.execute(sa.text(text)), settings=settings)
        return cls(revision, bind=op.get_bind, emit=None, settings=settings, autocommit=ctx.autocommit_block)

    @classmethod
    def for_connection(cls, connection: Any, revision: str, settings: Mapping[str, Any] | None = None) -> Online:
        """The helper on a plain SQLAlchemy connection (the contract step, outside any Alembic run)."""
        auto = connection.execution_options(isolation_level="AUTOCOMMIT")
        return cls(revision, bind=lambda: auto, emit=None, settings=DEFAULTS | dict(settings or {}))

    @property
    def offline(self) -> bool:
        """True when rendering SQL instead of running it."""
        return self._bind is None

    # --- low level ------------------------------------------------------------------------------------

    def execute(self, statement: str, **params: Any) -> Any:
        """Run (or render) one statement; ``:name`` parameters are bound online, rendered as literals offline."""
        clause = sa.text(statement)
        if self.offline:
            assert self._emit is not None
            if params:
                clause = clause.bindparams(**params)
                compiled = clause.compile(dialect=_pg_dialect(), compile_kwargs={"literal_binds": True})
                self._emit(str(compiled))
            else:
                self._emit(statement)
            return None
        return self._bind().execute(clause, params)

    def scalar(self, statement: str, **params: Any) -> Any:
        """A single value, online only."""
        return self._bind().execute(sa.text(statement), params).scalar()

    def _raw(self, statement: str) -> None:
        if self.offline:
            self._emit(statement)
        else:
            self._bind().exec_driver_sql(statement)

    @contextlib.contextmanager
    def outside_transaction(self) -> Iterator[Online]:
        """Leave Alembic's transaction for the body: each unit then commits on its own."""
        manager = self._autocommit() if self._autocommit is not None else contextlib.nullcontext()
        if self.offline:
            # Alembic renders COMMIT/BEGIN around an autocommit block; keep the psql script equivalent.
            manager = _offline_autocommit(self._emit)
        with manager:
            self._raw(f"SET lock_timeout = '{_ms(self.settings['weak_lock_timeout'])}'")
            try:
                yield self
            finally:
                if self.offline:
                    self._raw("RESET lock_timeout")
                else:
                    with contextlib.suppress(Exception):
                        self._raw("RESET lock_timeout")

    # --- progress -------------------------------------------------------------------------------------

    def progress(self, event: dict[str, Any], force: bool = False) -> None:
        """Forward a progress event to ``on_progress`` (rate-limited unless ``force``)."""
        callback = self.settings.get("on_progress")
        if callback is None:
            return
        now = self._clock()
        if not force and now - self._last_progress < float(self.settings["progress_interval"]):
            return
        self._last_progress = now
        callback({"revision": self.revision} | event)

    # --- transactions with lock_timeout and retries -----------------------------------------------------

    def unit(
        self,
        what: str,
        table: str | None,
        body: Callable[[], Any],
        *,
        weak: bool = False,
    ) -> Any:
        """Run ``body`` in one short transaction under ``lock_timeout``, retried with backoff on lock timeouts.

        ``weak``: the statements only conflict with DDL (VALIDATE, ...), so the longer ``weak_lock_timeout``.
        """
        timeout = self.settings["weak_lock_timeout"] if weak else self.settings["lock_timeout"]
        if self.offline:
            self._raw("BEGIN")
            self._raw(f"SET LOCAL lock_timeout = '{_ms(timeout)}'")
            body()
            self._raw("COMMIT")
            return None
        retries = int(self.settings["lock_retries"])
        delay = float(self.settings["lock_retry_delay"])
        attempt = 0
        while True:
            attempt += 1
            self._raw("BEGIN")
            try:
                self._raw(f"SET LOCAL lock_timeout = '{_ms(timeout)}'")
                result = body()
                self._raw("COMMIT")
                return result
            except Exception as exc:
                with contextlib.suppress(Exception):
                    self._raw("ROLLBACK")
                if _pgcode(exc) != LOCK_NOT_AVAILABLE:
                    raise OnlineMigrationError(
                        f"Revision {self.revision}: {what}{_on(table)} failed: {_first_line(exc)}. "
                        f"That transaction was rolled back. {RERUN_HINT}.",
                        table=table,
                        step=what,
                    ) from exc
                blockers = self.blockers(table)
                if attempt > retries:
                    raise LockNotAcquiredError(
                        f"Revision {self.revision}: {what}{_on(table)} could not get its lock within "
                        f"{_ms(timeout)} in {attempt} attempts; blocked by {describe_blockers(blockers)}. "
                        f"Nothing of that step was applied. End or wait for the blocking session, then run the "
                        f"migration again: {RERUN_HINT[0].lower() + RERUN_HINT[1:]}.",
                        table=table,
                        step=what,
                        attempts=attempt,
                        blocking=blockers,
                    ) from exc
                wait = min(delay * (2 ** (attempt - 1)), float(self.settings["lock_retry_max_delay"]))
                wait *= 0.75 + random.random() / 2  # jitter: retries of parallel runs do not line up
                self.progress(
                    {
                        "event": "lock_retry",
                        "step": what,
                        "table": table,
                        "attempt": attempt,
                        "retry_in_s": round(wait, 3),
                        "blocking": blockers,
                    },
                    force=True,
                )
                self._sleep(wait)

    def blockers(self, table: str | None) -> list[dict[str, Any]]:
        """Sessions holding locks on ``table`` (else the oldest open transactions): who to blame."""
        query = (
            "SELECT a.pid, coalesce(nullif(a.application_name, ''), a.backend_type) AS application_name, "
            "a.usename AS user, a.state, extract(epoch FROM now() - a.xact_start)::int AS xact_age_s, "
            "left(regexp_replace(a.query, '[[:space:]]+', ' ', 'g'), 120) AS query, "
            "string_agg(DISTINCT l.mode, ',') AS modes "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.granted AND l.pid <> pg_backend_pid() AND l.relation = to_regclass(:table) "
            "GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY xact_age_s DESC NULLS LAST LIMIT 3"
        )
        fallback = (
            "SELECT a.pid, coalesce(nullif(a.application_name, ''), a.backend_type) AS application_name, "
            "a.usename AS user, a.state, extract(epoch FROM now() - a.xact_start)::int AS xact_age_s, "
            "left(regexp_replace(a.query, '[[:space:]]+', ' ', 'g'), 120) AS query, '' AS modes "
            "FROM pg_stat_activity a WHERE a.xact_start IS NOT NULL AND a.pid <> pg_backend_pid() "
            "AND a.datname = current_database() ORDER BY a.xact_start LIMIT 3"
        )
        try:
            rows = self._bind().execute(sa.text(query), {"table": table}).mappings().all() if table else []
            if not rows:
                rows = self._bind().execute(sa.text(fallback)).mappings().all()
        except Exception:  # naming the blocker must never hide the lock timeout itself
            return []
        return [dict(r) for r in rows]

    # --- catalog probes (online) -----------------------------------------------------------------------

    def constraint(self, table: str, name: str) -> str | None:
        """``None`` when absent, else ``"valid"`` or ``"not valid"``."""
        if self.offline:
            return None
        valid = self.scalar(
            "SELECT convalidated FROM pg_constraint WHERE conrelid = to_regclass(:t) AND conname = :n", t=table, n=name
        )
        return None if valid is None else ("valid" if valid else "not valid")

    def index(self, name: str) -> str | None:
        """``None`` when absent, else ``"valid"`` or ``"invalid"`` (a failed concurrent build)."""
        if self.offline:
            return None
        valid = self.scalar(
            "SELECT i.indisvalid AND i.indisready FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = :n AND c.relnamespace = current_schema()::regnamespace",
            n=name,
        )
        return None if valid is None else ("valid" if valid else "invalid")

    def column(self, table: str, column: str) -> dict[str, Any] | None:
        """``{"not_null": bool, "default": str | None}`` of a column, or ``None`` when it does not exist."""
        if self.offline:
            return None
        row = (
            self._bind()
            .execute(
                sa.text(
                    "SELECT a.attnotnull, pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
                    "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                    "WHERE a.attrelid = to_regclass(:t) AND a.attname = :c AND NOT a.attisdropped"
                ),
                {"t": table, "c": column},
            )
            .first()
        )
        return None if row is None else {"not_null": bool(row[0]), "default": row[1]}

    # --- building blocks -------------------------------------------------------------------------------

    def create_index(self, name: str, table: str, columns: str, *, unique: bool = False) -> None:
        """``CREATE [UNIQUE] INDEX CONCURRENTLY``; an INVALID leftover of a failed build is dropped and rebuilt."""
        kind = "UNIQUE INDEX" if unique else "INDEX"
        state = self.index(name)
        if state == "valid":
            return
        if state == "invalid":
            self.progress({"event": "index_rebuild", "index": name, "table": table}, force=True)
            self._concurrently(f"drop the invalid index {name}", table, f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        self._concurrently(
            f"build index {name}",
            table,
            f"CREATE {kind} CONCURRENTLY IF NOT EXISTS {name} ON {table} ({columns})",
            builds=name,
        )

    def drop_index(self, name: str, table: str) -> None:
        """``DROP INDEX CONCURRENTLY IF EXISTS``."""
        self._concurrently(f"drop index {name}", table, f"DROP INDEX CONCURRENTLY IF EXISTS {name}")

    def _concurrently(self, what: str, table: str, statement: str, builds: str | None = None) -> None:
        """A statement that must run outside a transaction; retried (after cleaning up) on lock timeouts."""
        if self.offline:
            self._raw(statement)
            return
        retries = int(self.settings["lock_retries"])
        attempt = 0
        while True:
            attempt += 1
            try:
                self._raw(statement)
                return
            except Exception as exc:
                timed_out = _pgcode(exc) == LOCK_NOT_AVAILABLE
                invalid = builds is not None and self.index(builds) == "invalid"
                if not timed_out or attempt > retries:
                    blockers = self.blockers(table) if timed_out else []
                    leftover = (
                        f" The failed build left the INVALID index {builds}: the next run drops and rebuilds it."
                        if invalid
                        else ""
                    )
                    raise OnlineMigrationError(
                        f"Revision {self.revision}: {what} on {table} failed: {_first_line(exc)}"
                        + (f"; blocked by {describe_blockers(blockers)}" if blockers else "")
                        + f".{leftover} {RERUN_HINT}.",
                        table=table,
                        step=what,
                        blocking=blockers,
                    ) from exc
                if invalid:
                    self._raw(f"DROP INDEX CONCURRENTLY IF EXISTS {builds}")
                self._sleep(
                    min(
                        float(self.settings["lock_retry_delay"]) * 2 ** (attempt - 1),
                        float(self.settings["lock_retry_max_delay"]),
                    )
                )

    def add_check_not_null(self, table: str, column: str) -> None:
        """``SET NOT NULL`` without scanning under an exclusive lock: CHECK NOT VALID, VALIDATE, SET NOT NULL."""
        check = f"ck_{table}_{column}_not_null"
        col = self.column(table, column)
        if col is not None and col["not_null"]:
            if self.constraint(table, check) is not None:
                self.unit(
                    "drop helper check", table, lambda: self.execute(f"ALTER TABLE {table} DROP CONSTRAINT {check}")
                )
            return
        if self.constraint(table, check) is None:
            self.unit(
                f"add check {check} NOT VALID",
                table,
                lambda: self.execute(
                    f"ALTER TABLE {table} ADD CONSTRAINT {check} CHECK ({column} IS NOT NULL) NOT VALID"
                ),
            )
        if self.constraint(table, check) != "valid":
            self.unit(
                f"validate check {check}",
                table,
                lambda: self.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {check}"),
                weak=True,
            )

        def set_not_null() -> None:
            # PostgreSQL skips the full-table scan: the validated CHECK already proves there is no NULL.
            self.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL")
            self.execute(f"ALTER TABLE {table} DROP CONSTRAINT {check}")

        self.unit(f"set {column} NOT NULL", table, set_not_null)

    def add_foreign_key(self, name: str, table: str, column: str, target: str, *, ondelete: str) -> None:
        """A foreign key added NOT VALID (a brief lock), then validated (which blocks no reads or writes)."""
        if self.constraint(table, name) is None:
            self.unit(
                f"add foreign key {name} NOT VALID",
                table,
                lambda: self.execute(
                    f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY ({column}) REFERENCES {target} (id) "
                    f"ON DELETE {ondelete} NOT VALID"
                ),
            )
        if self.constraint(table, name) != "valid":
            self.unit(
                f"validate foreign key {name}",
                table,
                lambda: self.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}"),
                weak=True,
            )

    def backfill(self, table: str, assignment: str, predicate: str, **params: Any) -> int:
        """``UPDATE table SET assignment WHERE predicate`` in committed batches; returns the rows changed.

        Online, the table is walked in physical order (TID ranges, sized to about ``batch_size`` rows), then
        a final pass through the predicate catches rows that moved behind the walk. Rows that no longer
        match the predicate are never touched again, which is what makes an interrupted run resumable.
        """
        batch = int(self.settings["batch_size"])
        if self.offline:
            body = (
                f"UPDATE {table} SET {assignment} WHERE id IN "
                f"(SELECT id FROM {table} WHERE {predicate} LIMIT {batch}); "
                "GET DIAGNOSTICS done = ROW_COUNT; COMMIT; EXIT WHEN done = 0;"
            )
            self.execute(f"DO $$ DECLARE done bigint; BEGIN LOOP {body} END LOOP; END $$", **params)
            return 0
        started = self._clock()
        total = int(self.scalar(f"SELECT count(*) FROM {table} WHERE {predicate}", **params) or 0)
        done = 0

        def report(final: bool = False) -> None:
            elapsed = max(self._clock() - started, 1e-6)
            rate = done / elapsed
            remaining = max(total - done, 0)
            self.progress(
                {
                    "event": "backfill",
                    "table": table,
                    "rows_done": done,
                    "rows_total": total,
                    "rate_rows_s": round(rate, 1),
                    "eta_s": round(remaining / rate, 1) if rate > 0 and not final else 0.0,
                    "elapsed_s": round(elapsed, 3),
                    "done": final,
                },
                force=final,
            )

        if total:
            last_page = int(
                self.scalar(f"SELECT pg_relation_size('{table}') / current_setting('block_size')::bigint") or 0
            )
            pages = max(1, min(MAX_PAGES_PER_BATCH, batch // 50))
            page = 0
            while page < last_page:
                upper = min(page + pages, last_page)
                changed = self.unit(
                    f"backfill pages {page}-{upper}",
                    table,
                    lambda lo=page, hi=upper: (
                        self.execute(
                            f"UPDATE {table} SET {assignment} "
                            f"WHERE ctid >= CAST(:lo AS tid) AND ctid < CAST(:hi AS tid) AND {predicate}",
                            lo=f"({lo},0)",
                            hi=f"({hi},0)",
                            **params,
                        ).rowcount
                    ),
                )
                done += changed
                pages = (
                    max(1, min(MAX_PAGES_PER_BATCH, int(pages * batch / changed)))
                    if changed
                    else min(MAX_PAGES_PER_BATCH, pages * 2)
                )
                page = upper
                report()
                self._pause()
            while True:  # rows moved behind the walk (a concurrent UPDATE writes a new row version at the end)
                changed = self.unit(
                    "backfill the remaining rows",
                    table,
                    lambda: (
                        self.execute(
                            f"UPDATE {table} SET {assignment} WHERE id IN "
                            f"(SELECT id FROM {table} WHERE {predicate} LIMIT {batch})",
                            **params,
                        ).rowcount
                    ),
                )
                done += changed
                if changed == 0:
                    break
                self._pause()
        report(final=True)
        self.report.append(
            {"table": table, "rows": done, "duration_s": round(self._clock() - started, 3), "rows_expected": total}
        )
        return done

    def vacuum(self, table: str) -> None:
        """``VACUUM (ANALYZE)`` after a backfill: clears its dead rows and refreshes statistics.

        It only takes SHARE UPDATE EXCLUSIVE (reads and writes go on), and it pre-empts the autovacuum the
        backfill would trigger: an autovacuum worker holds that same lock, which the next revision's brief
        ALTER TABLEs would otherwise keep timing out on (autovacuum only yields to waits of deadlock_timeout).
        An optimisation: when it cannot run, the migration goes on.
        """
        if self.offline:
            self._raw(f"VACUUM (ANALYZE) {table}")
            return
        started = self._clock()
        try:
            self._raw(f"VACUUM (ANALYZE) {table}")
        except Exception as exc:
            self.progress({"event": "vacuum_skipped", "table": table, "cause": _first_line(exc)}, force=True)
            return
        self.progress({"event": "vacuum", "table": table, "elapsed_s": round(self._clock() - started, 3)}, force=True)

    def _pause(self) -> None:
        pause = float(self.settings["batch_pause"])
        if pause > 0:
            self._sleep(pause)


def _on(table: str | None) -> str:
    return f" on {table}" if table else ""


def describe_blockers(blockers: list[dict[str, Any]]) -> str:
    """``pid 42 (psql, user app, idle in transaction, transaction open 75 s: LOCK shipments)``, or a fallback."""
    if not blockers:
        return "a session that is no longer visible (it may have just finished)"
    parts = []
    for b in blockers:
        if b.get("user") is None and b.get("application_name") is None:
            parts.append(
                f"pid {b['pid']} (a session this role may not inspect, such as an autovacuum worker or another "
                f"role's client; holding {b.get('modes') or 'a lock'}; grant pg_read_all_stats to see it)"
            )
            continue
        age = f", transaction open {b['xact_age_s']} s" if b.get("xact_age_s") is not None else ""
        modes = f", holding {b['modes']}" if b.get("modes") else ""
        parts.append(
            f"pid {b['pid']} ({b.get('application_name') or 'unnamed client'}, user {b.get('user')}, "
            f"{b.get('state')}{age}{modes}: {b.get('query') or '?'})"
        )
    return "; ".join(parts)


@contextlib.contextmanager
def _offline_autocommit(emit: Callable[[str], None] | None) -> Iterator[None]:
    # op.get_context().autocommit_block() renders "COMMIT;" then "BEGIN;" in offline mode; the caller passes
    # it as _autocommit online. Offline the helper emits the same pair itself (Alembic's block would too).
    assert emit is not None
    emit("COMMIT")
    try:
        yield
    finally:
        emit("BEGIN")


def _pg_dialect() -> Any:
    from sqlalchemy.dialects import postgresql

    return postgresql.dialect()
