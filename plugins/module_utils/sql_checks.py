# SPDX-License-Identifier: GPL-3.0-or-later
"""Read-only SQL validation suites: schema, expectations, status decisions and the runner.

A suite is plain data (usually a YAML file)::

    name: multitenancy
    description: The twelve post-migration checks.
    params:                     # declared parameters and their defaults; callers may override them
      organization_id: 00000000-0000-0000-0000-000000000001
      tenant_tables: [users, shipments]
    facts:                      # named one-value queries run first; an error or no row gives null
      current_revision: SELECT string_agg(version_num, ',') FROM alembic_version
    checks:
      - id: "4"
        name: No tenant row has a NULL organization_id
        for_each: tenant_tables # run once per item; {item} is the item as a quoted identifier
        sql: SELECT count(*) FROM {item} WHERE organization_id IS NULL
        expect: {value: 0}      # rows: N | value: X | min: N | max: N (min and max may pair) | true
        tolerate: {max: 1}      # optional weaker expectation: unmet expect but met tolerate -> warn
        tolerated_message: One missing row is known and harmless.   # optional: why a tolerated miss is fine
        severity: fail          # what an unmet expectation means: fail | warn
        incomplete_when: SELECT %(current_revision)s IS NULL   # true -> warn "incomplete", not fail
        incomplete_message: Revision 005 has not run yet.
        collect_as: nulls       # optional: the observed value(s) land in collected[<name>]
        message: What it means and what to do when it does not pass.

Parameters and facts reach the SQL as psycopg2 ``%(name)s`` placeholders (so a literal ``%`` is
written ``%%``); list parameters become arrays (``= ANY(%(tenant_tables)s)``). In ``for_each`` checks the
SQL is a ``psycopg2.sql.SQL`` template: ``{item}`` becomes ``sql.Identifier(item)`` (never string glue),
``%(item)s`` the item as a value, and literal braces are written ``{{``/``}}``.

Every check runs inside a savepoint of one ``READ ONLY`` transaction that is always rolled back, so a
check that errors (a table that does not exist yet) becomes that check's result and the rest still run.
An error is ``fail`` unless ``incomplete_when`` holds; an unmet expectation is the check's severity.
"""

from __future__ import annotations

import datetime
import decimal
import ipaddress
import json
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.tracehub.deploy.plugins.module_utils.errors import CheckFailedError

try:
    import psycopg2
    from psycopg2 import sql

    HAS_PSYCOPG2 = True
except ImportError:  # pragma: no cover - reported by the module through missing_required_lib
    HAS_PSYCOPG2 = False

try:
    import yaml

    HAS_YAML = True
except ImportError:  # pragma: no cover - reported by the module through missing_required_lib
    HAS_YAML = False

PASS, WARN, FAIL = "pass", "warn", "fail"
SEVERITIES = (FAIL, WARN)
_RANK = {PASS: 0, WARN: 1, FAIL: 2}
EXPECT_KINDS = ("rows", "value", "min", "max", "true")
SUITE_KEYS = frozenset({"name", "description", "params", "facts", "checks"})
CHECK_KEYS = frozenset(
    {
        "id",
        "name",
        "sql",
        "expect",
        "tolerate",
        "tolerated_message",
        "severity",
        "incomplete_when",
        "incomplete_message",
        "message",
        "for_each",
        "collect_as",
    }
)
REQUIRED_CHECK_KEYS = ("id", "name", "sql", "expect")
DEFAULT_MAX_ROWS = 20
DEFAULT_INCOMPLETE_MESSAGE = "the database is not yet in the state this check verifies"
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --- JSON safety ---------------------------------------------------------------------------------


