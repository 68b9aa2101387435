"""Add a nullable organization_id (indexed) to the nine tenant tables

Revision ID: 004
Revises: 003
Create Date: 2026-01-06 00:04:00+00:00

Nullable and without a default or foreign key on purpose: adding such a column is a catalog-only change
(no table rewrite), and v1.2 keeps working. 005 fills the column, 006 makes it NOT NULL and adds the
foreign keys.

Online (alembic/online_ddl.py): each ``ADD COLUMN`` is its own short transaction under ``lock_timeout``
(one table per transaction, retried with backoff), and each index is built ``CONCURRENTLY`` outside any
transaction, so v1.2's reads and writes never wait longer than ``lock_timeout``. Re-runnable: a column
that exists is skipped, a valid index is kept, an INVALID one (a build that failed) is dropped and rebuilt.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

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
    """Add ``organization_id uuid NULL`` and ``ix_<table>_organization_id`` to each tenant table."""
    online = _online().Online.from_op(op, revision)
    with online.outside_transaction():
        for table in TENANT_TABLES:
            if online.offline or online.column(table, "organization_id") is None:
                online.unit(
                    "add column organization_id",
                    table,
                    lambda t=table: online.execute(f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS organization_id UUID"),
                )
        for table in TENANT_TABLES:
            online.create_index(f"ix_{table}_organization_id", table, "organization_id")


def downgrade() -> None:
    """Drop the index and the column from each tenant table."""
    online = _online().Online.from_op(op, revision)
    with online.outside_transaction():
        for table in reversed(TENANT_TABLES):
            online.drop_index(f"ix_{table}_organization_id", table)
            online.unit(
                "drop column organization_id",
                table,
                lambda t=table: online.execute(f"ALTER TABLE {t} DROP COLUMN IF EXISTS organization_id"),
            )
