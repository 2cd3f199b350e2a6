"""REST API v1 under /api/v1. Other modules add their routes to ``api`` (cloud/api/<topic>.py) and
are imported in ``register`` so the app factory needs no change when one is added."""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify
from sqlalchemy import text

from cloud.db.session import get_db
from cloud.errors import ApiError

api = Blueprint("api", __name__, url_prefix="/api/v1")


@api.get("/health")
def health():
    """Up and able to use the database: what a load balancer or a person checks first."""
    try:
        get_db().execute(text("SELECT 1")).scalar_one()
    except Exception as exc:  # any database failure is "unavailable", never a 500 with internals
        raise ApiError(503, "database_unavailable", "the database is unavailable",
                       details={"database": type(exc).__name__}) from None
    return jsonify({"status": "ok", "database": "ok"})


def register(app: Flask) -> None:
    app.register_blueprint(api)
