"""Shared set-up for the tenant and member portal tests (no tests here): an app on each database, tenants
made as operators make them (cloud.admin), people of each role, and Flask test clients signed in as them.

Signing in sets the session the way ``cloud.web.access.login_user`` does (user id and credential
fingerprint) instead of posting the login form: the form is tested in test_signin.py and its throttle
would otherwise limit how many people a property test can sign in.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cloud import admin
from cloud.db import User
from cloud.scoping import PlatformScope, TenantScope
from cloud.web.access import fingerprint
from tests.cloud.api.test_fixtures import close_app, make_app

CSRF = "test-csrf-token-0123456789"


@dataclass
class Org:
    id: uuid.UUID
    slug: str
    name: str
    project_id: uuid.UUID
    owner_id: uuid.UUID


class Portal:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self.sessions = app.extensions["voxfleet.db"][1]

    def tenant(self, name: str | None = None) -> Org:
        name = name or f"Org {uuid.uuid4().hex[:6]}"
        with self.sessions() as db:
            made = admin.create_tenant(db, name, f"owner-{uuid.uuid4().hex[:8]}@example.com", "secret-key")
            return Org(made.tenant.id, made.tenant.slug, name, made.project.id, made.owner.id)

    def person(self, org: Org, role: str, email: str | None = None) -> uuid.UUID:
        with self.sessions() as db:
            user = TenantScope(db, org.id).add(
                User(
                    email=email or f"{role}-{uuid.uuid4().hex[:8]}@example.com",
                    role=role,
                    password_hash="not-used-here",
                )
            )
            db.commit()
            return user.id

    def client(self, user_id: uuid.UUID) -> FlaskClient:
        client = self.app.test_client()
        with self.sessions() as db:
            user = PlatformScope(db).get(User, user_id)
            assert user is not None
            fp = fingerprint(user)
        with client.session_transaction() as session:
            session["uid"], session["ufp"], session["csrf"] = str(user_id), fp, CSRF
        return client

    def scope(self, db, org: Org) -> TenantScope:
        return TenantScope(db, org.id)

    def rows(self, model: type, *where: Any) -> list[Any]:
        with self.sessions() as db:
            return PlatformScope(db).all(model, *where)


def post(client: FlaskClient, path: str, data: dict[str, Any] | None = None, **kwargs: Any):
    """A form POST with the session's CSRF token, as the page's form sends it."""
    return client.post(path, data={**(data or {}), "csrf_token": CSRF}, **kwargs)


def text(response) -> str:
    """The page's visible text, roughly (tags dropped), for asserting on what a person reads."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)))


@pytest.fixture(name="portal")
def portal_fixture(database, tmp_path) -> Iterator[Portal]:
    """Import ``portal_fixture`` into a test module to use the ``portal`` fixture there."""
    app = make_app(database.url, tmp_path)
    yield Portal(app)
    close_app(app)
