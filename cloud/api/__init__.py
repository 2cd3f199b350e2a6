"""REST API v1 under /api/v1. Other modules add their routes to ``api`` (cloud/api/<topic>.py) and
are listed in ``ROUTE_MODULES`` so the app factory needs no change when one is added.

Every route but the public ones needs an API key (cloud/api/auth.py); routes are declared with
``cloud.api.common.endpoint`` so the OpenAPI document (cloud/api/openapi.py) describes each one.
"""

from __future__ import annotations

import importlib

from flask import Flask, jsonify
from sqlalchemy import text

from cloud.api.blueprint import api
from cloud.db.session import get_db
from cloud.errors import ApiError
from protocol import versions

# Imported (once) before the blueprint is registered: their routes attach to ``api`` on import.
ROUTE_MODULES = ("auth", "keys", "projects", "devices", "sessions", "usage", "webhooks", "pairing", "openapi")


@api.get("/health")
def health():
    """Up and able to use the database: what a load balancer or a person checks first. It also names
    this cloud's release and wire versions: devices ask here what they may send them
    (device/sync/cloud_peer.py)."""
    try:
        get_db().execute(text("SELECT 1")).scalar_one()
    except Exception as exc:  # any database failure is "unavailable", never a 500 with internals
        raise ApiError(503, "database_unavailable", "the database is unavailable",
                       details={"database": type(exc).__name__}) from None
    return jsonify({"status": "ok", "database": "ok", "release": versions.release(),
                    "protocol": {"writes": versions.VERSION, "reads": sorted(versions.READS)}})


health.voxfleet_public = True  # type: ignore[attr-defined]


def register(app: Flask) -> None:
    for name in ROUTE_MODULES:
        importlib.import_module(f"cloud.api.{name}")
    from cloud.api import auth

    auth.configure(app)
    app.register_blueprint(api)
