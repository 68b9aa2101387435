"""Alembic environment of TraceHub: where the database comes from, and how revisions run.

The database is chosen by the caller, in this order (never from ``alembic.ini``, where ConfigParser
would mangle a ``%`` in a password):

1. ``config.attributes["connection"]``: an open SQLAlchemy ``Connection`` (online mode only);
2. ``config.attributes["url"]``: a SQLAlchemy ``URL`` object (an engine with ``NullPool`` is made);
3. the environment variable ``ALEMBIC_DATABASE_URL``;
4. otherwise the run fails with a message saying how to pass one.

Every revision runs in its own transaction (``transaction_per_migration``): when one fails, the
database stays at the previous revision. ``config.attributes["on_version_apply"]`` (a callable, or a
list of them) is forwarded to ``context.configure`` so that callers can see and time each step.

Offline mode (``alembic upgrade --sql`` or ``command.upgrade(cfg, "002:006", sql=True)``) renders
the SQL with literal values instead.
"""

from __future__ import annotations

import logging
import os
from logging.config import fileConfig

from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL, Connection

from alembic import context

URL_ENV_VAR = "ALEMBIC_DATABASE_URL"

config = context.config

# Only the alembic CLI passes an ini file; the library drives Alembic with an in-memory Config and
# keeps its own logging.
if config.config_file_name is not None and config.get_section("loggers") is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

logger = logging.getLogger("alembic.env")

# The revisions are hand-written (they never import application models): nothing to autogenerate from.
target_metadata = None


class DatabaseUrlMissingError(RuntimeError):
    """Alembic was started without any way to reach the database."""


def _database_url() -> URL | str:
    """The URL the caller chose: ``config.attributes["url"]``, else ``ALEMBIC_DATABASE_URL``."""
    url = config.attributes.get("url")
    if isinstance(url, URL):
        return url
    if url is not None:
        raise DatabaseUrlMissingError(
            f'config.attributes["url"] must be a sqlalchemy.engine.URL object, not {type(url).__name__}: '
            "build it with URL.create() so that special characters in the password are escaped."
        )
    from_env = os.environ.get(URL_ENV_VAR)
    if from_env:
        return from_env
    raise DatabaseUrlMissingError(
        "No database to migrate: pass an open connection in config.attributes['connection'], a "
        f"sqlalchemy URL object in config.attributes['url'], or set the environment variable {URL_ENV_VAR}. "
        "alembic.ini deliberately holds no URL."
    )


def run_migrations_offline() -> None:
    """Render the migrations as SQL, without a database connection.

    The URL (or the caller's connection) only selects the dialect; values are rendered as literals so
    the output can be reviewed and run by ``psql``. Each revision is wrapped in its own BEGIN/COMMIT.
    """
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        context.configure(
            dialect_name=connection.dialect.name,
            literal_binds=True,
            dialect_opts={"paramstyle": "named"},
            transaction_per_migration=True,
            on_version_apply=config.attributes.get("on_version_apply"),
        )
    else:
        context.configure(
            url=_database_url(),
            target_metadata=target_metadata,
            literal_binds=True,
            dialect_opts={"paramstyle": "named"},
            transaction_per_migration=True,
            on_version_apply=config.attributes.get("on_version_apply"),
        )
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        transaction_per_migration=True,
        # The library times each applied revision through this callback (plugins/module_utils/alembic_ops.py).
        on_version_apply=config.attributes.get("on_version_apply"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations against a live database, one transaction per revision.

    With ``config.attributes["connection"]`` the caller owns the connection (and anything it holds,
    such as an advisory lock); otherwise an engine with ``NullPool`` is created for this run only and
    disposed of afterwards.
    """
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run_on(connection)
        return
    engine = create_engine(_database_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as own_connection:
            _run_on(own_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
