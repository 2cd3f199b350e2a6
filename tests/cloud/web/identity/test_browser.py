"""The identity pages in a real browser (Debian's Chromium through Playwright), as people use them:
accepting an invitation, changing a password and seeing another session end, resetting a forgotten
password by link, and signing in through Keycloak (the STAND-IN server) end to end with PKCE.
Each page is saved to docs/screenshots/ for the docs."""

from __future__ import annotations

import logging
import secrets

import pytest

from cloud.config import load_config
from cloud.db import Tenant, User
from cloud.scoping import PlatformScope
from cloud.web.identity import invites
from tests.cloud.browser import LiveCloud, screenshot, sign_in
from tests.conftest import free_port
from tests.stand_ins.keycloak import KeycloakStandIn

NEW_PASSWORD = "mountain river lantern 42"


def _user(cloud: LiveCloud, email: str):
    with cloud.sessions() as db:
        return PlatformScope(db).first(User, User.email == email)


def test_accept_an_invitation_and_land_in_the_tenant_portal(live_cloud, browser, caplog):
    caplog.set_level(logging.DEBUG)
    slug, owner = live_cloud.tenant("Harbour Hotels")
    app = live_cloud.running.app
    with app.app_context(), live_cloud.sessions() as db:
        tenant = PlatformScope(db).first(Tenant, Tenant.slug == slug)
        inviter = PlatformScope(db).first(User, User.email == owner.email)
        _, link = invites.invite_user(db, tenant.id, "maya@harbour.example", "tenant_admin", inviter)
        db.commit()
    assert link is not None and link.startswith(live_cloud.url + "/invite/")
    page = browser.new_page()
    page.goto(link)
    assert "Harbour Hotels" in page.inner_text("main")
    screenshot(page, "invite-accept")
    page.get_by_label("Your name").fill("Maya Admin")
    page.get_by_label("Password", exact=True).fill("too-short")
    page.get_by_label("Password again").fill("too-short")
    page.get_by_role("button", name="Create my account").click()
    page.wait_for_load_state()
    assert "Password too short" in page.inner_text("#new_password-error")
    assert page.get_by_label("Your name").input_value() == "Maya Admin"  # kept for the next try
    screenshot(page, "invite-accept-error")
    page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Create my account").click()
    page.wait_for_load_state()
    assert "/login" not in page.url and "/invite/" not in page.url
    assert "Harbour Hotels" in page.inner_text("header") and "Maya Admin" in page.inner_text("header")
    user = _user(live_cloud, "maya@harbour.example")
    assert user.role == "tenant_admin" and user.name == "Maya Admin"
    # The same link again: a clear page, not a form.
    other = browser.new_page()
    other.goto(link)
    assert "This invitation cannot be used" in other.inner_text("main")
    assert "already been accepted" in other.inner_text("main")
    screenshot(other, "invite-used")
    token = link.rsplit("/", 1)[1]
    assert token not in caplog.text and NEW_PASSWORD not in caplog.text
    assert '"GET /invite/*** HTTP/1.1"' in caplog.text  # the request log was written, masked


def test_change_password_and_the_other_session_ends(live_cloud, browser, chromium):
    _, owner = live_cloud.tenant("Lighthouse Labs")
    page = browser.new_page()
    sign_in(page, live_cloud, owner)
    elsewhere_context = chromium.new_context(viewport={"width": 390, "height": 844})  # a phone
    try:
        elsewhere = elsewhere_context.new_page()
        sign_in(elsewhere, live_cloud, owner)
        elsewhere.goto(f"{live_cloud.url}/account")
        assert "/login" not in elsewhere.url
        screenshot(elsewhere, "account-settings-phone")

        page.goto(f"{live_cloud.url}/account")
        screenshot(page, "account-settings")
        page.get_by_role("link", name="Change password").click()
        page.wait_for_load_state()
        page.get_by_label("Current password").fill("this-is-not-it-at-all")
        page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        page.get_by_label("New password again").fill(NEW_PASSWORD)
        page.keyboard.press("Enter")  # the keyboard alone submits the form
        page.wait_for_load_state()
        assert page.inner_text("#current_password-error") == "That is not your current password."
        screenshot(page, "password-change-error")
        page.get_by_label("Current password").fill(owner.password)
        page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        page.get_by_label("New password again").fill(NEW_PASSWORD)
        page.get_by_role("button", name="Change password").click()
        page.wait_for_load_state()
        assert page.url.endswith("/account")
        assert "You were signed out everywhere else." in page.inner_text("main")

        elsewhere.reload()
        assert "/login" in elsewhere.url  # that session ended with the old password
        page.goto(f"{live_cloud.url}/account")
        assert "/login" not in page.url  # this one goes on
    finally:
        elsewhere_context.close()


