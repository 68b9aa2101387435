from __future__ import annotations

import datetime
import decimal
import json
import uuid
from pathlib import Path

import pytest

from ansible_collections.tracehub.deploy.plugins.module_utils.errors import CheckFailedError
from ansible_collections.tracehub.deploy.plugins.module_utils.sql_checks import (
    CheckResult,
    ItemOutcome,
    Observation,
    SuiteResult,
    decide_status,
    explain,
    json_safe,
    load_suite_file,
    parse_expectation,
    parse_suite,
    split_statements,
    summary_line,
    values_equal,
)

SUITES = Path(__file__).resolve().parents[4] / "roles" / "validate" / "files" / "suites"


def suite(*checks: dict, **extra) -> dict:
    return {"name": "t", "checks": list(checks)} | extra


def check(**overrides) -> dict:
    return {"id": "c1", "name": "A check", "sql": "SELECT 1", "expect": {"value": 1}} | overrides


def obs(value=None, rows=None, columns=("v",)) -> Observation:
    rows = rows if rows is not None else ([(value,)] if value is not None else [])
    return Observation(row_count=len(rows), value=rows[0][0] if rows else None, columns=columns, rows=tuple(rows))


# --- shipped suites -------------------------------------------------------------------------------


@pytest.mark.parametrize("name,count", [("multitenancy", 12), ("pre_migration", 3)])
def test_parse_suite_shipped_suites_are_valid(name, count):
    parsed = parse_suite(load_suite_file(str(SUITES / f"{name}.yml")))

    assert parsed.name == name
    assert len(parsed.checks) == count


def test_parse_suite_multitenancy_ids_are_one_to_twelve():
    parsed = parse_suite(load_suite_file(str(SUITES / "multitenancy.yml")))

    assert [c.id for c in parsed.checks] == [str(n) for n in range(1, 13)]
    assert parsed.params["target_revision"] == "006"
    assert len(parsed.params["tenant_tables"]) == 9


def test_load_suite_file_missing_names_path(tmp_path):
    with pytest.raises(CheckFailedError, match=r"Reading the suite file .*nope\.yml failed"):
        load_suite_file(str(tmp_path / "nope.yml"))


def test_load_suite_file_bad_yaml_says_not_valid(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("checks: [unclosed\n")

    with pytest.raises(CheckFailedError, match="not valid YAML"):
        load_suite_file(str(path))


# --- schema errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,fragment",
    [
        ([], "must be a mapping"),
        ({"checks": [check()]}, "suite.name: required"),
        ({"name": "t"}, "suite.checks: required"),
        ({"name": "t", "checks": []}, "suite.checks: required"),
        (suite(check(), color="red"), "suite: unknown key 'color'"),
        (suite(check(expct=1)), "check 'c1' (#1): unknown key 'expct'"),
        (suite({"id": "x", "name": "n", "sql": "SELECT 1"}), "check 'x' (#1).expect: required"),
        (suite(check(sql="")), "check 'c1' (#1).sql: required"),
        (suite(check(), check()), "check 'c1' (#2).id: duplicate id 'c1'"),
        (suite(check(severity="error")), "check 'c1' (#1).severity: must be fail or warn"),
        (suite(check(expect={"rows": -1})), "check 'c1' (#1).expect.rows: must be a whole number"),
        (suite(check(expect={"min": "ten"})), "check 'c1' (#1).expect.min: must be a number"),
        (suite(check(expect={"min": 5, "max": 1})), "min 5 is greater than max 1"),
        (suite(check(expect={"rows": 0, "value": 1})), "use exactly one of rows, value, true"),
        (suite(check(expect="yes")), "check 'c1' (#1).expect: must be true or a mapping"),
        (suite(check(tolerate={"between": 1})), "check 'c1' (#1).tolerate: unknown key 'between'"),
        (suite(check(tolerated_message=["why"])), "check 'c1' (#1).tolerated_message: must be a string"),
        (suite(check(sql="SELECT %(nope)s")), "placeholder %(nope)s is neither a declared param"),
        (suite(check(sql="SELECT 1; COMMIT")), "must be exactly one statement"),
        (suite(check(for_each="tables")), "check 'c1' (#1).for_each: must name a declared list parameter"),
        (suite(check(for_each="t", sql="SELECT 1"), params={"t": ["a"]}), "must use {item} or %(item)s"),
        (suite(check(for_each="t", sql="SELECT {item}"), params={"t": "a"}), "must default to a list of names"),
        (suite(check(incomplete_when="SELECT %(x)s")), "check 'c1' (#1).incomplete_when: placeholder %(x)s"),
        (suite(check(), params={"item": 1}), "'item' is reserved"),
        (suite(check(), facts={"x": "SELECT 1; SELECT 2"}), "suite.facts.x: must be exactly one statement"),
        (suite(check(), params={"x": 1}, facts={"x": "SELECT 1"}), "suite.facts.x: a parameter has the same name"),
        (suite("SELECT 1"), "check #1: must be a mapping"),
    ],
)
def test_parse_suite_invalid_names_check_and_key(raw, fragment):
    with pytest.raises(CheckFailedError) as caught:
        parse_suite(raw)

    assert fragment in caught.value.msg


