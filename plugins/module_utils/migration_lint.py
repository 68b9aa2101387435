# SPDX-License-Identifier: GPL-3.0-or-later
"""Migration safety linter: find the statements of pending revisions that would stall a live application.

Each pending revision is rendered to SQL offline (Alembic ``--sql`` mode, through ``alembic_ops``: no
database is touched) and read statement by statement, tracking transactions (``BEGIN``/``COMMIT``), the
``lock_timeout`` in force and the tables the revision itself creates (new tables are empty and unused, so
they are exempt). The rules flag what takes a long or a strong lock on an existing table:

========================== ==============================================================================
rule                       flags
========================== ==============================================================================
``concurrent-index``       ``CREATE INDEX`` without ``CONCURRENTLY``; ``ADD UNIQUE``/``PRIMARY KEY`` without
                           ``USING INDEX`` (both build an index while writes are blocked)
``not-null-without-check`` ``SET NOT NULL`` without a validated ``CHECK (col IS NOT NULL)`` (full scan under an
                           ACCESS EXCLUSIVE lock)
``constraint-not-valid``   ``ADD FOREIGN KEY``/``CHECK`` without ``NOT VALID`` (validated under the lock)
``table-rewrite``          column type changes, ``ADD COLUMN`` with a volatile default or a stored generated
                           column, ``VACUUM FULL``, ``CLUSTER`` (the table is rewritten under the lock)
``multi-table-ddl``        one transaction taking strong locks on several existing tables
``unbatched-dml``          ``UPDATE``/``DELETE`` of an existing table not bounded to a batch (``LIMIT``)
``lock-timeout``           a strong lock on an existing table requested without a ``lock_timeout``
========================== ==============================================================================

A revision acknowledges a finding explicitly with a module-level mapping, rule -> reason::

    MIGRATION_LINT_ACKNOWLEDGED = {"unbatched-dml": "audit_logs holds 40 rows in every environment"}

An acknowledged finding is still reported, marked ``acknowledged`` with the reason, and does not fail the gate.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.tracehub.deploy.plugins.module_utils import alembic_ops
from ansible_collections.tracehub.deploy.plugins.module_utils.errors import MigrationError
from ansible_collections.tracehub.deploy.plugins.module_utils.pg import ConnInfo

ACK_ATTRIBUTE = "MIGRATION_LINT_ACKNOWLEDGED"
STATEMENT_PREVIEW = 160
IGNORED_TABLES = frozenset({"alembic_version"})


@dataclass(frozen=True, slots=True)
class Rule:
    """One lint rule: what it flags and what to do instead."""

    name: str
    title: str
    alternative: str


RULES: dict[str, Rule] = {
    rule.name: rule
    for rule in (
        Rule(
            "concurrent-index",
            "index built while writes are blocked",
            "Build it with CREATE INDEX CONCURRENTLY outside the transaction (with "
            "op.get_context().autocommit_block()); for a UNIQUE or PRIMARY KEY constraint build the unique index "
            "concurrently first, then ADD CONSTRAINT ... USING INDEX.",
        ),
        Rule(
            "not-null-without-check",
            "SET NOT NULL scans the table under an ACCESS EXCLUSIVE lock",
            "Add CHECK (column IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT it in its own transaction, then SET NOT "
            "NULL (PostgreSQL 12+ skips the scan thanks to the validated check) and drop the check.",
        ),
        Rule(
            "constraint-not-valid",
            "constraint validated while the table is locked",
            "Add the constraint NOT VALID (a brief lock, no scan), then ALTER TABLE ... VALIDATE CONSTRAINT in its "
            "own transaction (it blocks no reads or writes).",
        ),
        Rule(
            "table-rewrite",
            "the table is rewritten under an ACCESS EXCLUSIVE lock",
            "Add the column without a default (or with a constant one, which PostgreSQL 11+ stores in the "
            "catalog), backfill it in batches, then set the default; for a type change add a new column, "
            "backfill it in batches and swap.",
        ),
        Rule(
            "multi-table-ddl",
            "one transaction locks several existing tables",
            "Change one table per transaction (COMMIT between tables), so each lock is held briefly and the "
            "application's queries never wait behind a chain of locks.",
        ),
        Rule(
            "unbatched-dml",
            "UPDATE/DELETE of a whole table in one transaction",
            "Update in batches with a commit after each, e.g. UPDATE t SET ... WHERE id IN (SELECT id FROM t WHERE "
            "<predicate> LIMIT 2000) until no row is left: row locks are held for one batch, and the predicate makes "
            "it resumable.",
        ),
        Rule(
            "lock-timeout",
            "strong lock requested without lock_timeout",
            "SET LOCAL lock_timeout (e.g. '200ms') at the start of the transaction and retry on timeout with "
            "backoff: a DDL waiting for its lock queues every later query on the table behind it.",
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Finding:
    """A statement of a revision that breaks a rule."""

    rule: str
    revision: str
    statement: str
    table: str | None
    message: str
    alternative: str
    acknowledged: bool = False
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for results."""
        return {
            "rule": self.rule,
            "revision": self.revision,
            "statement": self.statement,
            "table": self.table,
            "message": self.message,
            "alternative": self.alternative,
            "acknowledged": self.acknowledged,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class LintReport:
    """Findings of the pending revisions between ``from_revision`` and ``to_revision``."""

    database: str
    script_location: str
    from_revision: str | None
    to_revision: str | None
    revisions: tuple[str, ...]
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def blocking(self) -> tuple[Finding, ...]:
        """The findings that are not acknowledged: they fail the gate."""
        return tuple(f for f in self.findings if not f.acknowledged)

    @property
    def passed(self) -> bool:
        """True when every finding (if any) is acknowledged."""
        return not self.blocking

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for results."""
        by_rule: dict[str, int] = {}
        for finding in self.blocking:
            by_rule[finding.rule] = by_rule.get(finding.rule, 0) + 1
        return {
            "database": self.database,
            "script_location": self.script_location,
            "from_revision": self.from_revision,
            "to_revision": self.to_revision,
            "revisions": list(self.revisions),
            "passed": self.passed,
            "findings": [f.as_dict() for f in self.findings],
            "blocking": len(self.blocking),
            "acknowledged": len(self.findings) - len(self.blocking),
            "by_rule": by_rule,
        }


# --- SQL reading ---------------------------------------------------------------------------------------

_DOLLAR = re.compile(r"\$[A-Za-z_]*\$")


def split_statements(sql: str) -> list[str]:
    """The statements of a SQL script, without comments; quotes and ``$$`` bodies are kept whole."""
    out: list[str] = []
    buf: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
            buf.append(" ")
            continue
        if ch == "/" and sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            buf.append(" ")
            continue
        if ch in ("'", '"'):
            end = i + 1
            while end < n:
                if sql[end] == ch and sql.startswith(ch * 2, end):
                    end += 2
                    continue
                if sql[end] == ch:
                    break
                end += 1
            buf.append(sql[i : end + 1])
            i = end + 1
            continue
        if ch == "$":
            match = _DOLLAR.match(sql, i)
            if match:
                tag = match.group(0)
                end = sql.find(tag, match.end())
                end = n if end < 0 else end + len(tag)
                buf.append(sql[i:end])
                i = end
                continue
        if ch == ";":
            _flush(buf, out)
            i += 1
            continue
        buf.append(ch)
        i += 1
    _flush(buf, out)
    return out


def _flush(buf: list[str], out: list[str]) -> None:
    text = " ".join("".join(buf).split())
    buf.clear()
    if text:
        out.append(text)


def _strip_quoted(statement: str) -> str:
    """The statement with string literals blanked, for keyword matching that quotes cannot fool."""
    return re.sub(r"'(?:[^']|'')*'", "''", statement)


_IDENT = r'(?:"[^"]+"|[A-Za-z_][\w$]*)(?:\.(?:"[^"]+"|[A-Za-z_][\w$]*))?'


def _name(raw: str) -> str:
    """An identifier without schema ``public.`` and quotes, lower-cased when unquoted."""
    parts = [p[1:-1] if p.startswith('"') else p.lower() for p in re.findall(r'"[^"]+"|[^.]+', raw)]
    if len(parts) == 2 and parts[0] == "public":
        parts = parts[1:]
    return ".".join(parts)


_RE = {
    "begin": re.compile(r"^(BEGIN|START TRANSACTION)\b", re.I),
    "end": re.compile(r"^(COMMIT|END|ROLLBACK|ABORT)\b", re.I),
    "set_timeout": re.compile(r"^SET\s+(LOCAL\s+|SESSION\s+)?lock_timeout\s*(=|TO)\s*'?([^';\s]+)'?", re.I),
    "reset_timeout": re.compile(r"^RESET\s+(lock_timeout|ALL)\b", re.I),
    "create_table": re.compile(
        rf"^CREATE\s+(?:UNLOGGED\s+|TEMP\s+|TEMPORARY\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?({_IDENT})", re.I
    ),
    "references": re.compile(rf"\bREFERENCES\s+({_IDENT})", re.I),
    "create_index": re.compile(
        rf"^CREATE\s+(UNIQUE\s+)?INDEX\s+(CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?(?:{_IDENT}\s+)?ON\s+(?:ONLY\s+)?({_IDENT})",
        re.I,
    ),
    "alter_table": re.compile(rf"^ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?({_IDENT})\s+(.*)$", re.I | re.S),
    "drop_table": re.compile(
        rf"^(?:DROP\s+TABLE|TRUNCATE(?:\s+TABLE)?|LOCK(?:\s+TABLE)?)\s+(?:IF\s+EXISTS\s+)?({_IDENT})", re.I
    ),
    "drop_index": re.compile(rf"^DROP\s+INDEX\s+(CONCURRENTLY\s+)?(?:IF\s+EXISTS\s+)?({_IDENT})", re.I),
    "update": re.compile(rf"^UPDATE\s+(?:ONLY\s+)?({_IDENT})", re.I),
    "delete": re.compile(rf"^DELETE\s+FROM\s+(?:ONLY\s+)?({_IDENT})", re.I),
    "vacuum_full": re.compile(rf"^(?:VACUUM\s*\(?[^;]*\bFULL\b[^;]*?|CLUSTER)\s+({_IDENT})", re.I),
    "do": re.compile(r"^DO\s+(?:LANGUAGE\s+\w+\s+)?(\$[A-Za-z_]*\$)(.*)\1", re.I | re.S),
}
_VOLATILE_DEFAULT = re.compile(
    r"\bDEFAULT\s+[^,]*\b(now|clock_timestamp|statement_timestamp|timeofday|random|gen_random_uuid|uuid_generate_v\d\w*|"
    r"nextval|txid_current|current_timestamp|localtimestamp)\b",
    re.I,
)


@dataclass(slots=True)
class _State:
    revision: str
    acknowledged: Mapping[str, str]
    created: set[str] = field(default_factory=set)
    in_tx: bool = False
    session_timeout: bool = False
    local_timeout: bool = False
    tx_tables: list[str] = field(default_factory=list)
    checks: dict[str, tuple[str, str]] = field(default_factory=dict)
    validated: set[tuple[str, str]] = field(default_factory=set)
    findings: list[Finding] = field(default_factory=list)

    def existing(self, table: str) -> bool:
        return table not in self.created and table not in IGNORED_TABLES

    def flag(self, rule: str, statement: str, table: str | None, detail: str) -> None:
        spec = RULES[rule]
        reason = self.acknowledged.get(rule)
        preview = statement if len(statement) <= STATEMENT_PREVIEW else statement[: STATEMENT_PREVIEW - 1] + "…"
        where = f" on {table}" if table else ""
        self.findings.append(
            Finding(
                rule=rule,
                revision=self.revision,
                statement=preview,
                table=table,
                message=f"Revision {self.revision}: {spec.title}{where}: {detail}",
                alternative=spec.alternative,
                acknowledged=reason is not None,
                reason=reason,
            )
        )

    def strong_lock(self, statement: str, table: str, own: bool = True) -> None:
        """``statement`` takes a lock blocking reads or writes on the existing ``table``."""
        if not (self.local_timeout or self.session_timeout):
            self.flag("lock-timeout", statement, table, "no lock_timeout is set when this statement asks for its lock.")
        if not own:
            return
        if not self.in_tx:
            return
        if table not in self.tx_tables:
            self.tx_tables.append(table)
            if len(self.tx_tables) == 2:
                self.flag(
                    "multi-table-ddl",
                    statement,
                    table,
                    f"this transaction already holds a strong lock on {self.tx_tables[0]} and keeps it until COMMIT.",
                )


def lint_sql(revision: str, sql: str, acknowledged: Mapping[str, str] | None = None) -> list[Finding]:
    """The findings of one revision's rendered SQL (pure: no database, no Alembic)."""
    state = _State(revision, dict(acknowledged or {}))
    for statement in split_statements(sql):
        _lint_statement(state, statement)
    return state.findings


def _lint_statement(state: _State, statement: str) -> None:
    bare = _strip_quoted(statement)
    if _RE["begin"].match(bare):
        state.in_tx, state.local_timeout, state.tx_tables = True, False, []
        return
    if _RE["end"].match(bare):
        state.in_tx, state.local_timeout, state.tx_tables = False, False, []
        return
    match = _RE["set_timeout"].match(statement)
    if match:
        active = match.group(3).strip().lower() not in ("0", "0ms", "0s", "default")
        if (match.group(1) or "").strip().upper() == "LOCAL":
            state.local_timeout = active
        else:
            state.session_timeout = active
        return
    if _RE["reset_timeout"].match(bare):
        state.session_timeout = False
        return
    match = _RE["do"].match(statement)
    if match:
        for inner in split_statements(match.group(2)):
            inner = re.sub(r"^(DECLARE\b.*?\bBEGIN|BEGIN|LOOP)\s+", "", inner, flags=re.I | re.S)
            inner = re.sub(r"^(LOOP)\s+", "", inner, flags=re.I)
            if _RE["update"].match(inner) or _RE["delete"].match(inner):
                _lint_dml(state, inner)
        return
    match = _RE["create_table"].match(bare)
    if match:
        table = _name(match.group(1))
        state.created.add(table)
        for target in dict.fromkeys(_name(ref) for ref in _RE["references"].findall(bare)):
            if state.existing(target):
                state.strong_lock(statement, target, own=False)
        return
    match = _RE["create_index"].match(bare)
    if match:
        table = _name(match.group(3))
        if state.existing(table):
            if match.group(2):
                return  # CONCURRENTLY: SHARE UPDATE EXCLUSIVE, blocks no reads or writes
            state.flag("concurrent-index", statement, table, "the index is built while the table's writes wait.")
            state.strong_lock(statement, table)
        return
    match = _RE["alter_table"].match(bare)
    if match:
        _lint_alter(state, statement, _name(match.group(1)), match.group(2))
        return
    match = _RE["drop_table"].match(bare)
    if match:
        table = _name(match.group(1))
        if state.existing(table):
            state.strong_lock(statement, table)
        return
    match = _RE["vacuum_full"].match(bare)
    if match:
        table = _name(match.group(1))
        state.flag("table-rewrite", statement, table, "VACUUM FULL/CLUSTER rewrite the table under the lock.")
        return
    if _RE["update"].match(bare) or _RE["delete"].match(bare):
        _lint_dml(state, statement)


def _lint_alter(state: _State, statement: str, table: str, rest: str) -> None:
    if not state.existing(table):
        return
    actions = _split_actions(rest)
    for action in actions:
        add = re.match(r"^ADD\s+(.*)$", action, re.I | re.S)
        if add:
            _lint_add(state, statement, table, add.group(1))
            continue
        validate = re.match(rf"^VALIDATE\s+CONSTRAINT\s+({_IDENT})", action, re.I)
        if validate:
            name = _name(validate.group(1))
            if name in state.checks:
                state.validated.add(state.checks[name])
            continue
        not_null = re.match(r"^ALTER\s+(?:COLUMN\s+)?(\w+)\s+SET\s+NOT\s+NULL", action, re.I)
        if not_null and (table, not_null.group(1).lower()) not in state.validated:
            state.flag(
                "not-null-without-check",
                statement,
                table,
                f"no validated CHECK ({not_null.group(1)} IS NOT NULL) precedes it, so every row is scanned.",
            )
        if re.match(r"^ALTER\s+(?:COLUMN\s+)?\w+\s+(SET\s+DATA\s+)?TYPE\b", action, re.I):
            state.flag("table-rewrite", statement, table, "changing a column's type rewrites the table.")
    if not all(re.match(r"^VALIDATE\s+CONSTRAINT\b", a, re.I) for a in actions):
        # VALIDATE only takes SHARE UPDATE EXCLUSIVE: reads and writes go on.
        state.strong_lock(statement, table)


def _lint_add(state: _State, statement: str, table: str, body: str) -> None:
    """One ``ADD ...`` action of an ALTER TABLE on an existing table."""
    name = None
    named = re.match(rf"^CONSTRAINT\s+({_IDENT})\s+(.*)$", body, re.I | re.S)
    if named:
        name, body = _name(named.group(1)), named.group(2)
    kind = re.match(r"^(FOREIGN\s+KEY|CHECK|UNIQUE|PRIMARY\s+KEY|EXCLUDE)\b", body, re.I)
    if kind is None:  # ADD [COLUMN] ...
        if _VOLATILE_DEFAULT.search(body) or re.search(r"\bGENERATED\s+ALWAYS\s+AS\s*\(.*\)\s*STORED", body, re.I):
            state.flag(
                "table-rewrite", statement, table, "a volatile default or stored generated column fills every row."
            )
        return
    word = " ".join(kind.group(1).upper().split())
    not_valid = bool(re.search(r"\bNOT\s+VALID\b", body, re.I))
    if word in ("FOREIGN KEY", "CHECK") and not not_valid:
        state.flag(
            "constraint-not-valid", statement, table, "the constraint is checked against every row under the lock."
        )
    check = re.match(r"^CHECK\s*\(\s*(\w+)\s+IS\s+NOT\s+NULL\s*\)", body, re.I)
    if check and name:
        state.checks[name] = (table, check.group(1).lower())
    if check and not not_valid:
        state.validated.add((table, check.group(1).lower()))
    if word in ("UNIQUE", "PRIMARY KEY", "EXCLUDE") and not re.search(r"\bUSING\s+INDEX\b", body, re.I):
        state.flag("concurrent-index", statement, table, "the constraint builds its index under the lock.")


def _split_actions(rest: str) -> list[str]:
    """The comma-separated actions of an ALTER TABLE (commas inside parentheses do not split)."""
    actions, depth, buf = [], 0, []
    for ch in rest:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            actions.append("".join(buf).strip())
            buf = []
            continue
        buf.append(ch)
    if "".join(buf).strip():
        actions.append("".join(buf).strip())
    return actions


def _lint_dml(state: _State, statement: str) -> None:
    bare = _strip_quoted(statement)
    match = _RE["update"].match(bare) or _RE["delete"].match(bare)
    table = _name(match.group(1))
    if not state.existing(table):
        return
    bounded = re.search(r"\bLIMIT\s+\d+", bare, re.I) or re.search(r"\bctid\s*[<>]=?", bare, re.I)
    if not bounded:
        state.flag(
            "unbatched-dml",
            statement,
            table,
            "every matching row is locked until the transaction ends, and v1.2's writes to them wait.",
        )


# --- revisions ------------------------------------------------------------------------------------------


def acknowledgements(module: Any, revision: str) -> dict[str, str]:
    """The revision's ``MIGRATION_LINT_ACKNOWLEDGED`` (rule -> reason), checked."""
    given = getattr(module, ACK_ATTRIBUTE, None) or {}
    if not isinstance(given, Mapping):
        raise MigrationError(
            f"Revision {revision}: {ACK_ATTRIBUTE} must be a dict of rule name -> reason, not {type(given).__name__}."
        )
    unknown = sorted(set(given) - set(RULES))
    if unknown:
        raise MigrationError(
            f"Revision {revision} acknowledges unknown lint rule(s) {', '.join(unknown)}; known rules: "
            f"{', '.join(RULES)}."
        )
    missing = sorted(rule for rule, reason in given.items() if not str(reason or "").strip())
    if missing:
        raise MigrationError(
            f"Revision {revision} acknowledges {', '.join(missing)} without a reason: say why the finding is safe."
        )
    return {rule: str(reason).strip() for rule, reason in given.items()}


def lint(
    conn: ConnInfo,
    script_location: str,
    target: str = "head",
    from_revision: str | None = None,
    settings: alembic_ops.OnlineSettings | None = None,
) -> LintReport:
    """Lint the revisions pending between the database's revision (or ``from_revision``) and ``target``.

    With ``from_revision`` (a revision id, or ``base``) the database is not contacted at all; otherwise its
    current revision is read. The SQL is rendered offline, never executed.
    """
    script = alembic_ops.load_scripts(script_location)
    location = str(script.dir)
    if from_revision is None:
        start = alembic_ops.current(conn)
    elif from_revision == alembic_ops.BASE:
        start = ()
    else:
        start = (from_revision,)
    plan = alembic_ops.plan_from(script, start, target, conn.dbname)
    if plan.direction != alembic_ops.UPGRADE:
        return LintReport(conn.dbname, location, plan.current, plan.target, ())
    rendered = alembic_ops.render_offline_sql(conn, location, plan, settings)
    findings: list[Finding] = []
    for item in rendered:
        revision = item["revision"]
        module = script.get_revision(revision).module
        acked = acknowledgements(module, revision)
        if item["sql"].startswith(f"-- revision {revision} cannot be rendered offline"):
            raise MigrationError(
                f"Linting revision {revision} failed: it cannot be rendered offline "
                f"({item['sql'].split(': ', 1)[-1]}). Make its upgrade() work with `alembic upgrade --sql`.",
                revision=revision,
            )
        findings.extend(lint_sql(revision, item["sql"], acked))
    return LintReport(
        conn.dbname, location, plan.current, plan.target, tuple(s.revision for s in plan.steps), tuple(findings)
    )


def describe(report: LintReport) -> str:
    """One sentence: ``Linted 4 revisions (003-006): 12 findings, 0 acknowledged.``"""
    if not report.revisions:
        upto = alembic_ops.rev_label(report.to_revision)
        return f"Nothing to lint: no revision pending on {report.database} up to {upto}."
    span = report.revisions[0] if len(report.revisions) == 1 else f"{report.revisions[0]}-{report.revisions[-1]}"
    noun = "revision" if len(report.revisions) == 1 else "revisions"
    blocking = report.blocking
    acked = len(report.findings) - len(blocking)
    if not blocking:
        extra = f" ({acked} acknowledged)" if acked else ""
        return f"Linted {len(report.revisions)} {noun} ({span}): safe for live traffic{extra}."
    listing = "; ".join(f"{f.revision} {f.rule}{' on ' + f.table if f.table else ''}" for f in blocking[:12])
    more = f"; and {len(blocking) - 12} more" if len(blocking) > 12 else ""
    return (
        f"Linted {len(report.revisions)} {noun} ({span}): {len(blocking)} unsafe statement(s) for live traffic "
        f"({listing}{more}). Fix them (each finding names the safe alternative) or acknowledge a rule in the "
        f"revision's {ACK_ATTRIBUTE} with the reason."
    )
