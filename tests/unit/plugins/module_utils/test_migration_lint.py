"""migration_lint: every rule with a failing and a passing example, the SQL reader and acknowledgements."""

from __future__ import annotations

import types

import pytest

from ansible_collections.tracehub.deploy.plugins.module_utils import migration_lint as ml
from ansible_collections.tracehub.deploy.plugins.module_utils.errors import MigrationError

# A safe preamble: one transaction with a lock_timeout, as the project's online revisions render it.
TX = "BEGIN;\nSET LOCAL lock_timeout = '200ms';\n{body}\nCOMMIT;\n"


def _rules(sql: str, acknowledged: dict[str, str] | None = None) -> list[str]:
    return [f.rule for f in ml.lint_sql("009", sql, acknowledged) if not f.acknowledged]


# --- one failing and one passing example per rule -------------------------------------------------------

CASES = [
    (
        "concurrent-index",
        TX.format(body="CREATE INDEX ix_shipments_eta ON shipments (eta);"),
        "SET lock_timeout = '60s';\nCREATE INDEX CONCURRENTLY IF NOT EXISTS ix_shipments_eta ON shipments (eta);",
    ),
    (
        "concurrent-index",
        TX.format(body="ALTER TABLE shipments ADD CONSTRAINT uq_ref UNIQUE (organization_id, reference);"),
        "CREATE UNIQUE INDEX CONCURRENTLY uq_ref ON shipments (organization_id, reference);\n"
        + TX.format(body="ALTER TABLE shipments ADD CONSTRAINT uq_ref UNIQUE USING INDEX uq_ref;"),
    ),
    (
        "not-null-without-check",
        TX.format(body="ALTER TABLE users ALTER COLUMN organization_id SET NOT NULL;"),
        TX.format(body="ALTER TABLE users ADD CONSTRAINT ck_org CHECK (organization_id IS NOT NULL) NOT VALID;")
        + TX.format(body="ALTER TABLE users VALIDATE CONSTRAINT ck_org;")
        + TX.format(body="ALTER TABLE users ALTER COLUMN organization_id SET NOT NULL;"),
    ),
    (
        "constraint-not-valid",
        TX.format(
            body="ALTER TABLE users ADD CONSTRAINT fk_users_org FOREIGN KEY (organization_id) "
            "REFERENCES organizations (id);"
        ),
        TX.format(
            body="ALTER TABLE users ADD CONSTRAINT fk_users_org FOREIGN KEY (organization_id) "
            "REFERENCES organizations (id) NOT VALID;"
        )
        + TX.format(body="ALTER TABLE users VALIDATE CONSTRAINT fk_users_org;"),
    ),
    (
        "constraint-not-valid",
        TX.format(body="ALTER TABLE products ADD CONSTRAINT ck_qty CHECK (quantity_net_kg >= 0);"),
        TX.format(body="ALTER TABLE products ADD CONSTRAINT ck_qty CHECK (quantity_net_kg >= 0) NOT VALID;"),
    ),
    (
        "table-rewrite",
        TX.format(body="ALTER TABLE shipments ALTER COLUMN reference TYPE varchar(80);"),
        TX.format(body="ALTER TABLE shipments ADD COLUMN reference_v2 varchar(80);"),
    ),
    (
        "table-rewrite",
        TX.format(body="ALTER TABLE audit_logs ADD COLUMN trace_id uuid DEFAULT gen_random_uuid();"),
        TX.format(body="ALTER TABLE audit_logs ADD COLUMN source varchar(20) DEFAULT 'v1.3';"),
    ),
    (
        "multi-table-ddl",
        TX.format(
            body="ALTER TABLE users ADD COLUMN organization_id uuid;\n"
            "ALTER TABLE shipments ADD COLUMN organization_id uuid;"
        ),
        TX.format(body="ALTER TABLE users ADD COLUMN organization_id uuid;")
        + TX.format(body="ALTER TABLE shipments ADD COLUMN organization_id uuid;"),
    ),
    (
        "unbatched-dml",
        TX.format(body="UPDATE shipments SET organization_id = '00000000-0000-0000-0000-000000000001';"),
        "DO $$ DECLARE done bigint; BEGIN LOOP UPDATE shipments SET organization_id = "
        "'00000000-0000-0000-0000-000000000001' WHERE id IN (SELECT id FROM shipments WHERE organization_id IS NULL "
        "LIMIT 2000); GET DIAGNOSTICS done = ROW_COUNT; COMMIT; EXIT WHEN done = 0; END LOOP; END $$;",
    ),
    (
        "unbatched-dml",
        TX.format(body="DELETE FROM audit_logs WHERE created_at < now() - interval '1 year';"),
        TX.format(
            body="DELETE FROM audit_logs WHERE id IN (SELECT id FROM audit_logs WHERE created_at < "
            "now() - interval '1 year' LIMIT 5000);"
        ),
    ),
    (
        "lock-timeout",
        "BEGIN;\nALTER TABLE users ADD COLUMN organization_id uuid;\nCOMMIT;",
        "BEGIN;\nSET LOCAL lock_timeout = '200ms';\nALTER TABLE users ADD COLUMN organization_id uuid;\nCOMMIT;",
    ),
    (
        "lock-timeout",
        "BEGIN;\nCREATE TABLE memberships (id uuid PRIMARY KEY, user_id uuid REFERENCES users (id));\nCOMMIT;",
        "SET lock_timeout = '200ms';\nBEGIN;\nCREATE TABLE memberships (id uuid PRIMARY KEY, "
        "user_id uuid REFERENCES users (id));\nCOMMIT;",
    ),
]