def json_safe(value: Any) -> Any:
    """``value`` made of JSON types only: UUIDs, dates and addresses as strings, Decimals as numbers.

    Integral Decimals become ``int`` (counts and sums compare equal to YAML integers); others become
    ``float``; non-finite floats and anything unknown become strings.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    return str(value)


# --- expectations --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Observation:
    """What one query returned: the full row count, the first row's first value, the first rows."""

    row_count: int
    value: Any = None
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()

    def as_dict(self, kind: str) -> dict[str, Any]:
        """JSON-safe view: the rows for ``rows`` expectations, the value and first row otherwise."""
        listed = [dict(zip(self.columns, (json_safe(v) for v in row), strict=False)) for row in self.rows]
        if kind == "rows":
            return {"row_count": self.row_count, "rows": listed}
        data: dict[str, Any] = {"value": json_safe(self.value)}
        if len(self.columns) > 1 and listed:
            data["row"] = listed[0]
        return data


@dataclass(frozen=True, slots=True)
class Expectation:
    """What a check's query must return; ``kind`` is rows, value, range (min and/or max) or true."""

    kind: str
    rows: int | None = None
    value: Any = None
    minimum: float | None = None
    maximum: float | None = None

    def as_dict(self) -> Any:
        """The expectation as written in a suite."""
        if self.kind == "true":
            return True
        if self.kind == "rows":
            return {"rows": self.rows}
        if self.kind == "value":
            return {"value": json_safe(self.value)}
        data: dict[str, Any] = {}
        if self.minimum is not None:
            data["min"] = self.minimum
        if self.maximum is not None:
            data["max"] = self.maximum
        return data

    def describe(self) -> str:
        """Human wording, e.g. ``0 rows``, ``value 1``, ``at least 15``."""
        if self.kind == "true":
            return "true"
        if self.kind == "rows":
            return f"{self.rows} row{'' if self.rows == 1 else 's'}"
        if self.kind == "value":
            return f"value {json.dumps(json_safe(self.value))}"
        parts = []
        if self.minimum is not None:
            parts.append(f"at least {_num(self.minimum)}")
        if self.maximum is not None:
            parts.append(f"at most {_num(self.maximum)}")
        return " and ".join(parts)

    def evaluate(self, observation: Observation) -> tuple[bool, str]:
        """(met, detail) for ``observation``; the detail names what was expected and what came back."""
        if self.kind == "rows":
            met = observation.row_count == self.rows
            detail = f"expected {self.describe()}, got {observation.row_count}"
            if not met and observation.rows:
                detail += f": {_sample(observation)}"
            return met, detail
        got = json_safe(observation.value)
        shown = "no row" if observation.row_count == 0 else json.dumps(got)
        if self.kind == "true":
            return got is True, f"expected true, got {shown}"
        if self.kind == "value":
            return values_equal(got, self.value), f"expected {self.describe()}, got {shown}"
        if not _is_number(got):
            return False, f"expected a number {self.describe()}, got {shown}"
        met = (self.minimum is None or got >= self.minimum) and (self.maximum is None or got <= self.maximum)
        return met, f"expected {self.describe()}, got {shown}"


def _sample(observation: Observation, limit: int = 5) -> str:
    """The first rows, compact: bare values for one column, JSON objects otherwise."""
    shown = []
    for row in observation.rows[:limit]:
        if len(row) == 1:
            value = json_safe(row[0])
            shown.append(value if isinstance(value, str) else json.dumps(value))
        else:
            shown.append(json.dumps(dict(zip(observation.columns, map(json_safe, row), strict=False))))
    more = observation.row_count - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def values_equal(observed: Any, expected: Any) -> bool:
    """Equality as an operator means it: numbers numerically, otherwise JSON-safe forms, then text."""
    observed, expected = json_safe(observed), json_safe(expected)
    if isinstance(observed, bool) != isinstance(expected, bool):
        return False  # True == 1 in Python, not in a check
    if _is_number(observed) and _is_number(expected):
        return observed == expected
    if observed == expected:
        return True
    if isinstance(expected, str) and observed is not None and not isinstance(observed, (bool, list, dict)):
        return str(observed) == expected
    return False


