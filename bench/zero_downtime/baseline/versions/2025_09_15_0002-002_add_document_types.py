"""The project's revision 002, unchanged (re-exported: the baseline differs from 003 on)

Revision ID: 002
Revises: 001
"""

from __future__ import annotations

import runpy
from pathlib import Path

_PROJECT = runpy.run_path(
    str(Path(__file__).resolve().parents[4] / "alembic" / "versions" / "2025_09_15_0002-002_add_document_types.py")
)

revision: str = _PROJECT["revision"]
down_revision: str | None = _PROJECT["down_revision"]
branch_labels = None
depends_on = None
upgrade = _PROJECT["upgrade"]
downgrade = _PROJECT["downgrade"]
