"""What the portals' browser tests share: a live cloud (``cloud.serve.start`` on free ports: the web app,
the embedded broker, ingest and webhook deliveries, on SQLite) and Debian's Chromium driven by
Playwright, with helpers to sign in as anyone and to save a screenshot for the docs.

The fixtures are registered for every test in tests/conftest.py (one Playwright per test session).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloud import admin
from cloud.config import load_config
from cloud.db import User
from cloud.scoping import PlatformScope
from cloud.security import hash_password
from tests.conftest import free_port

CHROMIUM = os.environ.get("VOXFLEET_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@dataclass
class Person:
    email: str
    password: str
    role: str
    tenant_slug: str | None = None


class LiveCloud:
    """A running cloud and ways to make the people and tenants a test needs, as operators do."""

    def __init__(self, running) -> None:
        self.running = running
        self.url = running.url
        self.sessions = running.app.extensions["voxfleet.db"][1]
        self.config = running.config

    def operator(self) -> Person:
        email, password = f"op-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(12)
        with self.sessions() as db:
            admin.create_operator(db, email, password)
            db.commit()
        return Person(email, password, "platform_admin")

    def tenant(self, name: str | None = None) -> tuple[str, Person]:
        """A tenant with its owner, whose password is set (as after following the invite link)."""
        name = name or f"Tenant {secrets.token_hex(3)}"
        owner = f"owner-{secrets.token_hex(4)}@example.com"
        with self.sessions() as db:
            made = admin.create_tenant(db, name, owner, self.config.secret_key.get_secret_value())
            password = secrets.token_urlsafe(12)
            user = PlatformScope(db).first(User, User.email == owner)
            user.password_hash = hash_password(password)
            db.commit()
            slug = made.tenant.slug
        return slug, Person(owner, password, "tenant_owner", slug)

    def member(self, tenant_slug: str, role: str = "tenant_member") -> Person:
        email, password = f"{role}-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(12)
        with self.sessions() as db:
            tenant = admin.find_tenant(db, tenant_slug)
            PlatformScope(db).add(User(email=email, role=role, tenant_id=tenant.id,
                                       password_hash=hash_password(password), name=role.replace("_", " ")))
            db.commit()
        return Person(email, password, role, tenant_slug)


@pytest.fixture
def live_cloud(tmp_path) -> Iterator[LiveCloud]:
    from cloud.serve import start

    config = load_config(tmp_path / "cloud", http_port=free_port(), mqtt_port=free_port(),
                         webhooks_allow_private=True)
    running = start(config)
    try:
        yield LiveCloud(running)
    finally:
        running.stop()


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser(chromium):
    """A fresh browser context (no cookies) per test; phone-sized pages are a ``new_page`` away."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    yield context
    context.close()


def sign_in(page, cloud: LiveCloud, person: Person) -> None:
    page.goto(f"{cloud.url}/login")
    page.get_by_label("Email").fill(person.email)
    page.get_by_label("Password").fill(person.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def screenshot(page, name: str) -> Path:
    """Save ``docs/screenshots/<name>.png`` (full page) for the docs."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^a-z0-9-]+', '-', name.lower())}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
