"""The WSGI entry point: ``gunicorn 'tracehub_app.wsgi:create_app()'`` with TRACEHUB_APP_CONFIG set.

Every response carries ``X-TraceHub-Version``, ``X-TraceHub-Colour`` and ``X-TraceHub-Instance`` so that
a load balancer switch can be proven from the outside. ``/health`` answers 200 with ``status: ok`` when
the instance can serve (database reachable, revision new enough for this version), 503 otherwise.
"""

from __future__ import annotations

import sys
from typing import Any

from flask import Flask, jsonify

from tracehub_app import MIN_REVISION
from tracehub_app.api import build_api, register_errors
from tracehub_app.config import AppConfig, load_config
from tracehub_app.db import Database, DatabaseUnavailableError, check_revision_once, read_revision, revision_at_least


class StartRefusedError(RuntimeError):
    """The instance must not start (v1.3 below revision 006); gunicorn exits with this message."""


def health_of(config: AppConfig, db: Database) -> tuple[dict[str, Any], int]:
    """The /health document and its HTTP status."""
    minimum = MIN_REVISION[config.version]
    doc: dict[str, Any] = {
        "version": config.full_version,
        "colour": config.colour,
        "instance": config.instance,
        "required_revision": minimum,
    }
    try:
        with db.cursor() as cur:
            revision = read_revision(cur)
    except DatabaseUnavailableError as exc:
        return doc | {"status": "unhealthy", "database": "unreachable", "revision": None, "reason": str(exc)}, 503
    doc |= {"database": "ok", "revision": revision}
    if not revision_at_least(revision, minimum):
        reason = f"TraceHub {config.full_version} needs revision {minimum} or later, the database is at {revision}"
        return doc | {"status": "unhealthy", "reason": reason}, 503
    return doc | {"status": "ok"}, 200


def create_app(config: AppConfig | None = None) -> Flask:
    """Build the application for the configured version; v1.3 refuses to start below revision 006."""
    config = config or load_config()
    minimum = MIN_REVISION[config.version]
    revision = check_revision_once(config, minimum)
    if not revision_at_least(revision, minimum):
        message = (
            f"TraceHub {config.full_version} refuses to start: the database {config.db_name} on "
            f"{config.db_host}:{config.db_port} is at revision {revision}, it needs {minimum} or later. "
            "Migrate first (playbooks/migrate.yml)."
        )
        print(message, file=sys.stderr, flush=True)
        raise StartRefusedError(message)

    app = Flask("tracehub")
    app.config["JSON_SORT_KEYS"] = False
    db = Database(config)
    app.register_blueprint(build_api(db, tenancy=config.version == "1.3"))
    register_errors(app)

    @app.get("/health")
    def health() -> Any:
        doc, status = health_of(config, db)
        return jsonify(doc), status

    @app.get("/")
    def index() -> Any:
        return jsonify({"service": "tracehub", "version": config.full_version, "colour": config.colour})

    @app.after_request
    def stamp(response: Any) -> Any:
        response.headers["X-TraceHub-Version"] = config.full_version
        response.headers["X-TraceHub-Colour"] = config.colour
        response.headers["X-TraceHub-Instance"] = config.instance
        return response

    return app
