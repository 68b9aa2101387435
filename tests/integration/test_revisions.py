"""Alembic revisions 001-006 against a real PostgreSQL, on data from tools.seed.

Every revision goes up and down with the data preserved and the schema restored exactly, refuses
what it must refuse, and renders offline SQL.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import sqlalchemy
from alembic.config import Config
from psycopg2 import sql

from alembic import command
from ansible_collections.tracehub.deploy.plugins.module_utils.pg import ConnInfo, connect
from tools.seed import TENANT_TABLES, seed

ALEMBIC_DIR = Path(__file__).resolve().parents[2] / "alembic"
VIBOTAJ = "00000000-0000-0000-0000-000000000001"
STEPS = ("003", "004", "005", "006")
COMPOSITE_INDEXES = {
    "ix_users_organization_id_email": ("users", "organization_id, email"),
    "ix_users_organization_id_is_active": ("users", "organization_id, is_active"),
    "ix_shipments_organization_id_status": ("shipments", "organization_id, status"),
    "ix_shipments_organization_id_reference": ("shipments", "organization_id, reference"),
    "ix_shipments_organization_id_created_at": ("shipments", "organization_id, created_at"),
    "ix_documents_organization_id_shipment_id": ("documents", "organization_id, shipment_id"),
    "ix_documents_organization_id_document_type": ("documents", "organization_id, document_type"),
    "ix_products_organization_id_shipment_id": ("products", "organization_id, shipment_id"),
    "ix_parties_organization_id_party_type": ("parties", "organization_id, party_type"),
    "ix_origins_organization_id_shipment_id": ("origins", "organization_id, shipment_id"),
    "ix_container_events_organization_id_shipment_id": ("container_events", "organization_id, shipment_id"),
    "ix_container_events_organization_id_event_time": ("container_events", "organization_id, event_time"),
    "ix_notifications_organization_id_user_id": ("notifications", "organization_id, user_id"),
    "ix_notifications_organization_id_read": ("notifications", "organization_id, read"),
    "ix_audit_logs_organization_id_user_id": ("audit_logs", "organization_id, user_id"),
    "ix_audit_logs_organization_id_resource_type": ("audit_logs", "organization_id, resource_type"),
}
ROLE_MAPPING = {
    "admin": "owner",
    "compliance": "admin",
    "logistics_agent": "manager",
    "buyer": "member",
    "supplier": "member",
    "viewer": "viewer",
}


# --- helpers -----------------------------------------------------------------------------------------------


def _config(conn: ConnInfo | None = None, output: io.StringIO | None = None) -> Config:
    config = Config(output_buffer=output) if output is not None else Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    if conn is not None:
        config.attributes["url"] = conn.sqlalchemy_url()
    return config


def _query(conn: ConnInfo, statement, params=None) -> list[tuple]:
    connection = connect(conn)
    try:
        with connection.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall()
    finally:
        connection.close()


def _execute(conn: ConnInfo, statement, params=None) -> None:
    connection = connect(conn)
    try:
        with connection.cursor() as cur:
            cur.execute(statement, params)
        connection.commit()
    finally:
        connection.close()


def _revision(conn: ConnInfo) -> str | None:
    rows = _query(conn, "SELECT version_num FROM alembic_version")
    return rows[0][0] if rows else None


def _columns(conn: ConnInfo) -> dict[str, list[str]]:
    """Column names of the nine tenant tables, as they are now."""
    rows = _query(
        conn,
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = ANY(%s) ORDER BY table_name, column_name",
        (list(TENANT_TABLES),),
    )
    columns: dict[str, list[str]] = {}
    for table, column in rows:
        columns.setdefault(table, []).append(column)
    return columns


def _data(conn: ConnInfo, columns: dict[str, list[str]]) -> dict[str, tuple[int, str]]:
    """(row count, md5 of the rows ordered by id over ``columns``) of each table."""
    digests = {}
    for table, names in columns.items():
        row = sql.SQL("ROW({})::text").format(sql.SQL(", ").join(sql.Identifier(n) for n in names))
        digests[table] = _query(
            conn,
            sql.SQL("SELECT count(*), md5(coalesce(string_agg({row}, E'\\n' ORDER BY id), '')) FROM {table}").format(
                row=row, table=sql.Identifier(table)
            ),
        )[0]
    return digests


def _schema(conn: ConnInfo) -> dict[str, list[tuple]]:
    """Everything a revision may change in the catalog: columns, indexes, constraints, enum types."""
    return {
        "columns": _query(
            conn,
            "SELECT table_name, column_name, data_type, udt_name, is_nullable, column_default, "
            "character_maximum_length, numeric_precision, numeric_scale FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY 1, 2",
        ),
        "indexes": _query(
            conn, "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2"
        ),
        "constraints": _query(
            conn,
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2",
        ),
        "enums": _query(
            conn,
            "SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_type t "
            "JOIN pg_enum e ON e.enumtypid = t.oid WHERE t.typnamespace = 'public'::regnamespace "
            "GROUP BY t.typname ORDER BY 1",
        ),
    }


@pytest.fixture
def seeded_db(fresh_db) -> ConnInfo:
    """A fresh database at 002 with the scale-1 production-like data."""
    seed(fresh_db)
    return fresh_db


# --- up and down with data preserved -----------------------------------------------------------------------


def test_revisions_002_to_006_and_back_step_by_step_preserve_data_and_schema(seeded_db):
    config = _config(seeded_db)
    columns_at_002 = _columns(seeded_db)
    data_at_002 = _data(seeded_db, columns_at_002)
    schema_at_002 = _schema(seeded_db)

    for step in STEPS:
        command.upgrade(config, step)
        assert _revision(seeded_db) == step
        assert _data(seeded_db, columns_at_002) == data_at_002, f"data changed by upgrade to {step}"
    for step in ("005", "004", "003", "002"):
        command.downgrade(config, step)
        assert _revision(seeded_db) == step
        assert _data(seeded_db, columns_at_002) == data_at_002, f"data changed by downgrade to {step}"

    assert _columns(seeded_db) == columns_at_002
    assert _schema(seeded_db) == schema_at_002


@pytest.mark.parametrize("step", STEPS)
def test_revision_single_step_up_down_up_restores_previous_state(seeded_db, step):
    config = _config(seeded_db)
    previous = f"{int(step) - 1:03d}"
    command.upgrade(config, previous)
    columns_before = _columns(seeded_db)
    data_before = _data(seeded_db, columns_before)
    schema_before = _schema(seeded_db)

    command.upgrade(config, step)
    command.downgrade(config, previous)

    assert _revision(seeded_db) == previous
    assert _schema(seeded_db) == schema_before
    assert _data(seeded_db, columns_before) == data_before
    command.upgrade(config, step)
    assert _revision(seeded_db) == step


def test_revisions_base_to_head_and_back_leave_nothing_behind(fresh_db):
    config = _config(fresh_db)

    command.upgrade(config, "head")
    assert _revision(fresh_db) == "006"
    command.downgrade(config, "base")

    assert _revision(fresh_db) is None
    tables = [row[0] for row in _query(fresh_db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    assert tables == ["alembic_version"]
    assert _schema(fresh_db)["enums"] == []
    command.upgrade(config, "head")
    assert _revision(fresh_db) == "006"


# --- the schema at 006 carries the spec's exact names ---------------------------------------------------


def test_revision_006_schema_has_spec_names(seeded_db):
    command.upgrade(_config(seeded_db), "006")

    indexes = dict(_query(seeded_db, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"))
    for name, (table, cols) in COMPOSITE_INDEXES.items():
        assert name in indexes, f"missing index {name}"
        assert f"ON public.{table} USING btree ({cols})" in indexes[name]
    assert len([n for n in indexes if n.startswith("ix_") and "_organization_id_" in n]) == 16
    for table in TENANT_TABLES:
        assert f"ix_{table}_organization_id" in indexes
    assert indexes["ix_organizations_slug"].startswith("CREATE UNIQUE INDEX")
    assert indexes["ix_invitations_token_hash"].startswith("CREATE UNIQUE INDEX")

    fks = _query(
        seeded_db,
        "SELECT conrelid::regclass::text, conname, confrelid::regclass::text, confdeltype FROM pg_constraint "
        "WHERE contype = 'f' AND conname LIKE 'fk\\_%\\_organization\\_id' ORDER BY 1",
    )
    assert sorted(row[0] for row in fks) == sorted(TENANT_TABLES)
    assert all(conname == f"fk_{table}_organization_id" for table, conname, _target, _deltype in fks)
    assert {(target, deltype) for _table, _conname, target, deltype in fks} == {("organizations", "r")}

    unique = _query(
        seeded_db,
        "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conname = 'uq_shipments_organization_reference' AND contype = 'u'",
    )
    assert unique == [("shipments", "UNIQUE (organization_id, reference)")]
    assert _query(seeded_db, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'uq_org_user'") == [
        ("UNIQUE (organization_id, user_id)",)
    ]

    nullable = _query(
        seeded_db,
        "SELECT table_name, is_nullable FROM information_schema.columns "
        "WHERE table_schema = 'public' AND column_name = 'organization_id' AND table_name = ANY(%s)",
        (list(TENANT_TABLES),),
    )
    assert sorted(nullable) == sorted((table, "NO") for table in TENANT_TABLES)


# --- 005: VIBOTAJ owns everything, memberships by role ---------------------------------------------------


def test_revision_005_maps_each_user_role_to_org_role(seeded_db):
    command.upgrade(_config(seeded_db), "005")

    rows = _query(
        seeded_db,
        "SELECT u.email, u.role::text, m.role::text, m.status::text, m.organization_id::text "
        "FROM users u LEFT JOIN org_memberships m ON m.user_id = u.id ORDER BY u.email",
    )
    assert len(rows) == 45
    assert {user_role for _email, user_role, _org_role, _status, _org in rows} == set(ROLE_MAPPING)
    for email, user_role, org_role, status, org in rows:
        assert (org_role, status, org) == (ROLE_MAPPING[user_role], "active", VIBOTAJ), email
    assert _query(
        seeded_db,
        "SELECT name, slug, type::text, country, subscription_tier FROM organizations",
    ) == [("VIBOTAJ GmbH", "vibotaj", "internal", "DE", "enterprise")]
    for table in TENANT_TABLES:
        owners = _query(
            seeded_db, sql.SQL("SELECT DISTINCT organization_id::text FROM {}").format(sql.Identifier(table))
        )
        assert owners == [(VIBOTAJ,)], table


def test_revision_005_existing_vibotaj_org_and_membership_are_kept(seeded_db):
    config = _config(seeded_db)
    command.upgrade(config, "004")
    _execute(
        seeded_db,
        "INSERT INTO organizations (id, name, slug, type) VALUES (%s, 'VIBOTAJ GmbH', 'vibotaj', 'internal')",
        (VIBOTAJ,),
    )
    _execute(
        seeded_db, "UPDATE users SET organization_id = %s WHERE email = (SELECT min(email) FROM users)", (VIBOTAJ,)
    )
    _execute(
        seeded_db,
        "INSERT INTO org_memberships (organization_id, user_id, role) "
        "SELECT %s, id, 'viewer' FROM users WHERE email = (SELECT min(email) FROM users)",
        (VIBOTAJ,),
    )

    command.upgrade(config, "005")

    assert _query(seeded_db, "SELECT count(*) FROM organizations")[0][0] == 1
    assert _query(seeded_db, "SELECT count(*) FROM org_memberships")[0][0] == 45
    assert _query(
        seeded_db,
        "SELECT m.role::text FROM org_memberships m JOIN users u ON u.id = m.user_id "
        "WHERE u.email = (SELECT min(email) FROM users)",
    ) == [("viewer",)]


def test_revision_005_downgrade_clears_only_what_it_set(seeded_db):
    config = _config(seeded_db)
    command.upgrade(config, "005")
    other = "00000000-0000-0000-0000-0000000000aa"
    _execute(
        seeded_db,
        "INSERT INTO organizations (id, name, slug, type) VALUES (%s, 'Hamburger Kakao-Kontor', 'hkk', 'customer')",
        (other,),
    )
    _execute(
        seeded_db,
        "INSERT INTO org_memberships (organization_id, user_id, role) "
        "SELECT %s, id, 'member' FROM users ORDER BY email LIMIT 2",
        (other,),
    )

    command.downgrade(config, "004")

    assert _query(seeded_db, "SELECT slug FROM organizations") == [("hkk",)]
    assert _query(seeded_db, "SELECT count(*), min(organization_id::text) FROM org_memberships") == [(2, other)]
    for table in TENANT_TABLES:
        assert (
            _query(
                seeded_db,
                sql.SQL("SELECT count(*) FROM {} WHERE organization_id IS NOT NULL").format(sql.Identifier(table)),
            )[0][0]
            == 0
        ), table


# --- refusals ------------------------------------------------------------------------------------------


def test_revision_006_tenant_row_without_organization_refused(seeded_db):
    config = _config(seeded_db)
    command.upgrade(config, "005")
    # v1.2's inserts (no organization_id) get 005's VIBOTAJ default: only an explicit NULL is unowned.
    _execute(
        seeded_db,
        "INSERT INTO products (shipment_id, name, organization_id) SELECT id, 'Cocoa beans (late entry)', NULL "
        "FROM shipments ORDER BY reference LIMIT 2",
    )
    _execute(
        seeded_db, "INSERT INTO audit_logs (action, resource_type, organization_id) VALUES ('login', 'user', NULL)"
    )

    with pytest.raises(RuntimeError, match=r"Cannot apply revision 006: 3 tenant rows .*products: 2, audit_logs: 1"):
        command.upgrade(config, "006")

    assert _revision(seeded_db) == "005"
    assert _query(seeded_db, "SELECT count(*) FROM pg_constraint WHERE conname LIKE 'fk\\_%'")[0][0] == 0
    _execute(seeded_db, "UPDATE products SET organization_id = %s WHERE organization_id IS NULL", (VIBOTAJ,))
    _execute(seeded_db, "UPDATE audit_logs SET organization_id = %s WHERE organization_id IS NULL", (VIBOTAJ,))
    command.upgrade(config, "006")
    assert _revision(seeded_db) == "006"


def test_revision_002_downgrade_refused_while_documents_use_added_types(seeded_db):
    config = _config(seeded_db)
    in_use = dict(
        _query(
            seeded_db,
            "SELECT document_type::text, count(*) FROM documents WHERE document_type::text IN ('SANITARY_CERTIFICATE', "
            "'EUDR_DUE_DILIGENCE', 'QUALITY_CERTIFICATE', 'EU_TRACES_CERTIFICATE', 'VETERINARY_HEALTH_CERTIFICATE', "
            "'EXPORT_DECLARATION') GROUP BY 1",
        )
    )
    assert len(in_use) == 6

    with pytest.raises(RuntimeError) as refused:
        command.downgrade(config, "001")

    message = str(refused.value)
    assert f"{sum(in_use.values())} documents rows use document types added by 002" in message
    for value, count in in_use.items():
        assert f"{value}: {count}" in message
    assert "re-type" in message and "delete them first" in message
    assert _revision(seeded_db) == "002"

    _execute(
        seeded_db, "UPDATE documents SET document_type = 'OTHER' WHERE document_type::text = ANY(%s)", (list(in_use),)
    )
    count_before = _query(seeded_db, "SELECT count(*) FROM documents")[0][0]
    command.downgrade(config, "001")

    assert _revision(seeded_db) == "001"
    labels = dict(_schema(seeded_db)["enums"])["documenttype"]
    assert len(labels) == 10 and "EXPORT_DECLARATION" not in labels
    assert _query(seeded_db, "SELECT count(*) FROM documents")[0][0] == count_before
    assert _query(seeded_db, "SELECT count(*) FROM pg_type WHERE typname = 'documenttype_002'")[0][0] == 0
    command.upgrade(config, "002")
    assert "EXPORT_DECLARATION" in dict(_schema(seeded_db)["enums"])["documenttype"]


# --- env.py: offline SQL and the URL contract ----------------------------------------------------------------


def test_env_offline_002_to_006_renders_sql_without_touching_the_database(fresh_db):
    output = io.StringIO()

    command.upgrade(_config(fresh_db, output), "002:006", sql=True)

    text = output.getvalue()
    # Each revision is wrapped in BEGIN/COMMIT; the online revisions also commit per table inside.
    assert text.count("BEGIN;") == text.count("COMMIT;") - text.count("COMMIT; EXIT WHEN") >= 4
    assert text.count("-- Running upgrade") == 4
    assert "CREATE TABLE organizations" in text
    assert "CREATE UNIQUE INDEX ix_organizations_slug" in text
    assert "ON CONFLICT DO NOTHING" in text and f"'{VIBOTAJ}'" in text
    assert "fk_audit_logs_organization_id" in text and "ON DELETE RESTRICT" in text
    assert "uq_shipments_organization_reference" in text
    assert "RAISE EXCEPTION 'Cannot apply revision 006" in text
    assert "UPDATE alembic_version SET version_num='006'" in text
    assert "%%" not in text
    assert _query(fresh_db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")[0][0] == 0


def test_env_caller_connection_is_used(fresh_db):
    engine = sqlalchemy.create_engine(fresh_db.sqlalchemy_url(), poolclass=sqlalchemy.pool.NullPool)
    config = _config()
    try:
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "003")
    finally:
        engine.dispose()

    assert _revision(fresh_db) == "003"


def test_env_url_from_environment_variable_with_special_password(fresh_db, monkeypatch):
    url = fresh_db.sqlalchemy_url().render_as_string(hide_password=False)
    monkeypatch.setenv("ALEMBIC_DATABASE_URL", url)

    command.upgrade(_config(), "001")

    assert _revision(fresh_db) == "001"
    assert "%" in fresh_db.password and "@" in fresh_db.password


def test_env_no_url_fails_naming_the_ways_to_pass_one(monkeypatch):
    monkeypatch.delenv("ALEMBIC_DATABASE_URL", raising=False)

    with pytest.raises(RuntimeError, match="ALEMBIC_DATABASE_URL"):
        command.upgrade(_config(), "head")
    with pytest.raises(RuntimeError, match=r"alembic\.ini deliberately holds no URL"):
        command.upgrade(_config(output=io.StringIO()), "head", sql=True)


def test_env_on_version_apply_callback_sees_each_step(seeded_db):
    steps = []
    config = _config(seeded_db)
    config.attributes["on_version_apply"] = lambda **kw: steps.append(kw["step"].up_revision_id)

    command.upgrade(config, "006")

    assert steps == ["003", "004", "005", "006"]