def parse_expectation(raw: Any, where: str) -> Expectation:
    """An ``Expectation`` from suite data, or ``CheckFailedError`` naming ``where`` and the key."""
    if raw is True or (isinstance(raw, str) and raw.strip().lower() == "true"):
        return Expectation("true")
    if not isinstance(raw, Mapping) or not raw:
        raise CheckFailedError(
            f"{where}: must be true or a mapping with one of rows, value, min, max (got {raw!r})", key=where
        )
    unknown = sorted(set(raw) - {"rows", "value", "min", "max", "true"})
    if unknown:
        raise CheckFailedError(
            f"{where}: unknown key {unknown[0]!r}; use one of rows, value, min, max, true", key=where
        )
    keys = set(raw)
    if keys == {"true"}:
        if raw["true"] is not True:
            raise CheckFailedError(f"{where}: 'true' takes no value other than true", key=where)
        return Expectation("true")
    if keys == {"rows"}:
        rows = raw["rows"]
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
            raise CheckFailedError(f"{where}.rows: must be a whole number >= 0 (got {rows!r})", key=where)
        return Expectation("rows", rows=rows)
    if keys == {"value"}:
        return Expectation("value", value=raw["value"])
    if keys <= {"min", "max"}:
        bounds = {}
        for key in ("min", "max"):
            if key in raw:
                if not _is_number(raw[key]):
                    raise CheckFailedError(f"{where}.{key}: must be a number (got {raw[key]!r})", key=where)
                bounds[key] = raw[key]
        if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
            raise CheckFailedError(f"{where}: min {bounds['min']} is greater than max {bounds['max']}", key=where)
        return Expectation("range", minimum=bounds.get("min"), maximum=bounds.get("max"))
    raise CheckFailedError(
        f"{where}: use exactly one of rows, value, true, or min and/or max (got {', '.join(sorted(keys))})", key=where
    )


# --- suite schema --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    """One validated check of a suite."""

    id: str
    name: str
    sql: str
    expect: Expectation
    severity: str = FAIL
    tolerate: Expectation | None = None
    tolerated_message: str = ""
    incomplete_when: str | None = None
    incomplete_message: str = DEFAULT_INCOMPLETE_MESSAGE
    message: str = ""
    for_each: str | None = None
    collect_as: str | None = None


