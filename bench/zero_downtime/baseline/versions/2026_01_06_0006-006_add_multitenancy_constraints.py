"""Make organization_id mandatory: NOT NULL, foreign keys, composite indexes, unique reference per org

Revision ID: 006
Revises: 005
Create Date: 2026-01-06 00:06:00+00:00

Refuses first, naming the tables and counts, if any tenant row still has no organization (005 not
applied, or rows written by v1.2 after it ran). Foreign keys are ON DELETE RESTRICT: deleting an
organization must never silently delete its data.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import context, op

revision: str = "006"
down_revision: str | None = "005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

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
# (table, second column): index ix_<table>_organization_id_<column> on (organization_id, column)
COMPOSITE_INDEXES = (
    ("users", "email"),
    ("users", "is_active"),
    ("shipments", "status"),
    ("shipments", "reference"),
    ("shipments", "created_at"),
    ("documents", "shipment_id"),
    ("documents", "document_type"),
    ("products", "shipment_id"),
    ("parties", "party_type"),
    ("origins", "shipment_id"),
    ("container_events", "shipment_id"),
    ("container_events", "event_time"),
    ("notifications", "user_id"),
    ("notifications", "read"),
    ("audit_logs", "user_id"),
    ("audit_logs", "resource_type"),
)
UNIQUE_REFERENCE = "uq_shipments_organization_reference"


class UnownedRowsError(RuntimeError):
    """Tenant rows without an organization: the NOT NULL constraint cannot be added."""


def _unowned_query() -> str:
    # Table names are the constants above, never user input.
    return " UNION ALL ".join(
        f"SELECT '{table}' AS table_name, count(*) AS n FROM {table} WHERE organization_id IS NULL"
        for table in TENANT_TABLES
    )


def _refuse_if_unowned() -> None:
    """Raise naming each table with NULL organization_id and its count; offline, render the guard in SQL."""
    if context.is_offline_mode():
        op.execute(
            "DO $$ DECLARE unowned text; BEGIN "
            "SELECT string_agg(table_name || ': ' || n, ', ') INTO unowned "
            f"FROM ({_unowned_query()}) AS t WHERE n > 0; "
            "IF unowned IS NOT NULL THEN RAISE EXCEPTION 'Cannot apply revision 006: tenant rows without an "
            "organization_id (%). Apply 005 or assign these rows to an organization first.', unowned; "
            "END IF; END $$"
        )
        return
    rows = op.get_bind().execute(sa.text(f"SELECT table_name, n FROM ({_unowned_query()}) AS t WHERE n > 0")).all()
    if rows:
        total = sum(n for _table, n in rows)
        listing = ", ".join(f"{table}: {n}" for table, n in rows)
        raise UnownedRowsError(
            f"Cannot apply revision 006: {total} tenant rows have no organization_id ({listing}). "
            "Apply revision 005 again (it claims unowned rows for VIBOTAJ) or assign these rows to an "
            "organization, then run the upgrade again."
        )


def upgrade() -> None:
    """Refuse on unowned rows, then NOT NULL, foreign keys, composite indexes and the unique reference."""
    _refuse_if_unowned()
    for table in TENANT_TABLES:
        op.alter_column(table, "organization_id", nullable=False)
        op.create_foreign_key(
            f"fk_{table}_organization_id", table, "organizations", ["organization_id"], ["id"], ondelete="RESTRICT"
        )
    for table, column in COMPOSITE_INDEXES:
        op.create_index(f"ix_{table}_organization_id_{column}", table, ["organization_id", column])
    op.create_unique_constraint(UNIQUE_REFERENCE, "shipments", ["organization_id", "reference"])


def downgrade() -> None:
    """Drop the unique constraint, the composite indexes and foreign keys, and allow NULL again."""
    op.drop_constraint(UNIQUE_REFERENCE, "shipments", type_="unique")
    for table, column in reversed(COMPOSITE_INDEXES):
        op.drop_index(f"ix_{table}_organization_id_{column}", table_name=table)
    for table in reversed(TENANT_TABLES):
        op.drop_constraint(f"fk_{table}_organization_id", table, type_="foreignkey")
        op.alter_column(table, "organization_id", nullable=True)
