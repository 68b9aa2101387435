"""TraceHub, the small application the deployment collection ships and switches between.

Two versions live side by side so that a blue-green cutover can be shown and tested for real:
``1.2`` (pre-tenancy: everything belongs to the one company) and ``1.3`` (tenancy-aware: every read and
write is scoped to the caller's organization; it refuses to start below Alembic revision 006).
"""

from __future__ import annotations

VERSIONS = {"1.2": "1.2.0", "1.3": "1.3.0"}
# The first Alembic revision at which each version can serve; v1.3 needs the tenancy constraints.
MIN_REVISION = {"1.2": "002", "1.3": "006"}