@pytest.mark.parametrize(("rule", "unsafe", "safe"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_lint_rule_unsafe_example_flagged_and_safe_example_passes(rule, unsafe, safe):
    assert rule in _rules(unsafe)
    assert _rules(safe) == []


def test_lint_every_rule_has_an_example():
    assert {c[0] for c in CASES} == set(ml.RULES)


def test_lint_finding_names_revision_statement_and_alternative():
    (finding,) = [
        f
        for f in ml.lint_sql("004", TX.format(body="CREATE INDEX ix_a ON shipments (eta);"))
        if f.rule == "concurrent-index"
    ]
    assert finding.revision == "004" and finding.table == "shipments"
    assert finding.statement == "CREATE INDEX ix_a ON shipments (eta)"
    assert "Revision 004" in finding.message
    assert "CONCURRENTLY" in finding.alternative


# --- what the rules must not flag ------------------------------------------------------------------------


def test_lint_tables_created_in_the_revision_are_exempt():
    sql = (
        "BEGIN;\nCREATE TABLE organizations (id uuid PRIMARY KEY, slug text);\n"
        "CREATE UNIQUE INDEX ix_organizations_slug ON organizations (slug);\n"
        "ALTER TABLE organizations ADD CONSTRAINT ck_slug CHECK (slug <> '');\n"
        "UPDATE organizations SET slug = lower(slug);\nCOMMIT;"
    )
    assert _rules(sql) == []


def test_lint_alembic_version_stamp_is_not_flagged():
    assert (
        _rules(
            "BEGIN;\nUPDATE alembic_version SET version_num='006' WHERE alembic_version.version_num = '005';\nCOMMIT;"
        )
        == []
    )


def test_lint_lock_timeout_reset_or_zero_counts_as_missing():
    assert "lock-timeout" in _rules(
        "SET lock_timeout = '1s';\nRESET lock_timeout;\nBEGIN;\nALTER TABLE users ADD x int;\nCOMMIT;"
    )
    assert "lock-timeout" in _rules("BEGIN;\nSET LOCAL lock_timeout = 0;\nALTER TABLE users ADD x int;\nCOMMIT;")


def test_lint_local_lock_timeout_ends_with_its_transaction():
    sql = TX.format(body="SELECT 1;") + "BEGIN;\nALTER TABLE users ADD COLUMN x int;\nCOMMIT;"
    assert _rules(sql) == ["lock-timeout"]


def test_lint_validate_constraint_needs_no_lock_timeout():
    assert _rules("ALTER TABLE users VALIDATE CONSTRAINT fk_users_org;") == []


def test_lint_quotes_and_comments_do_not_fool_the_reader():
    sql = (
        "-- CREATE INDEX ix_fake ON users (email);\n"
        "/* UPDATE users SET x = 1; */\n"
        "BEGIN;\nSET LOCAL lock_timeout = '200ms';\n"
        "INSERT INTO audit_logs (action, resource_type) "
        "VALUES ('UPDATE users SET a = 1; CREATE INDEX x ON users', 'x');\n"
        "COMMIT;"
    )
    assert _rules(sql) == []


# --- reader -----------------------------------------------------------------------------------------------


def test_split_statements_keeps_dollar_quoted_bodies_whole():
    sql = "SELECT 1;\nDO $$ BEGIN PERFORM 1; PERFORM 2; END $$;\nSELECT ';' AS semi;"
    assert ml.split_statements(sql) == [
        "SELECT 1",
        "DO $$ BEGIN PERFORM 1; PERFORM 2; END $$",
        "SELECT ';' AS semi",
    ]


# --- acknowledgements -------------------------------------------------------------------------------------


def test_lint_acknowledged_rule_is_reported_but_does_not_block():
    findings = ml.lint_sql(
        "009",
        TX.format(body="UPDATE users SET is_active = true;"),
        {"unbatched-dml": "users holds 45 rows in every environment"},
    )
    assert [(f.rule, f.acknowledged, f.reason) for f in findings] == [
        ("unbatched-dml", True, "users holds 45 rows in every environment")
    ]


def test_acknowledgements_without_reason_or_unknown_rule_are_refused():
    with pytest.raises(MigrationError, match="without a reason"):
        ml.acknowledgements(types.SimpleNamespace(MIGRATION_LINT_ACKNOWLEDGED={"unbatched-dml": " "}), "009")
    with pytest.raises(MigrationError, match="unknown lint rule"):
        ml.acknowledgements(types.SimpleNamespace(MIGRATION_LINT_ACKNOWLEDGED={"no-such-rule": "x"}), "009")
    assert ml.acknowledgements(types.SimpleNamespace(), "009") == {}


def test_report_passes_only_without_unacknowledged_findings():
    ok = ml.Finding("unbatched-dml", "009", "UPDATE users ...", "users", "m", "a", acknowledged=True, reason="r")
    bad = ml.Finding("lock-timeout", "009", "ALTER TABLE users ...", "users", "m", "a")
    assert ml.LintReport("db", "/x", "008", "009", ("009",), (ok,)).passed is True
    report = ml.LintReport("db", "/x", "008", "009", ("009",), (ok, bad))
    assert report.passed is False
    assert report.as_dict()["by_rule"] == {"lock-timeout": 1}
    assert "1 unsafe statement(s)" in ml.describe(report) and "MIGRATION_LINT_ACKNOWLEDGED" in ml.describe(report)
