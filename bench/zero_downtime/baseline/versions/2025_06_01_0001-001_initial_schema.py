"""The project's revision 001, unchanged (re-exported: the baseline differs from 003 on)

Revision ID: 001
Revises: None
"""

from __future__ import annotations

import runpy
from pathlib import Path

_PROJECT = runpy.run_path(
    str(Path(__file__).resolve().parents[4] / "alembic" / "versions" / "2025_06_01_0001-001_initial_schema.py")
)

revision: str = _PROJECT["revision"]
down_revision: str | None = _PROJECT["down_revision"]
branch_labels = None
depends_on = None
upgrade = _PROJECT["upgrade"]
downgrade = _PROJECT["downgrade"]
