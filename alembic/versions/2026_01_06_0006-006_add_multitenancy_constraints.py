"""Make organization_id mandatory: NOT NULL, foreign keys, composite indexes, unique reference per org

Revision ID: 006
Revises: 005
Create Date: 2026-01-06 00:06:00+00:00

Refuses first, naming the tables and counts, if any tenant row still has no organization (005 not
applied, or rows written with an explicit NULL organization_id). Foreign keys are ON DELETE RESTRICT:
deleting an organization must never silently delete its data.

Online, while v1.2 keeps writing (alembic/online_ddl.py), one table per short transaction under
``lock_timeout``, retried with backoff:

- NOT NULL through a CHECK (organization_id IS NOT NULL) added NOT VALID, then VALIDATEd (a scan that
  blocks no reads or writes), then SET NOT NULL (PostgreSQL skips its own scan thanks to the validated
  check) and the helper check dropped;
- each foreign key added NOT VALID, then VALIDATEd;
- the composite indexes and the unique index built CONCURRENTLY (an INVALID leftover of a failed build is
  rebuilt), the unique constraint attached to its ready index (``UNIQUE USING INDEX``).

Every step checks the catalog first, so a failed run is resumed by running it again.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

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
    """Refuse on unowned rows, then NOT NULL, foreign keys, composite indexes and the unique reference."""
    _refuse_if_unowned()
    online = _online().Online.from_op(op, revision)
    with online.outside_transaction():
        for table in TENANT_TABLES:
            online.add_check_not_null(table, "organization_id")
            online.add_foreign_key(
                f"fk_{table}_organization_id", table, "organization_id", "organizations", ondelete="RESTRICT"
            )
        for table, column in COMPOSITE_INDEXES:
            online.create_index(f"ix_{table}_organization_id_{column}", table, f"organization_id, {column}")
        online.create_index(UNIQUE_REFERENCE, "shipments", "organization_id, reference", unique=True)
        if online.constraint("shipments", UNIQUE_REFERENCE) is None:
            online.unit(
                f"attach {UNIQUE_REFERENCE} to its index",
                "shipments",
                lambda: online.execute(
                    f"ALTER TABLE shipments ADD CONSTRAINT {UNIQUE_REFERENCE} UNIQUE USING INDEX {UNIQUE_REFERENCE}"
                ),
            )


def downgrade() -> None:
    """Drop the unique constraint, the composite indexes and foreign keys, and allow NULL again."""
    online = _online().Online.from_op(op, revision)
    with online.outside_transaction():
        online.unit(
            f"drop {UNIQUE_REFERENCE}",
            "shipments",
            lambda: online.execute(f"ALTER TABLE shipments DROP CONSTRAINT IF EXISTS {UNIQUE_REFERENCE}"),
        )
        online.drop_index(UNIQUE_REFERENCE, "shipments")  # an index left by an interrupted upgrade
        for table, column in reversed(COMPOSITE_INDEXES):
            online.drop_index(f"ix_{table}_organization_id_{column}", table)
        for table in reversed(TENANT_TABLES):

            def relax(t: str = table) -> None:
                online.execute(f"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS fk_{t}_organization_id")
                online.execute(f"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS ck_{t}_organization_id_not_null")
                online.execute(f"ALTER TABLE {t} ALTER COLUMN organization_id DROP NOT NULL")

            online.unit("drop the foreign key and NOT NULL", table, relax)
