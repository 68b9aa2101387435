"""tools.seed against a real PostgreSQL: the generator the migration is rehearsed on."""

# The en dashes in names are real data, not typos.
# ruff: noqa: RUF001

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from psycopg2 import sql

from ansible_collections.tracehub.deploy.plugins.module_utils.pg import connect
from tools.seed import ENUM_COLUMNS, ENUMS, PER_SCALE, TENANT_TABLES, SeedError, planned_counts, seed

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _query(conn, statement, params=None):
    connection = connect(conn)
    try:
        with connection.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall()
    finally:
        connection.close()


def _table_digests(conn) -> dict[str, str]:
    """md5 of every tenant table's full content, ordered by id."""
    digests = {}
    connection = connect(conn)
    try:
        with connection.cursor() as cur:
            for table in TENANT_TABLES:
                cur.execute(
                    sql.SQL("SELECT md5(string_agg(t::text, E'\\n' ORDER BY t.id)) FROM {} AS t").format(
                        sql.Identifier(table)
                    )
                )
                digests[table] = cur.fetchone()[0]
    finally:
        connection.close()
    return digests


@pytest.fixture
def second_db(pg_server, fresh_db):
    """Another empty database on the same server, same owner."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg_server.ensure_application_database(name, fresh_db.user, fresh_db.password)
    yield fresh_db.with_db(name)
    pg_server.drop_database(name)


def test_seed_empty_database_fills_nine_tables_at_revision_002(fresh_db):
    counts = seed(fresh_db)

    assert counts == planned_counts(1)
    assert counts["users"] == 45
    assert counts["shipments"] == 23
    assert counts["documents"] == 89
    assert all(counts[table] > 0 for table in TENANT_TABLES)
    assert _query(fresh_db, "SELECT version_num FROM alembic_version") == [("002",)]


def test_seed_every_enum_value_used_including_002_document_types(fresh_db):
    seed(fresh_db)

    for (table, column), type_name in ENUM_COLUMNS.items():
        labels = [
            row[0]
            for row in _query(
                fresh_db,
                "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid WHERE t.typname = %s "
                "ORDER BY e.enumsortorder",
                (type_name,),
            )
        ]
        used = {
            row[0]
            for row in _query(
                fresh_db,
                sql.SQL("SELECT DISTINCT {}::text FROM {} WHERE {} IS NOT NULL").format(
                    sql.Identifier(column), sql.Identifier(table), sql.Identifier(column)
                ),
            )
        }
        assert labels == ENUMS[type_name], f"the generator's {type_name} list differs from the schema"
        assert used == set(labels), f"{table}.{column} misses {set(labels) - used}"
    assert {"SANITARY_CERTIFICATE", "EXPORT_DECLARATION"} <= set(ENUMS["documenttype"])


def test_seed_nullable_columns_hold_nulls(fresh_db):
    seed(fresh_db)

    nullable = _query(
        fresh_db,
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND is_nullable = 'YES' AND table_name = ANY(%s) ORDER BY 1, 2",
        (list(TENANT_TABLES),),
    )
    assert len(nullable) > 50
    without_nulls = []
    for table, column in nullable:
        (count,) = _query(
            fresh_db,
            sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL").format(sql.Identifier(table), sql.Identifier(column)),
        )[0]
        if count == 0:
            without_nulls.append(f"{table}.{column}")
    assert not without_nulls, ", ".join(without_nulls)


def test_seed_non_ascii_text_and_jsonb_round_trip(fresh_db):
    seed(fresh_db)

    names = {row[0] for row in _query(fresh_db, "SELECT name FROM parties")}
    assert "Société Ivoirienne de Transit" in names
    assert "Ghana Cocoa Board – Kumasi" in names
    assert ("Côte d'Ivoire",) in _query(fresh_db, "SELECT DISTINCT country FROM origins")
    assert ("Lagos – Apapa",) in _query(fresh_db, "SELECT DISTINCT pol_name FROM shipments")
    assert ("Hamburg – Waltershof",) in _query(fresh_db, "SELECT DISTINCT pod_name FROM shipments")
    places = {row[0] for row in _query(fresh_db, "SELECT raw_data->'location'->>'name' FROM container_events")}
    assert "Hamburg – Waltershof" in places
    (details,) = _query(fresh_db, "SELECT details FROM audit_logs WHERE details IS NOT NULL ORDER BY id LIMIT 1")[0]
    assert set(details) == {"request_id", "changes", "note", "system"}
    assert _query(fresh_db, "SELECT count(*) FROM audit_logs WHERE user_id IS NULL")[0][0] > 0


def test_seed_same_seed_same_data_other_seed_other_data(fresh_db, second_db, pg_server):
    first = seed(fresh_db, seed=8)
    second = seed(second_db, seed=8)

    assert first == second
    assert _table_digests(fresh_db) == _table_digests(second_db)

    third_name = f"t_{uuid.uuid4().hex[:12]}"
    pg_server.ensure_application_database(third_name, fresh_db.user, fresh_db.password)
    try:
        third = fresh_db.with_db(third_name)
        assert seed(third, seed=9) == first
        assert _table_digests(third)["shipments"] != _table_digests(fresh_db)["shipments"]
    finally:
        pg_server.drop_database(third_name)


def test_seed_non_empty_database_refused(fresh_db):
    seed(fresh_db)

    with pytest.raises(SeedError, match=r"not empty .*Alembic revision 002"):
        seed(fresh_db)
    assert _query(fresh_db, "SELECT count(*) FROM users")[0][0] == 45


def test_seed_database_with_any_table_refused(fresh_db):
    connection = connect(fresh_db)
    with connection.cursor() as cur:
        cur.execute("CREATE TABLE leftover (x int)")
    connection.commit()
    connection.close()

    with pytest.raises(SeedError, match="leftover"):
        seed(fresh_db)
    assert _query(fresh_db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")[0][0] == 1


def test_seed_scale_two_doubles_per_shipment_tables(fresh_db):
    counts = seed(fresh_db, scale=2)

    assert counts["users"] == 45
    for table, per_scale in PER_SCALE.items():
        assert counts[table] == 2 * per_scale
    # Children spread over all shipments, not just the first 23.
    assert _query(fresh_db, "SELECT count(DISTINCT shipment_id) FROM documents")[0][0] == 46


def test_seed_cli_password_from_environment_prints_counts(fresh_db):
    env = dict(os.environ, PGPASSWORD=fresh_db.password)
    argv = [
        sys.executable,
        "-m",
        "tools.seed",
        "--host",
        fresh_db.host,
        "--port",
        str(fresh_db.port),
        "--user",
        fresh_db.user,
        "--dbname",
        fresh_db.dbname,
        "--sslmode",
        "disable",
    ]

    result = subprocess.run(argv, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, check=False, timeout=120)

    assert result.returncode == 0, result.stderr
    assert "audit_logs" in result.stdout and "600" in result.stdout
    assert "Seeded" in result.stdout
    assert fresh_db.password not in result.stdout + result.stderr

    again = subprocess.run(argv, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, check=False, timeout=120)
    assert again.returncode == 1
    assert "not empty" in again.stderr and "Traceback" not in again.stderr
