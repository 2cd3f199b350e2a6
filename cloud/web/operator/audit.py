"""The audit log: filtered and paged, never edited."""

from __future__ import annotations

import contextlib
import uuid
from datetime import date

from flask import render_template, request
from sqlalchemy import or_

from cloud.db import Tenant, User
from cloud.web.access import OPERATOR, allow, platform
from cloud.web.operator import queries as q
from cloud.web.operator.blueprint import (
    AUDIT_ACTION_HINTS,
    MAX_SEARCH,
    bp,
    page_number,
)


def _parse_date(value: str, field: str, errors: dict[str, str]) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors[field] = "Give a date as YYYY-MM-DD."
        return None


def _audit_filter(args: dict[str, str], errors: dict[str, str]) -> q.AuditFilter:
    scope = platform()
    tenant_id = None
    if args["tenant"]:
        ref = args["tenant"]
        conditions = [Tenant.slug == ref.lower()]
        with contextlib.suppress(ValueError):
            conditions.append(Tenant.id == uuid.UUID(ref))
        found = scope.first(Tenant, or_(*conditions))
        if found is None:
            errors["tenant"] = "No tenant with this slug or id."
        else:
            tenant_id = found.id
    actor = args["actor"] or None
    if actor and "@" in actor:
        user = scope.first(User, User.email == actor.lower())
        if user is None:
            errors["actor"] = "No account with this email. Give an email, or an actor as logged."
        else:
            actor = f"user:{user.id}"
    since = _parse_date(args["from"], "from", errors)
    until = _parse_date(args["to"], "to", errors)
    if since and until and since > until:
        errors["to"] = "The end date is before the start date."
    for name in ("tenant", "actor", "action"):
        if len(args[name]) > MAX_SEARCH:
            errors[name] = f"At most {MAX_SEARCH} characters."
    return q.AuditFilter(tenant_id, actor, args["action"] or None, since, until)


@bp.get("/audit")
@allow(*OPERATOR)
def audit_log() -> tuple[str, int]:
    args = {name: request.args.get(name, "").strip() for name in ("tenant", "actor", "action", "from", "to")}
    errors: dict[str, str] = {}
    where = _audit_filter(args, errors)
    scope = platform()
    found = None if errors else q.audit_entries(scope, where, page_number())
    names = q.actor_names(scope, [e.actor for e in found.items]) if found else {}
    owners = q.tenant_names(scope, {e.tenant_id for e in found.items}) if found else {}
    filtered = any(args.values())
    return render_template("operator/audit.html", page=found, args=args, errors=errors, names=names,
                           owners=owners, filtered=filtered, hints=AUDIT_ACTION_HINTS), 400 if errors else 200
