"""The /api/v1 blueprint. Its own module so that route modules can import it without importing the
package that imports them."""

from __future__ import annotations

from flask import Blueprint

api = Blueprint("api", __name__, url_prefix="/api/v1")
