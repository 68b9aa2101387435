"""Create the tenancy tables: organizations, org_memberships, invitations

Revision ID: 003
Revises: 002
Create Date: 2026-01-06 00:03:00+00:00

New tables only: nothing existing is touched, so this revision is safe while v1.2 is running.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "003"
down_revision: str | None = "002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ORGANIZATION_TYPE = postgresql.ENUM(
    "internal", "customer", "supplier", "buyer", "partner", name="organization_type", create_type=False
)
ORG_ROLE = postgresql.ENUM("owner", "admin", "manager", "member", "viewer", name="org_role", create_type=False)
MEMBERSHIP_STATUS = postgresql.ENUM(
    "active", "inactive", "suspended", "pending", name="membership_status", create_type=False
)
INVITATION_STATUS = postgresql.ENUM(
    "pending", "accepted", "expired", "revoked", name="invitation_status", create_type=False
)
ENUMS = (ORGANIZATION_TYPE, ORG_ROLE, MEMBERSHIP_STATUS, INVITATION_STATUS)


def _id() -> sa.Column:
    return sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()"))


def _timestamp(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()"))


def _fk(column: str, target: str, *, nullable: bool, ondelete: str) -> sa.Column:
    return sa.Column(
        column, postgresql.UUID(as_uuid=True), sa.ForeignKey(f"{target}.id", ondelete=ondelete), nullable=nullable
    )


def _index(table: str, column: str, *, unique: bool = False) -> None:
    op.create_index(f"ix_{table}_{column}", table, [column], unique=unique)


def upgrade() -> None:
    """Create the four enum types and the three tables with their indexes."""
    bind = op.get_bind()
    for enum in ENUMS:
        enum.create(bind, checkfirst=False)

    op.create_table(
        "organizations",
        _id(),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("slug", sa.String(100), nullable=False),
        sa.Column("type", ORGANIZATION_TYPE, nullable=False),
        sa.Column("email", sa.String(255), nullable=True),
        sa.Column("phone", sa.String(50), nullable=True),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("country", sa.String(2), nullable=True),
        sa.Column("registration_number", sa.String(100), nullable=True),
        sa.Column("tax_id", sa.String(100), nullable=True),
        sa.Column("settings", postgresql.JSONB(), nullable=True, server_default=sa.text("'{}'::jsonb")),
        sa.Column("features", postgresql.JSONB(), nullable=True, server_default=sa.text("'{}'::jsonb")),
        sa.Column("subscription_tier", sa.String(50), nullable=False, server_default="free"),
        sa.Column("subscription_status", sa.String(50), nullable=False, server_default="active"),
        sa.Column("trial_ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False, server_default=sa.true()),
        _timestamp("created_at"),
        _timestamp("updated_at"),
    )
    _index("organizations", "slug", unique=True)
    _index("organizations", "type")
    _index("organizations", "is_active")

    op.create_table(
        "org_memberships",
        _id(),
        _fk("organization_id", "organizations", nullable=False, ondelete="CASCADE"),
        _fk("user_id", "users", nullable=False, ondelete="CASCADE"),
        sa.Column("role", ORG_ROLE, nullable=False, server_default="member"),
        sa.Column("status", MEMBERSHIP_STATUS, nullable=False, server_default="active"),
        _timestamp("joined_at"),
        _timestamp("updated_at"),
        sa.UniqueConstraint("organization_id", "user_id", name="uq_org_user"),
    )
    _index("org_memberships", "organization_id")
    _index("org_memberships", "user_id")
    _index("org_memberships", "status")

    op.create_table(
        "invitations",
        _id(),
        _fk("organization_id", "organizations", nullable=False, ondelete="CASCADE"),
        sa.Column("email", sa.String(255), nullable=False),
        sa.Column("role", ORG_ROLE, nullable=False, server_default="member"),
        # SHA-256 hex digest of the invitation token; the token itself is never stored.
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("status", INVITATION_STATUS, nullable=False, server_default="pending"),
        _fk("invited_by", "users", nullable=True, ondelete="SET NULL"),
        _fk("accepted_by", "users", nullable=True, ondelete="SET NULL"),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        _timestamp("created_at"),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
    )
    _index("invitations", "token_hash", unique=True)
    _index("invitations", "organization_id")
    _index("invitations", "email")
    _index("invitations", "status")
    _index("invitations", "expires_at")


def downgrade() -> None:
    """Drop the three tables and the four enum types."""
    for table in ("invitations", "org_memberships", "organizations"):
        op.drop_table(table)
    bind = op.get_bind()
    for enum in reversed(ENUMS):
        enum.drop(bind, checkfirst=False)