def test_parse_suite_reports_every_problem_at_once():
    raw = suite(check(id="a", severity="bad"), check(id="b", expect=None))

    with pytest.raises(CheckFailedError) as caught:
        parse_suite(raw)

    assert len(caught.value.details["schema_errors"]) == 2
    assert "check 'a' (#1).severity" in caught.value.msg
    assert "check 'b' (#2).expect: required" in caught.value.msg


def test_parse_suite_facts_usable_by_later_facts_and_checks():
    raw = suite(
        check(sql="SELECT %(b)s", incomplete_when="SELECT %(a)s IS NULL"),
        params={"p": 1},
        facts={"a": "SELECT %(p)s", "b": "SELECT %(a)s"},
    )

    parsed = parse_suite(raw)

    assert list(parsed.facts) == ["a", "b"]


def test_parse_suite_fact_using_later_fact_is_refused():
    with pytest.raises(CheckFailedError, match=r"suite.facts.a: placeholder %\(b\)s"):
        parse_suite(suite(check(), facts={"a": "SELECT %(b)s", "b": "SELECT 1"}))


def test_parse_suite_numeric_id_becomes_string_and_severity_defaults_to_fail():
    parsed = parse_suite(suite(check(id=7)))

    assert parsed.checks[0].id == "7"
    assert parsed.checks[0].severity == "fail"


def test_resolve_params_undeclared_override_refused():
    parsed = parse_suite(suite(check(), params={"target_revision": "006"}))

    with pytest.raises(CheckFailedError, match=r"declares no parameter 'target'.*declared: target_revision"):
        parsed.resolve_params({"target": "005"})


def test_resolve_params_override_wins_and_for_each_must_stay_a_list():
    parsed = parse_suite(suite(check(for_each="t", sql="SELECT count(*) FROM {item}"), params={"t": ["a"], "x": 1}))

    assert parsed.resolve_params({"x": 2}) == {"t": ["a"], "x": 2}
    with pytest.raises(CheckFailedError, match="parameter 't' is used by for_each"):
        parsed.resolve_params({"t": "a; DROP TABLE users"})


# --- statements -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,count",
    [
        ("SELECT 1", 1),
        ("SELECT 1;", 1),
        ("SELECT ';' AS semi", 1),
        ('SELECT 1 AS "a;b"', 1),
        ("SELECT 'it''s; fine'", 1),
        ("SELECT $$ ; $$, $tag$ ; $tag$", 1),
        ("SELECT 1 -- trailing; comment", 1),
        ("SELECT 1 /* ; */", 1),
        ("SELECT 1; -- only a comment after", 1),
        ("SELECT 1; COMMIT", 2),
        ("COMMIT; INSERT INTO t VALUES (1)", 2),
    ],
)
def test_split_statements_counts_only_real_separators(text, count):
    assert len(split_statements(text)) == count


