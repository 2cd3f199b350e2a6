"""Signing in with built-in accounts, in a real browser and through the form: each role lands on its
own start page, wrong passwords and forged forms are refused, and sign-ins are throttled and audited."""

from __future__ import annotations

import re

from cloud.db import AuditEntry
from cloud.scoping import PlatformScope
from tests.cloud.browser import screenshot, sign_in


def test_sign_in_lands_each_role_on_its_portal_and_signs_out(live_cloud, browser):
    slug, owner = live_cloud.tenant("Acme Hotels")
    page = browser.new_page()
    page.goto(live_cloud.url)
    assert page.url.endswith("/login")
    screenshot(page, "sign-in")
    sign_in(page, live_cloud, owner)
    assert "/login" not in page.url
    assert "Acme Hotels" in page.inner_text("header")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state()
    assert page.url.endswith("/login") and "You are signed out." in page.inner_text("main")


def test_wrong_password_is_refused_without_saying_which_part_was_wrong(live_cloud, browser):
    operator = live_cloud.operator()
    page = browser.new_page()
    operator.password = "not-the-password"
    sign_in(page, live_cloud, operator)
    assert page.url.endswith("/login")
    assert "That email and password do not match." in page.inner_text("main")
    assert page.get_by_label("Email").input_value() == operator.email  # kept for the next try
    with live_cloud.sessions() as db:
        failed = PlatformScope(db).all(AuditEntry, AuditEntry.action == "signin.failed")
        assert any(e.target == f"email:{operator.email}" for e in failed)
        assert all("not-the-password" not in str(e.details) for e in failed)


def test_forged_form_and_repeated_failures(live_cloud):
    operator = live_cloud.operator()
    client = live_cloud.running.app.test_client()
    forged = client.post("/login", data={"email": operator.email, "password": operator.password})
    assert forged.status_code == 400  # no CSRF token: refused before the password is even checked
    page = client.get("/login")
    token = re.search(rb'name="csrf_token" value="([^"]+)"', page.data).group(1).decode()
    codes = [client.post("/login", data={"email": operator.email, "password": "wrong-password-1",
                                         "csrf_token": token}).status_code for _ in range(7)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429, 429]
    # Even the right password waits out the throttle: guessing gains nothing.
    right = client.post("/login", data={"email": operator.email, "password": operator.password,
                                        "csrf_token": token})
    assert right.status_code == 429


def test_open_redirects_are_refused(live_cloud):
    operator = live_cloud.operator()
    client = live_cloud.running.app.test_client()
    token = re.search(rb'name="csrf_token" value="([^"]+)"', client.get("/login").data).group(1).decode()
    done = client.post("/login?next=https://evil.example/x", data={
        "email": operator.email, "password": operator.password, "csrf_token": token})
    assert done.status_code == 302 and not done.headers["Location"].startswith("https://evil")


def _signed_in_client(cloud, person):
    client = cloud.running.app.test_client()
    token = re.search(rb'name="csrf_token" value="([^"]+)"', client.get("/login").data).group(1).decode()
    done = client.post("/login", data={"email": person.email, "password": person.password,
                                       "csrf_token": token})
    assert done.status_code == 302, done.data[:300]
    # Signing in starts a new session, with a new CSRF token (the sign-out form carries it).
    token = re.search(rb'name="csrf_token" value="([^"]+)"', client.get("/account").data).group(1).decode()
    return client, token


def test_a_session_from_before_a_disable_stays_dead_after_enable(live_cloud):
    from cloud.db import User

    slug, owner = live_cloud.tenant()
    member = live_cloud.member(slug)
    operator = live_cloud.operator()
    theirs, _ = _signed_in_client(live_cloud, member)
    assert theirs.get("/member/").status_code == 200
    ops, token = _signed_in_client(live_cloud, operator)
    with live_cloud.sessions() as db:
        user_id = PlatformScope(db).first(User, User.email == member.email).id
    for action in ("disable", "enable"):
        answer = ops.post(f"/operator/users/{user_id}/{action}", data={"csrf_token": token})
        assert answer.status_code == 302
    # Enabled again, but the cookie from before the disable does not come back to life.
    assert theirs.get("/member/").headers["Location"].startswith("/login")
    fresh, _ = _signed_in_client(live_cloud, member)
    assert fresh.get("/member/").status_code == 200
