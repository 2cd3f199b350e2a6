"""What every API module shares: the route registry (routes and their OpenAPI description in one
place), validated input, and the caller (the API key's tenant scope and actor) it hands the domain.

Routes are declared with ``endpoint`` rather than ``api.route`` so the OpenAPI document can never
drift from the routes that exist: both come from the same call. Routes only translate: they parse
the request, call cloud/domain, and serialise what it returns; a refusal (DomainError) becomes the
JSON error in cloud/errors.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import g, request
from pydantic import BaseModel, ConfigDict, ValidationError

from cloud.api.blueprint import api
from cloud.db.base import Base
from cloud.domain.caller import Caller
from cloud.domain.lookup import get_owned
from cloud.domain.validation import Strict, invalid
from cloud.errors import ApiError
from cloud.scoping import TenantScope

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R", bound=Base)
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Input(Strict):
    """Base of request bodies and query strings: unknown fields are refused, not ignored."""


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    @classmethod
    def dump(cls, row: Any) -> dict[str, Any]:
        """``row`` (an ORM row, a domain result) as this model's JSON."""
        return cls.model_validate(row).model_dump(mode="json")


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
        raise invalid(exc) from None


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
        raise invalid(exc, code="invalid_query") from None


# --- the caller --------------------------------------------------------------------------------------


def scope() -> TenantScope:
    """The TenantScope of the API key's tenant, set by cloud.api.auth before the view runs."""
    current = g.get("scope")
    if current is None:
        raise ApiError(401, "missing_api_key", "this endpoint needs an API key")
    return current


def client_ip() -> str:
    return (request.remote_addr or "unknown")[:64]


def caller() -> Caller:
    """The API key's tenant and the actor the audit log names (``api_key:<prefix>``)."""
    return Caller(scope(), g.get("actor") or "api", client_ip())


def owned(model: type[R], id_: Any, what: str) -> R:
    """The key's tenant's row, else 404 ``<what>_not_found`` (cloud.domain.lookup.get_owned)."""
    return get_owned(scope(), model, id_, what)