@dataclass(frozen=True, slots=True)
class Suite:
    """A validated suite: declared parameters with defaults, facts and checks, in order."""

    name: str
    description: str
    params: dict[str, Any]
    facts: dict[str, str]
    checks: tuple[Check, ...]

    def resolve_params(self, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
        """Declared defaults updated with ``overrides``; an undeclared or mistyped parameter is an error."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.params))
        if unknown:
            declared = ", ".join(sorted(self.params)) or "none"
            raise CheckFailedError(
                f"Suite {self.name!r} declares no parameter {unknown[0]!r} (declared: {declared}). "
                "Fix the parameter name in params/validate_params.",
                suite=self.name,
            )
        resolved = dict(self.params) | overrides
        for check in self.checks:
            if check.for_each is not None:
                _require_identifier_list(resolved[check.for_each], f"parameter {check.for_each!r}", self.name)
        return resolved


def _require_identifier_list(value: Any, what: str, suite: str) -> None:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise CheckFailedError(
            f"Suite {suite!r}: {what} is used by for_each and must be a list of non-empty names (got {value!r})",
            suite=suite,
        )


def split_statements(text: str) -> list[str]:
    """The statements in ``text``: splits on ``;`` outside quotes, dollar quotes and comments.

    Used to refuse a check holding several statements: a stray ``COMMIT;`` would end the read-only
    transaction and let the next statement write.
    """
    statements: list[str] = []
    start = i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in ("'", '"'):
            end = text.find(ch, i + 1)
            while end != -1 and end + 1 < n and text[end + 1] == ch:
                end = text.find(ch, end + 2)
            i = n if end == -1 else end + 1
            continue
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end == -1 else end + 1
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end == -1 else end + 2
            continue
        if ch == "$":
            match = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", text[i:])
            if match:
                tag = match.group(0)
                end = text.find(tag, i + len(tag))
                i = n if end == -1 else end + len(tag)
                continue
        if ch == ";":
            statements.append(text[start:i])
            start = i + 1
        i += 1
    statements.append(text[start:])
    return [s.strip() for s in statements if _strip_comments(s).strip()]


def _strip_comments(text: str) -> str:
    return re.sub(r"--[^\n]*|/\*.*?\*/", "", text, flags=re.S)


def _check_sql(text: Any, where: str, names: set[str], errors: list[str]) -> None:
    if not isinstance(text, str) or not text.strip():
        errors.append(f"{where}: must be a non-empty SQL string")
        return
    if len(split_statements(text)) != 1:
        errors.append(f"{where}: must be exactly one statement (found a ';' between statements)")
    for name in _PLACEHOLDER.findall(text):
        if name not in names:
            errors.append(f"{where}: placeholder %({name})s is neither a declared param nor an earlier fact")


def parse_suite(raw: Any) -> Suite:
    """Validate suite data and return a ``Suite``; every problem is reported at once.

    Raises ``CheckFailedError`` whose message lists each problem as ``check '<id>' (#n).<key>: ...``.
    """
    if not isinstance(raw, Mapping):
        raise CheckFailedError(f"The suite must be a mapping with name and checks (got {type(raw).__name__})")
    errors: list[str] = []
    unknown = sorted(set(raw) - SUITE_KEYS)
    if unknown:
        errors.append(f"suite: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(SUITE_KEYS))}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        errors.append("suite.name: required, a non-empty string")
        name = "<unnamed>"
    description = raw.get("description") or ""
    if not isinstance(description, str):
        errors.append("suite.description: must be a string")
        description = ""
    params = raw.get("params") or {}
    if not isinstance(params, Mapping) or not all(isinstance(k, str) and _NAME.match(k) for k in params):
        errors.append("suite.params: must be a mapping of parameter names (letters, digits, _) to defaults")
        params = {}
    params = {str(k): v for k, v in params.items()}
    if "item" in params:
        errors.append("suite.params.item: 'item' is reserved for for_each checks")
    facts = raw.get("facts") or {}
    known = set(params)
    if not isinstance(facts, Mapping):
        errors.append("suite.facts: must be a mapping of fact name to a one-value SELECT")
        facts = {}
    for fact_name, fact_sql in facts.items():
        where = f"suite.facts.{fact_name}"
        if not isinstance(fact_name, str) or not _NAME.match(fact_name) or fact_name == "item":
            errors.append(f"{where}: fact names are letters, digits and _ (and not 'item')")
        elif fact_name in params:
            errors.append(f"{where}: a parameter has the same name")
        _check_sql(fact_sql, where, known, errors)
        known.add(str(fact_name))
    checks_raw = raw.get("checks")
    checks: list[Check] = []
    if not isinstance(checks_raw, list) or not checks_raw:
        errors.append("suite.checks: required, a non-empty list of checks")
        checks_raw = []
    seen: set[str] = set()
    for index, item in enumerate(checks_raw, start=1):
        check = _parse_check(item, index, params, known, seen, errors)
        if check is not None:
            checks.append(check)
    if errors:
        raise CheckFailedError(
            f"Suite {name!r} is invalid: " + "; ".join(errors) + ".", suite=name, schema_errors=errors
        )
    return Suite(name=name, description=description, params=dict(params), facts=dict(facts), checks=tuple(checks))


def _parse_check(
    item: Any, index: int, params: Mapping[str, Any], known: set[str], seen: set[str], errors: list[str]
) -> Check | None:
    if not isinstance(item, Mapping):
        errors.append(f"check #{index}: must be a mapping (got {type(item).__name__})")
        return None
    check_id = item.get("id")
    label = f"check {str(check_id)!r} (#{index})" if check_id not in (None, "") else f"check #{index}"
    before = len(errors)
    for key in REQUIRED_CHECK_KEYS:
        if key not in item or item[key] in (None, ""):
            errors.append(f"{label}.{key}: required")
    unknown = sorted(set(item) - CHECK_KEYS)
    if unknown:
        errors.append(f"{label}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(CHECK_KEYS))}")
    if check_id not in (None, ""):
        if str(check_id) in seen:
            errors.append(f"{label}.id: duplicate id {str(check_id)!r}")
        seen.add(str(check_id))
    for key in ("name", "message", "incomplete_message", "tolerated_message", "collect_as"):
        if key in item and item[key] is not None and not isinstance(item[key], str):
            errors.append(f"{label}.{key}: must be a string")
    severity = item.get("severity", FAIL)
    if severity not in SEVERITIES:
        errors.append(f"{label}.severity: must be fail or warn (got {severity!r})")
    for_each = item.get("for_each")
    names = set(known)
    if for_each is not None:
        if not isinstance(for_each, str) or for_each not in params:
            errors.append(f"{label}.for_each: must name a declared list parameter (got {for_each!r})")
        else:
            value = params[for_each]
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                errors.append(f"{label}.for_each: parameter {for_each!r} must default to a list of names")
        names.add("item")
        if "{item}" not in str(item.get("sql", "")) and "%(item)s" not in str(item.get("sql", "")):
            errors.append(f"{label}.sql: a for_each check must use {{item}} or %(item)s")
    if "sql" in item:
        _check_sql(item["sql"], f"{label}.sql", names, errors)
    if item.get("incomplete_when") is not None:
        _check_sql(item["incomplete_when"], f"{label}.incomplete_when", names - {"item"}, errors)
    expect = tolerate = None
    for key in ("expect", "tolerate"):
        if key in item and item[key] is not None:
            try:
                parsed = parse_expectation(item[key], f"{label}.{key}")
            except CheckFailedError as exc:
                errors.append(exc.msg)
                continue
            if key == "expect":
                expect = parsed
            else:
                tolerate = parsed
    if len(errors) > before or expect is None:
        return None
    return Check(
        id=str(check_id),
        name=str(item["name"]),
        sql=str(item["sql"]),
        expect=expect,
        severity=severity,
        tolerate=tolerate,
        tolerated_message=item.get("tolerated_message") or "",
        incomplete_when=item.get("incomplete_when"),
        incomplete_message=item.get("incomplete_message") or DEFAULT_INCOMPLETE_MESSAGE,
        message=item.get("message") or "",
        for_each=for_each,
        collect_as=item.get("collect_as"),
    )


def load_suite_file(path: str) -> Any:
    """The parsed YAML of a suite file on this host (validated later by ``parse_suite``)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except OSError as exc:
        raise CheckFailedError(f"Reading the suite file {path} failed: {exc.strerror}", path=path) from exc
    except yaml.YAMLError as exc:
        raise CheckFailedError(f"The suite file {path} is not valid YAML: {exc}", path=path) from exc


# --- status decision -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    """How one execution of a check (one ``for_each`` item, or the only run) went."""

    item: str | None
    met: bool
    detail: str
    tolerated: bool = False
    error: str | None = None
    observation: Observation | None = None


def decide_status(outcomes: Sequence[ItemOutcome], severity: str, incomplete: bool) -> str:
    """pass | warn | fail for a check, from its item outcomes.

    All met: pass. Otherwise an incomplete state is warn (not broken, just not there yet); an error is
    fail; unmet expectations take the check's severity; only tolerated misses are warn.
    """
    if all(o.met for o in outcomes):
        return PASS
    if incomplete:
        return WARN
    if any(o.error is not None for o in outcomes):
        return FAIL
    if any(not o.met and not o.tolerated for o in outcomes):
        return severity
    return WARN


def explain(
    outcomes: Sequence[ItemOutcome],
    status: str,
    incomplete: bool,
    incomplete_message: str,
    tolerated_message: str = "",
) -> str:
    """One line saying why the check got its status; a tolerated miss carries ``tolerated_message``."""
    misses = [o for o in outcomes if not o.met]
    if not misses:
        return "; ".join(f"{o.item}: {o.detail}" if o.item else o.detail for o in outcomes[:1]) or "met"
    parts = []
    for o in misses:
        tolerated = f" (tolerated: {tolerated_message})" if tolerated_message else " (tolerated)"
        text = f"error: {o.error}" if o.error else o.detail + (tolerated if o.tolerated else "")
        parts.append(f"{o.item}: {text}" if o.item is not None else text)
    if len(parts) > 4:
        parts = [*parts[:3], f"and {len(parts) - 3} more"]
    reason = "; ".join(parts)
    if status == WARN and incomplete:
        return f"incomplete: {incomplete_message} ({reason})"
    return reason


def worst(statuses: Sequence[str]) -> str:
    """The most severe of ``statuses`` (pass < warn < fail)."""
    return max(statuses, key=_RANK.__getitem__, default=PASS)


# --- results -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The JSON-safe outcome of one check."""

    id: str
    name: str
    status: str
    severity: str
    expected: Any
    observed: Any
    reason: str
    message: str
    duration_ms: float
    incomplete: bool = False
    error: str | None = None
    values: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """Result keys for the module's ``checks.results``."""
        data = {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "severity": self.severity,
            "expected": self.expected,
            "observed": self.observed,
            "reason": self.reason,
            "message": self.message,
            "incomplete": self.incomplete,
            "error": self.error,
            "duration_ms": self.duration_ms,
        }
        if self.values is not None:
            data["values"] = self.values
        return data


def summary_line(passed: int, warnings: int, failed: int) -> str:
    """``12 passed, 0 warnings, 0 failed`` (fixed wording, easy to grep)."""
    return f"{passed} passed, {warnings} warnings, {failed} failed"


@dataclass(frozen=True, slots=True)
class SuiteResult:
    """Everything a suite run produced."""

    suite: str
    results: tuple[CheckResult, ...]
    facts: dict[str, Any] = field(default_factory=dict)
    collected: dict[str, Any] = field(default_factory=dict)
    queries: tuple[str, ...] = ()
    target: str = ""

    @property
    def passed(self) -> int:
        """Number of checks that passed."""
        return sum(r.status == PASS for r in self.results)

    @property
    def warnings(self) -> int:
        """Number of checks that warned."""
        return sum(r.status == WARN for r in self.results)

    @property
    def failed(self) -> int:
        """Number of checks that failed."""
        return sum(r.status == FAIL for r in self.results)

    @property
    def summary(self) -> str:
        """The summary line."""
        return summary_line(self.passed, self.warnings, self.failed)

    def failure_message(self, fail_on_warn: bool = False) -> str | None:
        """The message to fail with, naming every failed (and, with ``fail_on_warn``, warned) check; else None."""
        bad = [r for r in self.results if r.status == FAIL or (fail_on_warn and r.status == WARN)]
        if not bad:
            return None
        where = f" on {self.target}" if self.target else ""
        listed = " | ".join(
            f"[{r.id}] {r.name} ({r.status}): {r.reason}" + (f". {r.message.strip()}" if r.message else "") for r in bad
        )
        return f"Validation suite {self.suite!r}{where} did not pass: {self.summary}. {listed}"

    def checks_dict(self) -> dict[str, Any]:
        """The module's ``checks`` domain key."""
        return {
            "suite": self.suite,
            "summary": self.summary,
            "passed": self.passed,
            "warnings": self.warnings,
            "failed": self.failed,
            "results": [r.as_dict() for r in self.results],
            "collected": self.collected,
            "facts": self.facts,
        }

    def as_dict(self) -> dict[str, Any]:
        """Module result: ``changed`` false, ``msg`` the summary, ``checks`` and ``queries``."""
        return {"changed": False, "msg": self.summary, "checks": self.checks_dict(), "queries": list(self.queries)}


# --- execution -----------------------------------------------------------------------------------


def _first_line(exc: Exception) -> str:
    """The server's primary message (``relation "x" does not exist``), else the first line of the error."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if primary:
        return str(primary).strip()
    text = (getattr(exc, "pgerror", None) or str(exc) or type(exc).__name__).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return re.sub(r"^ERROR:\s+", "", lines[0]) if lines else type(exc).__name__


class _Session:
    """The read-only transaction the checks run in; each statement inside its own savepoint."""

    def __init__(self, connection: Any, max_rows: int, clock: Callable[[], float]) -> None:
        self.connection = connection
        self.max_rows = max_rows
        self.clock = clock
        self.queries: list[str] = []
        self._counter = 0

    def execute_plain(self, statement: str, args: Any = None) -> Any:
        with self.connection.cursor() as cur:
            cur.execute(statement, args)
            self.queries.append(_rendered(cur, statement))
            return cur.fetchall() if cur.description else None

    def run(self, statement: Any, args: Mapping[str, Any]) -> Observation:
        """Run one statement in a savepoint; on a database error roll back to it and re-raise."""
        self._counter += 1
        savepoint = f"tracehub_check_{self._counter}"
        with self.connection.cursor() as cur:
            cur.execute(f"SAVEPOINT {savepoint}")
            try:
                cur.execute(statement, args)
            except psycopg2.Error:
                self.queries.append(_rendered(cur, statement))
                cur.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
                raise
            self.queries.append(_rendered(cur, statement))
            if cur.description is None:
                observation = Observation(row_count=0)
            else:
                columns = tuple(d[0] for d in cur.description)
                rows = tuple(tuple(r) for r in cur.fetchmany(self.max_rows))
                row_count = max(cur.rowcount, len(rows))
                value = rows[0][0] if rows else None
                observation = Observation(row_count=row_count, value=value, columns=columns, rows=rows)
            cur.execute(f"RELEASE SAVEPOINT {savepoint}")
        return observation


def _rendered(cur: Any, statement: Any) -> str:
    query = getattr(cur, "query", None)
    if isinstance(query, bytes):
        return query.decode("utf-8", "replace")
    if query:
        return str(query)
    return statement if isinstance(statement, str) else repr(statement)


def _statement_for(check: Check, item: str | None, connection: Any) -> Any:
    if item is None:
        return check.sql
    # for_each: {item} becomes a quoted identifier rendered by psycopg2, never glued into the text.
    return sql.SQL(check.sql).format(item=sql.Identifier(item)).as_string(connection)


def run_suite(
    suite: Suite,
    params: Mapping[str, Any] | None,
    connection_factory: Callable[[], Any],
    statement_timeout: int = 60,
    max_rows: int = DEFAULT_MAX_ROWS,
    target: str = "",
    clock: Callable[[], float] = time.monotonic,
) -> SuiteResult:
    """Run every check of ``suite`` in one read-only transaction that is always rolled back.

    :param params: overrides of the suite's declared parameters.
    :param connection_factory: returns a new psycopg2 connection (``pg.connect``); closed here.
    :param statement_timeout: seconds each statement may take (0: no limit).
    :param target: where the suite runs, for messages (``ConnInfo.describe()``).
    """
    resolved = suite.resolve_params(params)
    connection = connection_factory()
    session = _Session(connection, max_rows, clock)
    try:
        connection.autocommit = False
        # Read-only twice over: this transaction, and any later one on this session should a check end it.
        session.execute_plain("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        session.execute_plain("SET TRANSACTION READ ONLY")
        session.execute_plain("SET LOCAL statement_timeout = %s", (f"{max(0, int(statement_timeout))}s",))
        # A first query takes the snapshot: from here on no statement can switch the transaction to read-write.
        state = session.execute_plain("SELECT current_setting('transaction_read_only')")
        if not state or state[0][0] != "on":
            raise CheckFailedError(f"Could not make the transaction on {target or 'the database'} read-only")
        facts: dict[str, Any] = {}
        fact_errors: dict[str, str] = {}
        for name, statement in suite.facts.items():
            try:
                facts[name] = session.run(statement, resolved | facts).value
            except psycopg2.Error as exc:
                facts[name] = None
                fact_errors[name] = _first_line(exc)
        args = resolved | facts
        results = []
        collected: dict[str, Any] = {}
        for check in suite.checks:
            result = _run_check(check, args, session, connection)
            results.append(result)
            if check.collect_as:
                collected[check.collect_as] = result.values if result.values is not None else _value_of(result)
        shown_facts = {k: json_safe(v) for k, v in facts.items()}
        if fact_errors:
            shown_facts["errors"] = fact_errors
        return SuiteResult(
            suite=suite.name,
            results=tuple(results),
            facts=shown_facts,
            collected=collected,
            queries=tuple(session.queries),
            target=target,
        )
    except psycopg2.Error as exc:
        raise CheckFailedError(
            f"Running suite {suite.name!r} on {target or 'the database'} failed: {_first_line(exc)}",
            suite=suite.name,
            queries=session.queries,
        ) from exc
    finally:
        try:
            connection.rollback()
        finally:
            connection.close()


def _value_of(result: CheckResult) -> Any:
    observed = result.observed
    if isinstance(observed, Mapping):
        return observed.get("value", observed.get("rows"))
    return observed


def _run_check(check: Check, args: Mapping[str, Any], session: _Session, connection: Any) -> CheckResult:
    started = session.clock()
    items: list[str | None] = list(args[check.for_each]) if check.for_each else [None]
    outcomes: list[ItemOutcome] = []
    kind = check.expect.kind
    for item in items:
        item_args = dict(args) | ({"item": item} if item is not None else {})
        try:
            observation = session.run(_statement_for(check, item, connection), item_args)
        except psycopg2.Error as exc:
            outcomes.append(ItemOutcome(item, met=False, detail="error", error=_first_line(exc)))
            continue
        met, detail = check.expect.evaluate(observation)
        tolerated = bool(not met and check.tolerate is not None and check.tolerate.evaluate(observation)[0])
        outcomes.append(ItemOutcome(item, met=met, detail=detail, tolerated=tolerated, observation=observation))
    incomplete = False
    incomplete_error = None
    if check.incomplete_when and not all(o.met for o in outcomes):
        try:
            incomplete = session.run(check.incomplete_when, args).value is True
        except psycopg2.Error as exc:
            incomplete_error = f"incomplete_when failed: {_first_line(exc)}"
    status = decide_status(outcomes, check.severity, incomplete)
    reason = explain(outcomes, status, incomplete, check.incomplete_message, check.tolerated_message)
    if incomplete_error:
        reason = f"{reason}; {incomplete_error}"
    errors = [f"{o.item}: {o.error}" if o.item else o.error for o in outcomes if o.error]
    values = None
    if check.for_each:
        observed: Any = {
            o.item: (o.observation.as_dict(kind) if o.observation else {"error": o.error}) for o in outcomes
        }
        values = {o.item: json_safe(o.observation.value) if o.observation else None for o in outcomes}
    else:
        only = outcomes[0]
        observed = only.observation.as_dict(kind) if only.observation else None
    return CheckResult(
        id=check.id,
        name=check.name,
        status=status,
        severity=check.severity,
        expected=check.expect.as_dict(),
        observed=observed,
        reason=reason,
        message=check.message.strip(),
        duration_ms=round((session.clock() - started) * 1000, 3),
        incomplete=status == WARN and incomplete,
        error="; ".join(errors) if errors else None,
        values=values,
    )
