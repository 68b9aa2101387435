"""The HTTP API of both versions.

v1.2 (``tenancy=False``) knows no organizations: it lists and creates shipments, documents and container
events for everyone and writes rows without ``organization_id`` (the online migration gives them to
VIBOTAJ). v1.3 (``tenancy=True``) identifies the caller by the ``X-TraceHub-User`` header (an active
user's e-mail), finds the caller's active membership (``X-TraceHub-Organization`` picks one by slug when
there are several) and scopes every read and write to that organization.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, jsonify, request

from tracehub_app.db import Database

SHIPMENT_FIELDS = ("id", "reference", "container_number", "vessel_name", "status", "created_at")
DOCUMENT_FIELDS = ("id", "shipment_id", "name", "document_type", "status", "created_at")
EVENT_FIELDS = ("id", "shipment_id", "event_status", "event_time", "location_name", "created_at")


class ApiError(Exception):
    """An error answered as JSON with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking (v1.3 only): the user and the organization every query is scoped to."""

    user_id: str
    email: str
    organization_id: str
    organization_slug: str
    role: str


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "Send a JSON object.")
    return body


def _row(row: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for field in fields:
        value = row.get(field)
        out[field] = value.isoformat() if hasattr(value, "isoformat") else (str(value) if value is not None else None)
        if isinstance(value, bool | int):
            out[field] = value
    if "organization_id" in row:
        out["organization_id"] = str(row["organization_id"]) if row["organization_id"] else None
    return out


def _limit() -> int:
    try:
        return max(1, min(int(request.args.get("limit", "20")), 100))
    except ValueError as exc:
        raise ApiError(400, "limit must be a number between 1 and 100.") from exc


def build_api(db: Database, tenancy: bool) -> Blueprint:
    """The /api blueprint of v1.2 (``tenancy=False``) or v1.3 (``tenancy=True``)."""
    api = Blueprint("api", __name__, url_prefix="/api")

    def resolve_caller(cur: Any) -> Caller | None:
        if not tenancy:
            return None
        email = request.headers.get("X-TraceHub-User", "").strip()
        if not email:
            raise ApiError(401, "Send X-TraceHub-User with the e-mail of an organization member.")
        wanted = request.headers.get("X-TraceHub-Organization", "").strip()
        cur.execute(
            "SELECT u.id AS user_id, u.email, o.id AS organization_id, o.slug, m.role::text AS role "
            "FROM users u JOIN org_memberships m ON m.user_id = u.id "
            "JOIN organizations o ON o.id = m.organization_id "
            "WHERE u.email = %s AND u.is_active AND m.status = 'active' AND o.is_active "
            "AND (%s = '' OR o.slug = %s) ORDER BY m.joined_at LIMIT 2",
            (email, wanted, wanted),
        )
        rows = cur.fetchall()
        if not rows:
            raise ApiError(403, f"{email} is not an active member of {wanted or 'any active organization'}.")
        if len(rows) > 1 and not wanted:
            raise ApiError(400, f"{email} belongs to several organizations: send X-TraceHub-Organization.")
        row = rows[0]
        return Caller(str(row["user_id"]), row["email"], str(row["organization_id"]), row["slug"], row["role"])

    def scope(caller: Caller | None, alias: str = "") -> tuple[str, tuple[Any, ...]]:
        if caller is None:
            return "TRUE", ()
        return f"{alias}organization_id = %s", (caller.organization_id,)

    def shipment_or_404(cur: Any, caller: Caller | None, shipment_id: str) -> dict[str, Any]:
        where, params = scope(caller)
        cur.execute(
            f"SELECT {', '.join(SHIPMENT_FIELDS)} FROM shipments WHERE id = %s::uuid AND {where}",
            (shipment_id, *params),
        )
        row = cur.fetchone()
        if row is None:
            raise ApiError(404, f"No shipment {shipment_id}.")
        return row

    @api.before_request
    def validate_ids() -> None:
        for value in (request.view_args or {}).values():
            if isinstance(value, str) and len(value) != 36:
                raise ApiError(404, f"No such resource {value}.")

    @api.get("/whoami")
    def whoami() -> Any:
        with db.cursor() as cur:
            caller = resolve_caller(cur)
        if caller is None:
            return jsonify({"tenancy": False})
        return jsonify(
            {"tenancy": True, "email": caller.email, "organization": caller.organization_slug, "role": caller.role}
        )

    @api.get("/shipments")
    def list_shipments() -> Any:
        with db.cursor() as cur:
            caller = resolve_caller(cur)
            where, params = scope(caller)
            cur.execute(
                f"SELECT {', '.join(SHIPMENT_FIELDS)} FROM shipments WHERE {where} ORDER BY created_at DESC LIMIT %s",
                (*params, _limit()),
            )
            rows = cur.fetchall()
        return jsonify({"shipments": [_row(r, SHIPMENT_FIELDS) for r in rows]})

    @api.post("/shipments")
    def create_shipment() -> Any:
        body = _json_body()
        reference = str(body.get("reference", "")).strip()
        if not reference or len(reference) > 50:
            raise ApiError(400, "reference is required (at most 50 characters).")
        values = {
            "reference": reference,
            "container_number": body.get("container_number"),
            "vessel_name": body.get("vessel_name"),
        }
        with db.cursor() as cur:
            caller = resolve_caller(cur)
            if caller is not None:
                values["organization_id"] = caller.organization_id
            columns = ", ".join(values)
            cur.execute(
                f"INSERT INTO shipments ({columns}) VALUES ({', '.join(['%s'] * len(values))}) "
                f"ON CONFLICT DO NOTHING RETURNING {', '.join(SHIPMENT_FIELDS)}",
                tuple(values.values()),
            )
            row = cur.fetchone()
        if row is None:
            raise ApiError(409, f"A shipment {reference} exists already.")
        return jsonify(_row(row, SHIPMENT_FIELDS)), 201

    @api.get("/shipments/<shipment_id>")
    def get_shipment(shipment_id: str) -> Any:
        with db.cursor() as cur:
            row = shipment_or_404(cur, resolve_caller(cur), shipment_id)
        return jsonify(_row(row, SHIPMENT_FIELDS))

    @api.get("/shipments/<shipment_id>/documents")
    def list_documents(shipment_id: str) -> Any:
        with db.cursor() as cur:
            caller = resolve_caller(cur)
            shipment_or_404(cur, caller, shipment_id)
            cur.execute(
                f"SELECT {', '.join(DOCUMENT_FIELDS)} FROM documents WHERE shipment_id = %s::uuid "
                "ORDER BY created_at LIMIT %s",
                (shipment_id, _limit()),
            )
            rows = cur.fetchall()
        return jsonify({"documents": [_row(r, DOCUMENT_FIELDS) for r in rows]})

    @api.post("/shipments/<shipment_id>/documents")
    def create_document(shipment_id: str) -> Any:
        body = _json_body()
        values = {
            "shipment_id": shipment_id,
            "name": str(body.get("name") or "document"),
            "document_type": str(body.get("document_type") or "OTHER"),
        }
        with db.cursor() as cur:
            caller = resolve_caller(cur)
            shipment_or_404(cur, caller, shipment_id)
            if caller is not None:
                values["organization_id"] = caller.organization_id
            cur.execute(
                f"INSERT INTO documents ({', '.join(values)}) VALUES ({', '.join(['%s'] * len(values))}) "
                f"RETURNING {', '.join(DOCUMENT_FIELDS)}",
                tuple(values.values()),
            )
            row = cur.fetchone()
        return jsonify(_row(row, DOCUMENT_FIELDS)), 201

    @api.get("/shipments/<shipment_id>/events")
    def list_events(shipment_id: str) -> Any:
        with db.cursor() as cur:
            caller = resolve_caller(cur)
            shipment_or_404(cur, caller, shipment_id)
            cur.execute(
                f"SELECT {', '.join(EVENT_FIELDS)} FROM container_events WHERE shipment_id = %s::uuid "
                "ORDER BY event_time DESC LIMIT %s",
                (shipment_id, _limit()),
            )
            rows = cur.fetchall()
        return jsonify({"events": [_row(r, EVENT_FIELDS) for r in rows]})

    @api.post("/shipments/<shipment_id>/events")
    def create_event(shipment_id: str) -> Any:
        body = _json_body()
        values = {
            "shipment_id": shipment_id,
            "event_status": str(body.get("event_status") or "OTHER"),
            "location_name": body.get("location_name"),
            "source": f"tracehub-api-{'1.3' if tenancy else '1.2'}",
        }
        with db.cursor() as cur:
            caller = resolve_caller(cur)
            shipment_or_404(cur, caller, shipment_id)
            if caller is not None:
                values["organization_id"] = caller.organization_id
            cur.execute(
                f"INSERT INTO container_events ({', '.join(values)}, event_time) "
                f"VALUES ({', '.join(['%s'] * len(values))}, now()) RETURNING {', '.join(EVENT_FIELDS)}",
                tuple(values.values()),
            )
            row = cur.fetchone()
        return jsonify(_row(row, EVENT_FIELDS)), 201

    return api


def register_errors(app: Flask) -> None:
    """Every error is JSON; invalid input answers 4xx, never 500."""
    import psycopg2

    from tracehub_app.db import DatabaseUnavailableError

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Any:
        return jsonify({"error": exc.message}), exc.status

    @app.errorhandler(DatabaseUnavailableError)
    def db_unavailable(exc: DatabaseUnavailableError) -> Any:
        return jsonify({"error": f"database unavailable: {exc}"}), 503

    @app.errorhandler(psycopg2.DataError)
    def bad_data(exc: psycopg2.DataError) -> Any:
        return jsonify({"error": str(exc).strip().splitlines()[0]}), 400

    @app.errorhandler(psycopg2.IntegrityError)
    def integrity(exc: psycopg2.IntegrityError) -> Any:
        return jsonify({"error": str(exc).strip().splitlines()[0]}), 409

    @app.errorhandler(404)
    def not_found(exc: Any) -> Any:
        return jsonify({"error": "not found"}), 404

    @app.errorhandler(405)
    def not_allowed(exc: Any) -> Any:
        return jsonify({"error": "method not allowed"}), 405
