# SPDX-License-Identifier: GPL-3.0-or-later
"""The one exception hierarchy of the collection.

Every error carries a message a tired operator can act on (what was being done, on what, why it
failed and, where known, the fix) and ``details``: extra keys that are safe to put in a module
result (never a password or a DSN that holds one).
"""

from __future__ import annotations

from typing import Any


class DeployError(Exception):
    """Base of every error raised by the library; ``details`` holds safe extra result keys."""

    def __init__(self, msg: str, **details: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details

    def __str__(self) -> str:
        return self.msg


class ConnectionFailedError(DeployError):
    """The database could not be reached or refused the credentials."""


class LockHeldError(DeployError):
    """Another run holds the per-database operation lock."""


class MigrationError(DeployError):
    """An Alembic operation failed or was refused."""


class BackupError(DeployError):
    """Taking or verifying a backup failed."""


class RestoreError(DeployError):
    """Restoring a backup failed or was refused."""


class CheckFailedError(DeployError):
    """A validation suite could not run, or one of its checks failed."""


class RecordError(DeployError):
    """The run record could not be read or written."""


class UpstreamError(DeployError):
    """Switching, validating or verifying a load balancer's upstream failed or was refused."""
