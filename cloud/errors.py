"""JSON errors for the API: one stable shape, ``{"error": {"code": ..., "message": ..., "details": ...}}``.

Clients branch on ``code`` (a short snake_case word that never changes), people read ``message``.
A refusal of the domain (cloud.domain.errors.DomainError) is answered here once: as this JSON under
/api/, as the portals' page elsewhere (cloud/web/refusals.py registers it). Pages outside /api/ keep
HTML errors.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError

from cloud.domain.errors import DomainError

log = logging.getLogger(__name__)

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(DomainError):
    """A refusal of the API's own, before any domain action runs: the request itself (not JSON, a bad
    field, a repeated query parameter) or its key (missing, revoked, rate limited). A DomainError, so
    the same handler answers it."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 details: Any = None) -> None:
        super().__init__(status, code, message, details=details, headers=headers)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   details: Any = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    response = jsonify({"error": body})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _is_api() -> bool:
    return request.path == "/api" or request.path.startswith("/api/")


def json_error(exc: DomainError) -> Response:
    """A refusal as the API answers it."""
    return error_response(exc.status, exc.code, exc.message, exc.headers, exc.details)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _refused(exc: DomainError) -> Any:
        page = app.extensions.get("voxfleet.refusal_page")  # the portals' answer (cloud/web/refusals.py)
        if _is_api() or page is None:
            return json_error(exc)
        return page(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        if not _is_api():
            page = app.extensions.get("voxfleet.error_page")  # the portals' HTML error page
            return page(exc) if page is not None else exc
        status = exc.code or 500
        # Keep the headers that tell a client what to do next (Allow on 405, Retry-After on 429).
        headers = {name: value for name, value in exc.get_headers()
                   if name in ("Allow", "Retry-After", "WWW-Authenticate")}
        return error_response(status, CODES.get(status, "http_error"), exc.description or exc.name, headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        # The traceback goes to the log; the client gets no internals.
        log.exception("unhandled error on %s %s", request.method, request.path)
        if not _is_api():
            page = app.extensions.get("voxfleet.error_page")
            return page(InternalServerError()) if page is not None else ("Internal Server Error", 500)
        return error_response(500, "internal_error", "an unexpected error occurred; it has been logged")
