"""The operator blueprint, its menu, and what its pages share: the acting user, paging, the way back
after a POST, dates in lists ("ago" is every portal's: cloud/web/formats.py)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request, url_for

from cloud.web.access import current_user, nav

bp = Blueprint("operator", __name__, url_prefix="/operator")

nav("operator", "Dashboard", "operator.dashboard")
nav("operator", "Tenants", "operator.tenants")
nav("operator", "System", "operator.system")
nav("operator", "Audit log", "operator.audit_log")
nav("operator", "Users", "operator.users")

TENANT_STATUSES = ("active", "suspended")
# Action families offered as suggestions in the audit filter (a prefix ending in "." matches them all).
AUDIT_ACTION_HINTS = ("signin.", "signin.failed", "signin.succeeded", "permission.refused", "tenant.",
                      "tenant.suspended", "tenant.reactivated", "user.", "user.disabled", "user.enabled",
                      "api_key.", "operator.create", "signout")
MAX_SEARCH = 200


def actor() -> str:
    return f"user:{current_user().id}"


def page_number(name: str = "page") -> int:
    try:
        return max(1, min(int(request.args.get(name, "1")), 100_000))
    except ValueError:
        return 1


def back_to(default: str) -> str:
    """Where a POST returns to: the list the operator came from, if it is one of this portal's pages."""
    target = request.form.get("next", "")
    if target.startswith("/operator/") and not target.startswith("//"):
        return target
    return default


def search_box() -> tuple[str, dict[str, str]]:
    """The list pages' search box (``q``), and its error if it is too long."""
    search = request.args.get("q", "").strip()
    errors = {"q": f"Search for at most {MAX_SEARCH} characters."} if len(search) > MAX_SEARCH else {}
    return search, errors


@bp.app_template_global("op_page_url")
def page_url(number: int, param: str = "page") -> str:
    """The current page's URL with another page number, keeping every filter."""
    args = {**request.args.to_dict(), param: number}
    return url_for(request.endpoint or "operator.dashboard", **(request.view_args or {}), **args)


@bp.app_template_filter("op_when")
def when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "never"
