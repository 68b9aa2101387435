"""Give every existing row to the VIBOTAJ organization and every user an active membership

Revision ID: 005
Revises: 004
Create Date: 2026-01-06 00:05:00+00:00

Idempotent: the organization is inserted with ON CONFLICT DO NOTHING, only rows without an organization
are claimed, and memberships that exist are left alone. Memberships created here get an id derived from
the user id (``md5('tracehub-005-membership:' || user_id)::uuid``) so the downgrade removes exactly those.

Online, while v1.2 keeps writing (alembic/online_ddl.py):

1. ``organization_id`` gets ``DEFAULT`` VIBOTAJ on each tenant table first (catalog only, one short
   transaction per table under ``lock_timeout``): every row v1.2 inserts from then on, without knowing the
   column, is owned by VIBOTAJ. The default is temporary: it stays while v1.2 runs and is removed by the
   contract step (``contract()`` below, run once blue is retired);
2. the existing rows are claimed in batches with a commit after each (``batch_size`` rows, optional
   ``batch_pause``), so v1.2's updates wait for one batch at most; only rows still without an organization
   are touched, so an interrupted backfill resumes where it stopped; progress (rows, rate, ETA) is reported;
   each backfilled table is then ``VACUUM (ANALYZE)``d (no lock on reads or writes), so that no autovacuum
   holds it when 006 needs its brief locks;
3. the memberships are added.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import sqlalchemy as sa

from alembic import op

revision: str = "005"
down_revision: str | None = "004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIBOTAJ_ORG_ID = "00000000-0000-0000-0000-000000000001"
VIBOTAJ = {
    "id": VIBOTAJ_ORG_ID,
    "name": "VIBOTAJ GmbH",
    "slug": "vibotaj",
    "type": "internal",
    "country": "DE",
    "subscription_tier": "enterprise",
}
TENANT_TABLES = (
    "users",
    "shipments",
    "documents",
    "products",
    "parties",
    "origins",
    "container_events",
    "notifications",
    "audit_logs",
)
# users.role (userrole) -> org_memberships.role (org_role)
ROLE_MAPPING = {
    "admin": "owner",
    "compliance": "admin",
    "logistics_agent": "manager",
    "buyer": "member",
    "supplier": "member",
    "viewer": "viewer",
}
MEMBERSHIP_ID_SALT = "tracehub-005-membership:"


def _role_case() -> str:
    # Literals from ROLE_MAPPING above (constants of this file), never user input.
    whens = " ".join(f"WHEN '{user_role}' THEN '{org_role}'" for user_role, org_role in ROLE_MAPPING.items())
    return f"(CASE u.role::text {whens} ELSE 'member' END)::org_role"


def _online() -> ModuleType:
    """The lock-safe helpers shipped beside the revisions (alembic/online_ddl.py), loaded by path."""
    path = Path(__file__).resolve().parents[1] / "online_ddl.py"
    name = f"_tracehub_online_ddl_{abs(hash(str(path)))}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def upgrade() -> None:
    """Create VIBOTAJ, default new rows to it, claim every tenant row in batches, add one membership per user."""
    online = _online().Online.from_op(op, revision)
    with online.outside_transaction():
        online.unit(
            "create the VIBOTAJ organization",
            "organizations",
            lambda: online.execute(
                "INSERT INTO organizations (id, name, slug, type, country, subscription_tier) "
                "VALUES (CAST(:id AS uuid), :name, :slug, CAST(:type AS organization_type), :country, "
                ":subscription_tier) ON CONFLICT DO NOTHING",
                **VIBOTAJ,
            ),
        )
        # From here on, rows v1.2 inserts without organization_id are VIBOTAJ's.
        for table in TENANT_TABLES:
            column = online.column(table, "organization_id")
            if online.offline or column is None or column["default"] is None:
                online.unit(
                    "default organization_id to VIBOTAJ",
                    table,
                    lambda t=table: online.execute(
                        f"ALTER TABLE {t} ALTER COLUMN organization_id SET DEFAULT '{VIBOTAJ_ORG_ID}'::uuid"
                    ),
                )
        for table in TENANT_TABLES:
            changed = online.backfill(
                table, "organization_id = CAST(:org AS uuid)", "organization_id IS NULL", org=VIBOTAJ_ORG_ID
            )
            if online.offline or changed:
                online.vacuum(table)  # the backfill's dead rows, before autovacuum holds the table against 006
        online.unit(
            "give every user an active VIBOTAJ membership",
            "org_memberships",
            lambda: online.execute(
                "INSERT INTO org_memberships (id, organization_id, user_id, role, status) "
                "SELECT CAST(md5(:salt || u.id::text) AS uuid), u.organization_id, u.id, "
                f"{_role_case()}, 'active' "
                "FROM users u WHERE u.organization_id = CAST(:org AS uuid) "
                "ON CONFLICT DO NOTHING",
                salt=MEMBERSHIP_ID_SALT,
                org=VIBOTAJ_ORG_ID,
            ),
        )


def downgrade() -> None:
    """Drop the defaults, remove the memberships 005 created, release VIBOTAJ's rows, drop VIBOTAJ if unused."""
    online = _online().Online.from_op(op, revision)
    with online.outside_transaction():
        for table in reversed(TENANT_TABLES):
            online.unit(
                "drop the VIBOTAJ default of organization_id",
                table,
                lambda t=table: online.execute(f"ALTER TABLE {t} ALTER COLUMN organization_id DROP DEFAULT"),
            )
        online.unit(
            "remove the memberships 005 created",
            "org_memberships",
            lambda: online.execute(
                "DELETE FROM org_memberships WHERE organization_id = CAST(:org AS uuid) "
                "AND id = CAST(md5(:salt || user_id::text) AS uuid)",
                salt=MEMBERSHIP_ID_SALT,
                org=VIBOTAJ_ORG_ID,
            ),
        )
        for table in TENANT_TABLES:
            online.backfill(table, "organization_id = NULL", "organization_id = CAST(:org AS uuid)", org=VIBOTAJ_ORG_ID)
        online.unit(
            "drop VIBOTAJ if nothing uses it",
            "organizations",
            lambda: online.execute(
                "DELETE FROM organizations o WHERE o.id = CAST(:org AS uuid) "
                "AND NOT EXISTS (SELECT 1 FROM org_memberships m WHERE m.organization_id = o.id) "
                "AND NOT EXISTS (SELECT 1 FROM invitations i WHERE i.organization_id = o.id)",
                org=VIBOTAJ_ORG_ID,
            ),
        )