# --- expectations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,observation,met",
    [
        ({"rows": 0}, obs(rows=[]), True),
        ({"rows": 0}, obs(rows=[("users",)]), False),
        ({"rows": 1}, obs(rows=[("a",)]), True),
        ({"value": 0}, obs(0), True),
        ({"value": 0}, obs(3), False),
        ({"value": 0}, obs(rows=[]), False),
        ({"value": 1}, obs(decimal.Decimal("1.000")), True),
        ({"value": "006"}, obs("006"), True),
        ({"value": "006"}, obs("005"), False),
        ({"value": "00000000-0000-0000-0000-000000000001"}, obs(uuid.UUID(int=1)), True),
        ({"value": 1}, obs(True), False),
        ({"min": 15}, obs(16), True),
        ({"min": 15}, obs(15), True),
        ({"min": 15}, obs(14), False),
        ({"min": 15}, obs("16"), False),
        ({"min": 15}, obs(rows=[]), False),
        ({"max": 2}, obs(3), False),
        ({"min": 1, "max": 3}, obs(2), True),
        (True, obs(True), True),
        (True, obs(False), False),
        (True, obs(rows=[(None,)]), False),
        ("true", obs(True), True),
        ({"true": True}, obs(1), False),
    ],
)
def test_expectation_evaluate(raw, observation, met):
    assert parse_expectation(raw, "e").evaluate(observation)[0] is met


def test_expectation_detail_shows_expected_got_and_sample_rows():
    expectation = parse_expectation({"rows": 0}, "e")
    observation = Observation(row_count=7, value="users", columns=("t",), rows=(("users",), ("shipments",)))

    met, detail = expectation.evaluate(observation)

    assert not met
    assert detail == "expected 0 rows, got 7: users, shipments and 5 more"


def test_expectation_detail_for_values():
    assert parse_expectation({"min": 16}, "e").evaluate(obs(15))[1] == "expected at least 16, got 15"
    assert parse_expectation({"value": 0}, "e").evaluate(obs(rows=[]))[1] == "expected value 0, got no row"
    assert parse_expectation(True, "e").evaluate(obs(rows=[(None,)]))[1] == "expected true, got null"


def test_values_equal_numbers_and_text():
    assert values_equal(decimal.Decimal("2"), 2.0)
    assert values_equal(5, "5")
    assert not values_equal(None, "None")
    assert not values_equal(True, 1)


# --- status decision ------------------------------------------------------------------------------

MET = ItemOutcome(None, met=True, detail="ok")
UNMET = ItemOutcome(None, met=False, detail="expected 0 rows, got 1")
TOLERATED = ItemOutcome(None, met=False, detail="expected at least 16, got 15", tolerated=True)
ERRORED = ItemOutcome(None, met=False, detail="error", error='relation "organizations" does not exist')


@pytest.mark.parametrize(
    "outcomes,severity,incomplete,status",
    [
        ([MET], "fail", False, "pass"),
        ([MET], "fail", True, "pass"),
        ([UNMET], "fail", False, "fail"),
        ([UNMET], "warn", False, "warn"),
        ([UNMET], "fail", True, "warn"),
        ([ERRORED], "fail", False, "fail"),
        ([ERRORED], "warn", False, "fail"),
        ([ERRORED], "fail", True, "warn"),
        ([TOLERATED], "fail", False, "warn"),
        ([TOLERATED, UNMET], "fail", False, "fail"),
        ([MET, MET, UNMET], "fail", False, "fail"),
        ([MET, ERRORED, UNMET], "warn", False, "fail"),
    ],
)
def test_decide_status(outcomes, severity, incomplete, status):
    assert decide_status(outcomes, severity, incomplete) == status


def test_explain_incomplete_names_reason_and_observation():
    assert explain([ERRORED], "warn", True, "revision 005 has not run") == (
        'incomplete: revision 005 has not run (error: relation "organizations" does not exist)'
    )


def test_explain_for_each_names_items_and_truncates():
    outcomes = [ItemOutcome(f"t{n}", met=False, detail="expected value 0, got 1") for n in range(6)]

    reason = explain(outcomes, "fail", False, "")

    assert reason.startswith("t0: expected value 0, got 1; t1: ")
    assert reason.endswith("and 3 more")


def test_explain_tolerated_says_so():
    assert explain([TOLERATED], "warn", False, "") == "expected at least 16, got 15 (tolerated)"


