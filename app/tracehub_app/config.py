"""The instance configuration: one JSON file (mode 0600, it holds the database password)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from tracehub_app import VERSIONS

CONFIG_ENV = "TRACEHUB_APP_CONFIG"


class ConfigError(RuntimeError):
    """The configuration file is missing or wrong; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class AppConfig:
    """What one instance needs: which version and colour it is, and how to reach its database."""

    version: str
    colour: str
    instance: str
    db_host: str
    db_port: int
    db_name: str
    db_user: str
    db_password: str | None
    db_sslmode: str = "prefer"

    @property
    def full_version(self) -> str:
        """The release number sent in the X-TraceHub-Version header (1.2.0, 1.3.0)."""
        return VERSIONS[self.version]

    def psycopg2_kwargs(self) -> dict[str, object]:
        """Keyword arguments for psycopg2.connect (never a DSN string holding the password)."""
        kwargs: dict[str, object] = {
            "host": self.db_host,
            "port": self.db_port,
            "dbname": self.db_name,
            "user": self.db_user,
            "sslmode": self.db_sslmode,
            "connect_timeout": 5,
            "application_name": f"tracehub {self.full_version} {self.colour} {self.instance}"[:63],
        }
        if self.db_password:
            kwargs["password"] = self.db_password
        return kwargs


def load_config(path: str | os.PathLike[str] | None = None) -> AppConfig:
    """Read the JSON configuration from ``path`` or the file that ``TRACEHUB_APP_CONFIG`` names."""
    where = Path(path or os.environ.get(CONFIG_ENV, ""))
    if not str(where) or not where.is_file():
        raise ConfigError(f"No TraceHub configuration file at {str(where) or '(unset)'}; set {CONFIG_ENV}.")
    try:
        data = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Reading {where} failed: {exc}") from exc
    version = str(data.get("version", ""))
    if version not in VERSIONS:
        raise ConfigError(f"{where}: version must be one of {', '.join(VERSIONS)}, not {version!r}.")
    db = data.get("database") or {}
    missing = [key for key in ("host", "name", "user") if not db.get(key)]
    if missing:
        raise ConfigError(f"{where}: database.{', database.'.join(missing)} missing.")
    return AppConfig(
        version=version,
        colour=str(data.get("colour", "blue")),
        instance=str(data.get("instance", "local")),
        db_host=str(db["host"]),
        db_port=int(db.get("port", 5432)),
        db_name=str(db["name"]),
        db_user=str(db["user"]),
        db_password=db.get("password") or None,
        db_sslmode=str(db.get("sslmode", "prefer")),
    )
