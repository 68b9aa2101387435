"""Add six document types (sanitary, EUDR due diligence, quality, EU TRACES, veterinary, export)

Revision ID: 002
Revises: 001
Create Date: 2025-09-15 00:02:00+00:00

PostgreSQL can add enum values but never drop one, so the downgrade rebuilds ``documenttype``
without them: rename the type, create the old one, re-type ``documents.document_type``, drop the
renamed type. It refuses while any document still uses one of the added values, because re-typing
those rows would fail halfway or lose what they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import context, op

revision: str = "002"
down_revision: str | None = "001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ORIGINAL_TYPES = (
    "BILL_OF_LADING",
    "COMMERCIAL_INVOICE",
    "PACKING_LIST",
    "CERTIFICATE_OF_ORIGIN",
    "PHYTOSANITARY_CERTIFICATE",
    "FUMIGATION_CERTIFICATE",
    "INSURANCE_CERTIFICATE",
    "CONTRACT",
    "CUSTOMS_DECLARATION",
    "OTHER",
)
ADDED_TYPES = (
    "SANITARY_CERTIFICATE",
    "EUDR_DUE_DILIGENCE",
    "QUALITY_CERTIFICATE",
    "EU_TRACES_CERTIFICATE",
    "VETERINARY_HEALTH_CERTIFICATE",
    "EXPORT_DECLARATION",
)


class DocumentTypesInUseError(RuntimeError):
    """Documents still use a document type that the downgrade would remove."""


def _sql_list(values: Sequence[str]) -> str:
    # Constants of this file only (upper-case identifiers), never user input.
    return ", ".join(f"'{value}'" for value in values)


def upgrade() -> None:
    """Add the six values to ``documenttype`` (each idempotent)."""
    for value in ADDED_TYPES:
        op.execute(f"ALTER TYPE documenttype ADD VALUE IF NOT EXISTS '{value}'")


def _refuse_if_in_use() -> None:
    """Raise naming how many documents use which added value; offline, render the same guard in SQL."""
    if context.is_offline_mode():
        op.execute(
            "DO $$ DECLARE n bigint; BEGIN "
            f"SELECT count(*) INTO n FROM documents WHERE document_type::text IN ({_sql_list(ADDED_TYPES)}); "
            "IF n > 0 THEN RAISE EXCEPTION 'Cannot downgrade revision 002: % documents rows use document types "
            "added by 002. Re-type those documents to one of the original types or delete them first.', n; "
            "END IF; END $$"
        )
        return
    rows = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT document_type::text, count(*) FROM documents "
                "WHERE document_type::text = ANY(:added) GROUP BY 1 ORDER BY 1"
            ),
            {"added": list(ADDED_TYPES)},
        )
        .all()
    )
    if rows:
        total = sum(count for _value, count in rows)
        usage = ", ".join(f"{value}: {count}" for value, count in rows)
        raise DocumentTypesInUseError(
            f"Cannot downgrade revision 002: {total} documents rows use document types added by 002 ({usage}). "
            "PostgreSQL cannot keep a value the rebuilt documenttype type no longer has: re-type those documents "
            f"to one of the original types ({', '.join(ORIGINAL_TYPES)}) or delete them first, then run the "
            "downgrade again."
        )


def downgrade() -> None:
    """Rebuild ``documenttype`` without the six values; refuse while documents use them."""
    _refuse_if_in_use()
    op.execute("ALTER TYPE documenttype RENAME TO documenttype_002")
    postgresql.ENUM(*ORIGINAL_TYPES, name="documenttype", create_type=False).create(op.get_bind(), checkfirst=False)
    op.execute(
        "ALTER TABLE documents ALTER COLUMN document_type TYPE documenttype USING document_type::text::documenttype"
    )
    op.execute("DROP TYPE documenttype_002")
