"""What every API module shares: the route registry (routes and their OpenAPI description in one
place), validated input, the caller's scope, cursors and audit entries.

Routes are declared with ``endpoint`` rather than ``api.route`` so the OpenAPI document can never
drift from the routes that exist: both come from the same call.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask import g, request
from pydantic import BaseModel, ConfigDict, ValidationError

from cloud.api.blueprint import api
from cloud.errors import ApiError
from cloud.scoping import TenantScope

M = TypeVar("M", bound=BaseModel)
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Input(BaseModel):
    """Base of request bodies and query strings: unknown fields are refused, not ignored, so a typo
    ("nmae") is an error the client sees instead of a silent no-op."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


@dataclass
class Route:
    method: str
    rule: str
    endpoint: str
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    public: bool = False
    errors: tuple[int, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


ROUTES: list[Route] = []
PUBLIC_ENDPOINTS: set[str] = set()


def endpoint(method: str, rule: str, *, summary: str, tag: str, body: type[BaseModel] | None = None,
             query: type[BaseModel] | None = None, response: type[BaseModel] | None = None,
             status: int = 200, public: bool = False, errors: tuple[int, ...] = ()) -> Callable:
    """Register a view on the /api/v1 blueprint and describe it for the OpenAPI document."""

    def decorate(view: Callable) -> Callable:
        name = view.__name__
        api.add_url_rule(rule, name, view, methods=[method])
        ROUTES.append(Route(method, rule, f"api.{name}", summary, tag, body, query, response, status,
                            public, errors))
        if public:
            PUBLIC_ENDPOINTS.add(f"api.{name}")
        return view

    return decorate


# --- input -------------------------------------------------------------------------------------------


def _problems(exc: ValidationError) -> list[dict[str, str]]:
    found = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        found.append({"field": where, "message": message})
    return found


def parse_body(model: type[M]) -> M:
    """The JSON body validated against ``model``; 400 naming the first bad field otherwise."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        data: Any = {}
    else:
        if request.mimetype != "application/json":
            raise ApiError(415, "unsupported_media_type", "send the body as application/json")
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = _problems(exc)
        first = problems[0]
        raise ApiError(400, "invalid_request", f"{first['field']}: {first['message']}",
                       details=problems) from None


def parse_query(model: type[M]) -> M:
    """The query string validated against ``model`` (repeated parameters are refused)."""
    values: dict[str, Any] = {}
    for name in request.args:
        given = request.args.getlist(name)
        if len(given) > 1:
            raise ApiError(400, "invalid_query", f"{name}: given more than once")
        values[name] = given[0]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = _problems(exc)
        first = problems[0]
        raise ApiError(400, "invalid_query", f"{first['field']}: {first['message']}",
                       details=problems) from None


# --- the caller --------------------------------------------------------------------------------------


def scope() -> TenantScope:
    """The TenantScope of the API key's tenant, set by cloud.api.auth before the view runs."""
    current = g.get("scope")
    if current is None:
        raise ApiError(401, "missing_api_key", "this endpoint needs an API key")
    return current


def actor() -> str:
    return g.get("actor") or "api"


def client_ip() -> str:
    return (request.remote_addr or "unknown")[:64]


def audit(action: str, target: str | None = None, **details: Any) -> None:
    """An audit entry in the request's transaction: it commits with the change or not at all."""
    from cloud.admin import audit as write_audit

    current = scope()
    write_audit(current.db, actor(), action, target=target, tenant_id=current.tenant_id, ip=client_ip(),
                **details)


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what}_not_found", f"no such {what.replace('_', ' ')}")


# --- cursors -----------------------------------------------------------------------------------------


def encode_cursor(at: datetime, id_: uuid.UUID) -> str:
    """Opaque to clients; it names the last row of a page by its sort key (timestamp, id), so rows with
    equal timestamps are neither skipped nor repeated across pages."""
    raw = json.dumps([at.astimezone(UTC).isoformat(), str(id_)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, id_ = json.loads(raw)
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError("naive")
        return when, uuid.UUID(id_)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise ApiError(400, "invalid_cursor", "cursor: not a cursor this API returned") from None