def test_reset_a_forgotten_password_by_link(live_cloud, browser):
    operator = live_cloud.operator()
    _, owner = live_cloud.tenant("Quay Cafe")
    page = browser.new_page()
    page.goto(f"{live_cloud.url}/login")
    page.get_by_role("link", name="Forgot your password?").click()
    page.wait_for_load_state()
    page.get_by_label("Email").fill(owner.email)
    screenshot(page, "password-forgot")
    page.get_by_role("button", name="Send me a link").click()
    page.wait_for_load_state()
    assert "If an account uses that email" in page.inner_text("main")
    screenshot(page, "password-forgot-sent")

    # No mail server here: the operator makes the link in their portal and passes it on.
    app = live_cloud.running.app
    with app.app_context(), live_cloud.sessions() as db:
        user = PlatformScope(db).first(User, User.email == owner.email)
        actor = PlatformScope(db).first(User, User.email == operator.email)
        link = invites.send_or_return_link(user, "reset", db=db, actor=actor)
        db.commit()
    assert link is not None
    page.goto(link)
    assert owner.email in page.inner_text("main")
    screenshot(page, "password-reset")
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set password and sign in").click()
    page.wait_for_load_state()
    assert "/login" not in page.url and "Quay Cafe" in page.inner_text("header")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state()

    sign_in(page, live_cloud, owner)  # the old password
    assert page.url.endswith("/login") and "do not match" in page.inner_text("main")
    owner.password = NEW_PASSWORD
    sign_in(page, live_cloud, owner)
    assert "/login" not in page.url
    page.goto(link)
    assert "already been used" in page.inner_text("main")
    screenshot(page, "password-reset-used")


@pytest.fixture
def keycloak_stand_in():
    server = KeycloakStandIn(realm="voxfleet", client_id="voxfleet-cloud").start()
    yield server
    server.stop()


@pytest.fixture
def sso_cloud(tmp_path, keycloak_stand_in):
    from cloud.serve import start

    config = load_config(tmp_path / "cloud", http_port=free_port(), mqtt_port=free_port(),
                         keycloak_url=keycloak_stand_in.url, keycloak_realm=keycloak_stand_in.realm,
                         keycloak_client_id=keycloak_stand_in.client_id,
                         keycloak_client_secret=keycloak_stand_in.client_secret)
    running = start(config)
    try:
        yield LiveCloud(running)
    finally:
        running.stop()


def test_keycloak_sign_in_end_to_end(sso_cloud, keycloak_stand_in, browser, caplog):
    caplog.set_level(logging.DEBUG)
    slug, _ = sso_cloud.tenant("Northwind Radio")
    admin = keycloak_stand_in.add_user(f"kim-{secrets.token_hex(3)}@northwind.example", "Kim Keycloak",
                                       groups=(f"/tenants/{slug}/tenant_admin",))
    member = keycloak_stand_in.add_user(f"lee-{secrets.token_hex(3)}@northwind.example", "Lee Member",
                                        organizations=(slug,))
    page = browser.new_page()
    page.goto(f"{sso_cloud.url}/login")
    screenshot(page, "sign-in-sso")
    keycloak_stand_in.login_as(admin)
    page.get_by_role("link", name="Sign in with single sign-on (Keycloak)").click()
    page.wait_for_load_state()
    assert page.url.startswith(sso_cloud.url) and "/login" not in page.url
    assert "Northwind Radio" in page.inner_text("header") and "Kim Keycloak" in page.inner_text("header")
    assert keycloak_stand_in.pkce_verified == 1 and keycloak_stand_in.pkce_failed == 0
    assert _user(sso_cloud, admin.email).role == "tenant_admin"
    page.goto(f"{sso_cloud.url}/account")
    assert "single sign-on (Keycloak)" in page.inner_text("main")
    screenshot(page, "account-settings-keycloak")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state()

    keycloak_stand_in.login_as(member)
    page.get_by_role("link", name="Sign in with single sign-on (Keycloak)").click()
    page.wait_for_load_state()
    assert "/login" not in page.url and "Lee Member" in page.inner_text("header")
    assert _user(sso_cloud, member.email).role == "tenant_member"
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state()

    keycloak_stand_in.fault = "audience"
    page.get_by_role("link", name="Sign in with single sign-on (Keycloak)").click()
    page.wait_for_load_state()
    assert "Single sign-on did not work" in page.inner_text("main")
    assert "not made for this service" in page.inner_text("main")
    screenshot(page, "keycloak-refused")
    assert keycloak_stand_in.client_secret not in caplog.text
    assert "/login/keycloak/callback?state=***" in caplog.text  # the request log was written, masked
    for request in keycloak_stand_in.auth_requests:
        assert request["state"] not in caplog.text and request["nonce"] not in caplog.text
