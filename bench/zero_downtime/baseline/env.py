"""Alembic environment of the baseline: the project's own alembic/env.py, run unchanged.

The baseline (``versions/``) is the sprint plan's revisions 003-006 copied literally, to measure the project's
online revisions against. 001 and 002 are the project's, re-exported so the chain starts where production is.
"""

from __future__ import annotations

import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).resolve().parents[3] / "alembic" / "env.py"), run_name="tracehub_baseline_env")
