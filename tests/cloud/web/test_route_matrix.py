"""The route matrix: every portal route x every role (and anonymous) gets exactly the allowed answer.

The routes are not listed here: they are read from ``app.url_map`` (every rule but the API's, which
authenticates with keys, and static files), so each portal's pages are checked as soon as they land.
What a route should answer comes from its own declaration (``@allow(...)``, cloud/web/access.py):

- a role it declares: 200, or a redirect that is not to the sign-in page (a view that sends you on);
- any other signed-in role: 403;
- anonymous: a redirect to /login (the page comes after signing in);
- ``PUBLIC``: no refusal for anyone (200 or a redirect);
- a route with no declaration fails the test (deny by default must be a decision, not an accident);
- every POST route without a CSRF token: 400, for its own roles and for anonymous; with a valid token,
  roles it does not declare still get 403 and anonymous goes to /login (the check is not only CSRF).

URL parameters are filled with real ids of rows made here (one tenant with every kind of row), the ids
the tenant's own people may open; a parameter the test does not know fails with its route named.
Runs on SQLite and PostgreSQL (on PostgreSQL the app role works under row-level security).
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import Rule

from cloud import admin
from cloud.billing.invoices import close_period, finalize
from cloud.billing.periods import Period
from cloud.billing.plans import create_plan
from cloud.billing.subscriptions import subscribe
from cloud.db import ApiKey, Device, User, VoiceSession, Webhook, utcnow
from cloud.scoping import PlatformScope, TenantScope
from cloud.security import hash_password, invite_token, new_api_key, reset_token
from cloud.web.access import PUBLIC
from tests.cloud.api.test_fixtures import close_app, make_app

ROLES = ("platform_admin", "tenant_owner", "tenant_admin", "tenant_member")
SECRET = "route-matrix-secret"
# Public routes that only make sense with what another party sends (an OIDC callback needs Keycloak's
# code and state): a bare GET is a bad request, for everyone, and nothing else.
BARE_GET_IS_BAD_REQUEST = {"signin.keycloak_callback"}


@dataclass
class World:
    app: Flask
    params: dict[str, str]
    passwords: dict[str, tuple[str, str]]   # role -> (email, password)
    # Parameters whose real value depends on the route (an invite link's token is not a reset link's).
    endpoint_params: dict[str, dict[str, str]]

    def for_rule(self, rule: Rule) -> dict[str, str]:
        for fragment, values in self.endpoint_params.items():
            if fragment in rule.endpoint:
                return {**self.params, **values}
        return self.params


def _portal_rules(app: Flask) -> list[Rule]:
    return [rule for rule in app.url_map.iter_rules()
            if not rule.endpoint.startswith("api.") and not rule.endpoint.endswith("static")]


@pytest.fixture
def world(database, tmp_path) -> Iterator[World]:
    app = make_app(database.url, tmp_path, secret_key=SECRET)
    sessions = app.extensions["voxfleet.db"][1]
    passwords: dict[str, tuple[str, str]] = {}
    with sessions() as db:
        operator = (f"op-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(14))
        admin.create_operator(db, *operator)
        passwords["platform_admin"] = operator
        made = admin.create_tenant(db, "Matrix Tenant", f"owner-{secrets.token_hex(4)}@example.com", SECRET)
        tenant_id, project_id = made.tenant.id, made.project.id
        platform = PlatformScope(db)
        owner = platform.get(User, made.owner.id)
        password = secrets.token_urlsafe(14)
        owner.password_hash = hash_password(password)
        passwords["tenant_owner"] = (owner.email, password)
        scope = TenantScope(db, tenant_id)
        people = {}
        for role in ("tenant_admin", "tenant_member"):
            email = f"{role.replace('_', '-')}-{secrets.token_hex(4)}@example.com"
            password = secrets.token_urlsafe(14)
            people[role] = scope.add(User(email=email, role=role, password_hash=hash_password(password)))
            passwords[role] = (email, password)
        invited = scope.add(User(email=f"invited-{secrets.token_hex(4)}@example.com", role="tenant_member"))
        device = scope.add(Device(project_id=project_id, device_key=f"dev-{uuid.uuid4().hex[:12]}",
                                  name="kitchen", presence="online", presence_at=utcnow()))
        scope.flush()
        session = scope.add(VoiceSession(device_id=device.id, project_id=project_id, session_key="s-1",
                                         started_at=utcnow(), transcript="what time is it"))
        key = new_api_key()
        api_key = scope.add(ApiKey(name="matrix", prefix=key.prefix, key_hash=key.key_hash, scope="read"))
        webhook = scope.add(Webhook(url="https://hooks.example.test/in", events=["session.completed"],
                                    secret=secrets.token_hex(16)))
        scope.flush()
        # Billing: a plan, the tenant on it since last month, and last month's invoice, issued.
        plan = create_plan(db, {"name": "Matrix plan", "code": "matrix", "currency": "EUR",
                                "monthly_price": 900})
        last = Period.of(utcnow()).previous()
        subscribe(db, tenant_id, plan.id, at=last.start)
        invoice = close_period(db, tenant_id, last)
        finalize(db, tenant_id, invoice.id)
        params = {
            "tenant_id": str(tenant_id), "project_id": str(project_id), "device_id": str(device.id),
            "session_id": str(session.id), "key_id": str(api_key.id), "api_key_id": str(api_key.id),
            "webhook_id": str(webhook.id), "user_id": str(invited.id),
            "token": invite_token(SECRET, str(invited.id), None),
            "plan_id": str(plan.id), "invoice_id": str(invoice.id),
        }
        member = people["tenant_member"]
        endpoint_params = {"reset": {"token": reset_token(SECRET, str(member.id), member.password_hash)}}
        db.commit()
    yield World(app, params, passwords, endpoint_params)
    close_app(app)


def _url(rule: Rule, params: dict[str, str]) -> str:
    unknown = sorted(set(rule.arguments) - set(params))
    if unknown:
        pytest.fail(f"{rule.rule} ({rule.endpoint}): the route matrix has no real value for URL parameter(s) "
                    f"{unknown}; make such a row in the `world` fixture and add it to its params")
    path = rule.rule
    for name in rule.arguments:
        path = re.sub(rf"<(?:[^:<>]+:)?{name}>", params[name], path)
    return path


def _signed_in(app: Flask, email: str, password: str) -> FlaskClient:
    """A client signed in through the real form, as a person would."""
    client = app.test_client()
    page = client.get("/login")
    token = re.search(rb'name="csrf_token" value="([^"]+)"', page.data)
    assert token, "the sign-in page has no CSRF field"
    done = client.post("/login", data={"email": email, "password": password,
                                       "csrf_token": token.group(1).decode()})
    assert done.status_code == 302, f"signing in as {email} answered {done.status_code}"
    return client


def _declared(app: Flask, endpoint: str) -> tuple[str, ...] | None:
    return getattr(app.view_functions[endpoint], "voxfleet_roles", None)


def _is_login_redirect(response) -> bool:
    return response.status_code in (301, 302, 303, 307, 308) and \
        urlparse(response.headers.get("Location", "")).path == "/login"


def _verdict(expected: str, response) -> bool:
    code = response.status_code
    if expected == "allowed":
        return code == 200 or (300 <= code < 400 and not _is_login_redirect(response))
    if expected == "public":
        return code == 200 or 300 <= code < 400
    if expected == "forbidden":
        return code == 403
    if expected == "login":
        return _is_login_redirect(response)
    if expected in ("csrf", "bad-request"):
        return code == 400
    raise AssertionError(expected)


def _describe(response) -> str:
    location = response.headers.get("Location")
    return f"{response.status_code}" + (f" -> {location}" if location else "")


def test_every_portal_route_declares_who_may_use_it(world):
    undeclared = [f"{rule.rule} ({rule.endpoint})" for rule in _portal_rules(world.app)
                  if _declared(world.app, rule.endpoint) is None]
    assert not undeclared, ("routes without an @allow(...) declaration (refused to everyone): "
                            + ", ".join(undeclared))


def _clients(world) -> dict[str, FlaskClient]:
    """A signed-out browser and one signed in as each role."""
    clients: dict[str, FlaskClient] = {"anonymous": world.app.test_client()}
    for role in ROLES:
        clients[role] = _signed_in(world.app, *world.passwords[role])
    return clients


def test_every_route_and_role_gets_exactly_the_allowed_answer(world):
    app = world.app
    clients = _clients(world)
    failures: list[str] = []
    checked: set[str] = set()
    for rule in sorted(_portal_rules(app), key=lambda r: r.rule):
        roles = _declared(app, rule.endpoint)
        if roles is None or "GET" not in rule.methods:
            continue  # undeclared routes fail the test above; POST-only routes are checked below
        url = _url(rule, world.for_rule(rule))
        for who, client in clients.items():
            if rule.endpoint in BARE_GET_IS_BAD_REQUEST:
                expected = "bad-request"
            elif roles == (PUBLIC,):
                expected = "public"
            elif who == "anonymous":
                expected = "login"
            else:
                expected = "allowed" if who in roles else "forbidden"
            response = client.get(url)
            if not _verdict(expected, response):
                failures.append(f"GET {url} ({rule.endpoint}) as {who}: expected {expected}, "
                                f"got {_describe(response)}")
            checked.add(rule.endpoint)
    # The matrix cannot pass by finding nothing to check.
    assert {"signin.login", "operator.dashboard", "operator.tenant", "operator.users", "operator.billing",
            "operator.edit_plan", "operator.invoice", "tenant.billing", "tenant.invoice_csv"} <= checked
    assert not failures, f"{len(failures)} wrong answer(s):\n  " + "\n  ".join(failures)


def test_post_routes_refuse_requests_without_a_csrf_token_and_still_check_roles(world):
    app = world.app
    clients = _clients(world)
    failures: list[str] = []
    checked: set[str] = set()
    for rule in sorted(_portal_rules(app), key=lambda r: r.rule):
        roles = _declared(app, rule.endpoint)
        if roles is None or "POST" not in rule.methods:
            continue
        url = _url(rule, world.for_rule(rule))
        checked.add(rule.endpoint)
        for who, client in clients.items():
            # Without a token: refused before anything else, whoever asks (even the route's own roles).
            response = client.post(url, data={"reason": "matrix", "confirm": "x"})
            if not _verdict("csrf", response):
                failures.append(f"POST {url} ({rule.endpoint}) as {who} without a CSRF token: expected 400, "
                                f"got {_describe(response)}")
            if roles == (PUBLIC,) or who in roles:
                continue  # with a valid token it would really act: not done here
            with client.session_transaction() as session:
                token = session.setdefault("csrf", secrets.token_urlsafe(32))
            response = client.post(url, data={"csrf_token": token, "reason": "matrix", "confirm": "x"})
            expected = "login" if who == "anonymous" else "forbidden"
            if not _verdict(expected, response):
                failures.append(f"POST {url} ({rule.endpoint}) as {who} with a valid CSRF token: expected "
                                f"{expected}, got {_describe(response)}")
    assert {"signin.logout", "operator.suspend", "operator.disable_user", "operator.delete_plan",
            "operator.void_invoice", "tenant.change_plan"} <= checked
    assert not failures, f"{len(failures)} wrong answer(s):\n  " + "\n  ".join(failures)