# --- contract: run once v1.2 (blue) no longer writes ---------------------------------------------------

CONTRACT = "Remove the temporary VIBOTAJ default of organization_id (v1.3 always sets the organization)."


def contract_pending(connection: Any) -> list[str]:
    """The tenant tables whose organization_id still has 005's VIBOTAJ default (read only)."""
    rows = connection.execute(
        sa.text(
            "SELECT c.relname FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid "
            "JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum "
            "WHERE a.attname = 'organization_id' AND c.relname = ANY(:tables) "
            "AND c.relnamespace = current_schema()::regnamespace "
            "AND pg_get_expr(d.adbin, d.adrelid) LIKE :default"
        ),
        {"tables": list(TENANT_TABLES), "default": f"'{VIBOTAJ_ORG_ID}'%"},
    ).all()
    found = {row[0] for row in rows}
    return [table for table in TENANT_TABLES if table in found]


def contract(connection: Any, settings: Mapping[str, Any] | None = None) -> list[str]:
    """Drop the VIBOTAJ defaults, one short transaction per table under lock_timeout; returns the tables changed.

    Only once v1.2 is retired: afterwards a row inserted without organization_id fails (NOT NULL), which is
    what v1.3 wants and what v1.2 could not survive.
    """
    pending = contract_pending(connection)
    if connection.in_transaction():
        connection.commit()
    online = _online().Online.for_connection(connection, revision, settings)
    for table in pending:
        online.unit(
            "drop the VIBOTAJ default of organization_id",
            table,
            lambda t=table: online.execute(f"ALTER TABLE {t} ALTER COLUMN organization_id DROP DEFAULT"),
        )
    return pending
