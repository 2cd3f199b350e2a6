"""What the identity tests share: an app on the test database (SQLite and PostgreSQL), a client that
fills in CSRF tokens as the browser does, and people made the way operators make them."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from cloud import admin
from cloud.db import AuditEntry, User
from cloud.scoping import PlatformScope
from cloud.security import hash_password

CSRF = re.compile(rb'name="csrf_token" value="([^"]+)"')


class FormClient:
    """Flask's test client, posting forms with the CSRF token of the page it last read."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.client = app.test_client()
        self.token: str | None = None

    def get(self, path: str, **kwargs: Any) -> Any:
        response = self.client.get(path, **kwargs)
        found = CSRF.search(response.data)
        if found:
            self.token = found.group(1).decode()
        return response

    def post(self, path: str, data: dict[str, str] | None = None, **kwargs: Any) -> Any:
        if self.token is None:
            self.get("/login")
        return self.client.post(path, data={**(data or {}), "csrf_token": self.token or ""}, **kwargs)

    def sign_in(self, email: str, password: str) -> Any:
        self.get("/login")
        return self.post("/login", {"email": email, "password": password})


@dataclass
class Person:
    id: str
    email: str
    password: str | None
    tenant_id: Any = None


def make_tenant(app: Any, name: str | None = None, slug: str | None = None,
                owner_password: str | None = "a-good-long-password-1") -> tuple[Any, Person, str]:
    """(tenant, owner, invite token): the owner's password set unless owner_password is None."""
    sessions = app.extensions["voxfleet.db"][1]
    config = app.extensions["voxfleet.config"]
    with sessions() as db:
        made = admin.create_tenant(db, name or f"Tenant {secrets.token_hex(3)}",
                                   f"owner-{secrets.token_hex(4)}@example.com",
                                   config.secret_key.get_secret_value(), slug=slug)
        owner = PlatformScope(db).get(User, made.owner.id)
        if owner_password:
            owner.password_hash = hash_password(owner_password)
        db.commit()
        person = Person(str(owner.id), owner.email, owner_password, made.tenant.id)
        return made.tenant, person, made.invite_token


def make_operator(app: Any) -> Person:
    sessions = app.extensions["voxfleet.db"][1]
    email, password = f"op-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(16)
    with sessions() as db:
        user = admin.create_operator(db, email, password)
        return Person(str(user.id), email, password)


def audit_actions(app: Any, action: str) -> list[AuditEntry]:
    with app.extensions["voxfleet.db"][1]() as db:
        return PlatformScope(db).all(AuditEntry, AuditEntry.action == action)


def user_row(app: Any, email: str) -> User:
    with app.extensions["voxfleet.db"][1]() as db:
        found = PlatformScope(db).first(User, User.email == email)
        assert found is not None
        return found
