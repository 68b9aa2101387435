"""Add a nullable organization_id (indexed) to the nine tenant tables

Revision ID: 004
Revises: 003
Create Date: 2026-01-06 00:04:00+00:00

Nullable and without a foreign key on purpose: adding a nullable column without a default is a
catalog-only change, and v1.2 keeps working. 005 fills the column, 006 makes it NOT NULL and adds
the foreign keys.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "004"
down_revision: str | None = "003"
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


def upgrade() -> None:
    """Add ``organization_id uuid NULL`` and ``ix_<table>_organization_id`` to each tenant table."""
    for table in TENANT_TABLES:
        op.add_column(table, sa.Column("organization_id", postgresql.UUID(as_uuid=True), nullable=True))
        op.create_index(f"ix_{table}_organization_id", table, ["organization_id"])


def downgrade() -> None:
    """Drop the index and the column from each tenant table."""
    for table in reversed(TENANT_TABLES):
        op.drop_index(f"ix_{table}_organization_id", table_name=table)
        op.drop_column(table, "organization_id")
