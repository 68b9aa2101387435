"""Give every existing row to the VIBOTAJ organization and every user an active membership

Revision ID: 005
Revises: 004
Create Date: 2026-01-06 00:05:00+00:00

Set-based (one statement per table) and idempotent: the organization is inserted with
ON CONFLICT DO NOTHING, only rows without an organization are claimed, and memberships that exist
are left alone. Memberships created here get an id derived from the user id
(``md5('tracehub-005-membership:' || user_id)::uuid``) so the downgrade removes exactly those.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def upgrade() -> None:
    """Create VIBOTAJ, claim every tenant row for it, and add one active membership per user."""
    op.execute(
        sa.text(
            "INSERT INTO organizations (id, name, slug, type, country, subscription_tier) "
            "VALUES (CAST(:id AS uuid), :name, :slug, CAST(:type AS organization_type), :country, :subscription_tier) "
            "ON CONFLICT DO NOTHING"
        ).bindparams(**VIBOTAJ)
    )
    for table in TENANT_TABLES:
        op.execute(
            sa.text(
                f"UPDATE {table} SET organization_id = CAST(:org AS uuid) WHERE organization_id IS NULL"
            ).bindparams(org=VIBOTAJ_ORG_ID)
        )
    op.execute(
        sa.text(
            "INSERT INTO org_memberships (id, organization_id, user_id, role, status) "
            "SELECT CAST(md5(:salt || u.id::text) AS uuid), u.organization_id, u.id, "
            f"{_role_case()}, 'active' "
            "FROM users u WHERE u.organization_id = CAST(:org AS uuid) "
            "ON CONFLICT DO NOTHING"
        ).bindparams(salt=MEMBERSHIP_ID_SALT, org=VIBOTAJ_ORG_ID)
    )


def downgrade() -> None:
    """Remove the memberships 005 created, release VIBOTAJ's rows, and drop VIBOTAJ if nothing uses it."""
    op.execute(
        sa.text(
            "DELETE FROM org_memberships WHERE organization_id = CAST(:org AS uuid) "
            "AND id = CAST(md5(:salt || user_id::text) AS uuid)"
        ).bindparams(salt=MEMBERSHIP_ID_SALT, org=VIBOTAJ_ORG_ID)
    )
    for table in TENANT_TABLES:
        op.execute(
            sa.text(f"UPDATE {table} SET organization_id = NULL WHERE organization_id = CAST(:org AS uuid)").bindparams(
                org=VIBOTAJ_ORG_ID
            )
        )
    op.execute(
        sa.text(
            "DELETE FROM organizations o WHERE o.id = CAST(:org AS uuid) "
            "AND NOT EXISTS (SELECT 1 FROM org_memberships m WHERE m.organization_id = o.id) "
            "AND NOT EXISTS (SELECT 1 FROM invitations i WHERE i.organization_id = o.id)"
        ).bindparams(org=VIBOTAJ_ORG_ID)
    )