def test_explain_tolerated_with_message_says_why():
    reason = explain([TOLERATED], "warn", False, "", "one index is missing")
    assert reason == "expected at least 16, got 15 (tolerated: one index is missing)"


# --- results --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "counts,line",
    [
        ((12, 0, 0), "12 passed, 0 warnings, 0 failed"),
        ((7, 5, 0), "7 passed, 5 warnings, 0 failed"),
        ((1, 1, 1), "1 passed, 1 warnings, 1 failed"),
    ],
)
def test_summary_line_fixed_wording(counts, line):
    assert summary_line(*counts) == line


def _result(check_id: str, status: str, message: str = "Do this.") -> CheckResult:
    return CheckResult(
        id=check_id,
        name=f"Check {check_id}",
        status=status,
        severity="fail",
        expected={"rows": 0},
        observed={"row_count": 1, "rows": [{"x": 1}]},
        reason="expected 0 rows, got 1",
        message=message,
        duration_ms=1.0,
    )


def test_suite_result_counts_and_module_shape():
    result = SuiteResult(
        suite="s",
        results=(_result("1", "pass"), _result("2", "warn"), _result("3", "fail")),
        queries=("SELECT 1",),
        collected={"baseline": {"users": 1}},
    )

    data = result.as_dict()

    assert data["changed"] is False
    assert data["msg"] == "1 passed, 1 warnings, 1 failed"
    assert data["checks"]["summary"] == data["msg"]
    assert (data["checks"]["passed"], data["checks"]["warnings"], data["checks"]["failed"]) == (1, 1, 1)
    assert [r["id"] for r in data["checks"]["results"]] == ["1", "2", "3"]
    assert data["checks"]["collected"] == {"baseline": {"users": 1}}
    assert data["queries"] == ["SELECT 1"]
    json.dumps(data)


def test_failure_message_lists_every_failed_check_only():
    result = SuiteResult(
        suite="s", results=(_result("1", "fail"), _result("2", "warn"), _result("3", "fail", "")), target="u@h:5432/db"
    )

    message = result.failure_message()

    assert message.startswith("Validation suite 's' on u@h:5432/db did not pass: 0 passed, 1 warnings, 2 failed.")
    assert "[1] Check 1 (fail): expected 0 rows, got 1. Do this." in message
    assert "[3] Check 3 (fail)" in message
    assert "Check 2" not in message


def test_failure_message_warns_only_with_fail_on_warn():
    result = SuiteResult(suite="s", results=(_result("1", "pass"), _result("2", "warn")))

    assert result.failure_message() is None
    assert "[2] Check 2 (warn)" in result.failure_message(fail_on_warn=True)


# --- JSON safety ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,expected",
    [
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (datetime.datetime(2026, 1, 6, 12, 0, tzinfo=datetime.UTC), "2026-01-06T12:00:00+00:00"),
        (datetime.date(2026, 1, 6), "2026-01-06"),
        (datetime.timedelta(seconds=90), 90.0),
        (decimal.Decimal("12"), 12),
        (decimal.Decimal("1.25"), 1.25),
        (decimal.Decimal("NaN"), "NaN"),
        (float("inf"), "inf"),
        (b"\x01\xff", "01ff"),
        (memoryview(b"\x02"), "02"),
        ({"k": (uuid.UUID(int=2), None)}, {"k": ["00000000-0000-0000-0000-000000000002", None]}),
        (True, True),
        (object, str(object)),
    ],
)
def test_json_safe_converts(value, expected):
    converted = json_safe(value)

    assert converted == expected
    json.dumps(converted)


def test_observation_as_dict_json_safe_for_values_and_rows():
    observation = Observation(
        row_count=1, value=uuid.UUID(int=1), columns=("id", "n"), rows=((uuid.UUID(int=1), decimal.Decimal("3")),)
    )

    assert observation.as_dict("value") == {
        "value": "00000000-0000-0000-0000-000000000001",
        "row": {"id": "00000000-0000-0000-0000-000000000001", "n": 3},
    }
    assert observation.as_dict("rows") == {
        "row_count": 1,
        "rows": [{"id": "00000000-0000-0000-0000-000000000001", "n": 3}],
    }
