"""The OpenAPI 3.1 document of /api/v1, built from the route registry (cloud.api.common.endpoint) and
the pydantic models the routes validate with, so it describes exactly what runs.

Hand-rolled rather than spectree or flask-openapi3: both want to own the routing (their own blueprint
class or decorators that validate), which would mean rewriting the existing blueprint and error
handling; pydantic already produces the JSON Schemas, and OpenAPI 3.1 takes them as they are.
"""

from __future__ import annotations

import re
from typing import Any

from flask import current_app, jsonify
from pydantic import BaseModel

from cloud.api.common import ROUTES, Route, endpoint

TITLE = "VoxFleet API"
VERSION = "1.0.0"
_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")
_REF = "#/components/schemas/{model}"

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": {"type": "string", "description": "stable, snake_case"},
                       "message": {"type": "string"},
                       "details": {}},
    }},
}
STANDARD_ERRORS = {
    400: "invalid input (the message names the field)",
    401: "missing, unknown, revoked or expired API key",
    402: "the plan's hard limit is reached (plan_limit_reached: meter, limit and usage in details)",
    403: "read-only key on a write route, or a suspended tenant",
    404: "not found (also for another tenant's ids)",
    409: "conflicts with the current state",
    413: "request body too large",
    415: "body is not application/json",
    422: "refers to something that does not exist",
    429: "rate limited; see Retry-After",
    503: "a dependency (database, broker) is unavailable",
}


def _schema(model: type[BaseModel], components: dict[str, Any], mode: str) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=_REF, mode=mode)  # type: ignore[arg-type]
    for name, sub in schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    name = model.__name__
    components.setdefault(name, schema)
    return {"$ref": _REF.format(model=name)}


def _path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    params = []
    for converter, name in _PARAM.findall(rule):
        schema: dict[str, Any] = {"type": "string"}
        if converter == "uuid":
            schema["format"] = "uuid"
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return _PARAM.sub(r"{\2}", rule), params


def _query(model: type[BaseModel], components: dict[str, Any]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=_REF, by_alias=True)
    for name, sub in schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if "description" in prop:
            param["description"] = prop["description"]
        params.append(param)
    return params


def _operation(route: Route, components: dict[str, Any]) -> dict[str, Any]:
    _, path_params = _path(route.rule)
    op: dict[str, Any] = {"operationId": route.endpoint.removeprefix("api."), "summary": route.summary,
                          "tags": [route.tag]}
    params = path_params + (_query(route.query, components) if route.query else [])
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": _schema(route.body, components, "validation")}}}
    success: dict[str, Any] = {"description": "success"}
    if route.response is not None and route.status != 204:
        schema = _schema(route.response, components, "serialization")
        success["content"] = {"application/json": {"schema": schema}}
    responses: dict[str, Any] = {str(route.status): success}
    codes = set(route.errors) | {429}
    if not route.public:
        codes |= {401, 403}
    if route.body is not None:
        codes |= {400, 413, 415}
    if route.query is not None:
        codes.add(400)
    for code in sorted(codes):
        responses[str(code)] = {"description": STANDARD_ERRORS.get(code, "error"), "content": {
            "application/json": {"schema": {"$ref": _REF.format(model="Error")}}}}
    op["responses"] = responses
    op["security"] = [] if route.public else [{"apiKey": []}]
    return op


def _undeclared() -> list[Route]:
    """Routes added to the blueprint with plain ``api.route`` (e.g. pairing): described minimally,
    from their docstrings, so the document still lists every route that exists."""
    from cloud.api.auth import OPTIONAL_AUTH_MODULES

    declared = {(r.endpoint, r.method) for r in ROUTES} | {("api.health", "GET")}
    found = []
    for rule in current_app.url_map.iter_rules():
        if not rule.endpoint.startswith("api.") or not rule.rule.startswith("/api/v1/"):
            continue
        view = current_app.view_functions[rule.endpoint]
        summary = ((view.__doc__ or "").strip().splitlines() or [rule.endpoint])[0]
        public = bool(getattr(view, "voxfleet_public", False)) or view.__module__ in OPTIONAL_AUTH_MODULES
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            if (rule.endpoint, method) not in declared:
                found.append(Route(method, rule.rule.removeprefix("/api/v1"), rule.endpoint, summary,
                                   view.__module__.rsplit(".", 1)[-1], public=public))
    return found


def build() -> dict[str, Any]:
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    health = Route("GET", "/health", "api.health",
                   "Up and able to use the database; this cloud's release and wire versions", "meta",
                   public=True, errors=(503,))
    routes = [health, *ROUTES, *_undeclared()]
    for route in routes:
        path, _ = _path(route.rule)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION,
                 "description": "VoxFleet REST API v1. Authenticate with 'Authorization: Bearer <API key>'. "
                                "Errors are {\"error\": {\"code\", \"message\"}} with stable codes."},
        "servers": [{"url": "/api/v1"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                           "description": "an API key: vfk_<prefix>_<secret>"}},
        },
        "security": [{"apiKey": []}],
    }


@endpoint("GET", "/openapi.json", summary="This document", tag="meta", public=True)
def openapi_document():
    cached = current_app.extensions.get("voxfleet.openapi")
    if cached is None:
        cached = current_app.extensions["voxfleet.openapi"] = build()
    return jsonify(cached)
