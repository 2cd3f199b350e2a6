"""Built-in accounts beyond signing in: password change, reset links, invitations, personal settings,
and mail — through the Flask test client, on SQLite and PostgreSQL. Each refusal is checked for its
message and, where it matters, its audit entry; no password, token or link may reach a log."""

from __future__ import annotations

import email
import email.policy
import logging
import re
import uuid

import pytest
from aiosmtpd.controller import Controller
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from cloud import security
from cloud.app import create_app
from cloud.config import load_config
from cloud.db import User
from cloud.scoping import PlatformScope, TenantScope
from cloud.web.identity import invites, preferences
from tests.cloud.identity_helpers import FormClient, audit_actions, make_operator, make_tenant, user_row
from tests.conftest import free_port

NEW_PASSWORD = "correct horse battery staple"


@pytest.fixture
def app(database, tmp_path):
    config = load_config(tmp_path, environ={"VOXFLEET_DATABASE_URL": database.url})
    app = create_app(config)
    yield app
    app.extensions["voxfleet.db"][0].dispose()


class Inbox:
    """A real SMTP server (aiosmtpd) on a free port, keeping what it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = f"Subject: {message['Subject']}\n\n{message.get_content()}"
        self.messages.append((list(envelope.rcpt_tos), text))
        return "250 OK"

    def links(self) -> list[str]:
        return [m for _, body in self.messages for m in re.findall(r"http://\S+", body)]


@pytest.fixture
def inbox():
    # The receiving server's own debug log holds whole messages; it is not ours to judge.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield handler, controller.port
    controller.stop()


@pytest.fixture
def mail_app(database, tmp_path, inbox):
    _, port = inbox
    config = load_config(tmp_path, environ={"VOXFLEET_DATABASE_URL": database.url}, smtp_host="127.0.0.1",
                         smtp_port=port, smtp_security="none", smtp_from="VoxFleet <vf@example.com>")
    app = create_app(config)
    yield app
    app.extensions["voxfleet.db"][0].dispose()


def _old_token(secret: str, salt: str, user_id: str, password_hash: str | None, age_s: int) -> str:
    """A link made ``age_s`` ago: signed with a timestamp in the past, as a clock would have."""

    class PastSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return super().get_timestamp() - age_s

    serializer = URLSafeTimedSerializer(secret, salt=salt, signer=PastSigner)
    return serializer.dumps({"user": user_id, "fp": security._fingerprint(password_hash)})


# --- password change ---------------------------------------------------------------------------------

def test_password_change_needs_the_current_password_and_ends_other_sessions(app, caplog):
    caplog.set_level(logging.DEBUG)
    _, owner, _ = make_tenant(app)
    here, elsewhere = FormClient(app), FormClient(app)
    assert here.sign_in(owner.email, owner.password).status_code == 302
    assert elsewhere.sign_in(owner.email, owner.password).status_code == 302

    here.get("/account/password")
    wrong = here.post("/account/password", {"current_password": "not-my-password-at-all",
                                            "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert wrong.status_code == 400 and b"That is not your current password." in wrong.data
    assert any(e.target == f"user:{owner.id}" for e in audit_actions(app, "password.change_failed"))

    weak = here.post("/account/password", {"current_password": owner.password, "new_password": "short",
                                           "confirm_password": "short"})
    assert weak.status_code == 400 and b"Password too short: at least 12 characters." in weak.data
    mismatch = here.post("/account/password", {"current_password": owner.password,
                                               "new_password": NEW_PASSWORD,
                                               "confirm_password": NEW_PASSWORD + "x"})
    assert mismatch.status_code == 400 and b"The two new passwords are not the same." in mismatch.data
    # Errors sit beside their field, marked for assistive technology.
    assert b'id="confirm_password-error"' in mismatch.data and b'aria-invalid="true"' in mismatch.data

    done = here.post("/account/password", {"current_password": owner.password, "new_password": NEW_PASSWORD,
                                           "confirm_password": NEW_PASSWORD})
    assert done.status_code == 302 and done.headers["Location"].endswith("/account")
    assert here.get("/account").status_code == 200          # this session carries on
    assert elsewhere.get("/account").status_code == 302     # the other one is over
    assert [e.target for e in audit_actions(app, "password.changed")] == [f"user:{owner.id}"]
    fresh = FormClient(app)
    assert fresh.sign_in(owner.email, owner.password).status_code == 401
    assert fresh.sign_in(owner.email, NEW_PASSWORD).status_code == 302
    assert NEW_PASSWORD not in caplog.text and owner.password not in caplog.text


def test_password_change_is_throttled(app):
    _, owner, _ = make_tenant(app)
    client = FormClient(app)
    client.sign_in(owner.email, owner.password)
    client.get("/account/password")
    form = {"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD}
    codes = [client.post("/account/password", {**form, "current_password": f"wrong-password-{i}"}).status_code
             for i in range(6)]
    assert codes == [400] * 5 + [429]
    assert audit_actions(app, "password.change_throttled")


# --- password reset ----------------------------------------------------------------------------------

def test_reset_request_never_says_whether_the_account_exists(app):
    _, owner, _ = make_tenant(app)
    client = FormClient(app)
    client.get("/password/forgot")
    known = client.post("/password/forgot", {"email": owner.email})
    unknown = client.post("/password/forgot", {"email": "nobody-here@example.com"})
    assert known.status_code == unknown.status_code == 200
    strip = lambda page, email: page.data.replace(email.encode(), b"EMAIL")  # noqa: E731
    assert strip(known, owner.email) == strip(unknown, "nobody-here@example.com")
    assert b"If an account uses that email" in known.data
    requested = {e.target: e.details["delivered"] for e in audit_actions(app, "password_reset.requested")}
    assert requested == {f"email:{owner.email}": "no mail server",
                         "email:nobody-here@example.com": "no account"}
    bad = client.post("/password/forgot", {"email": "not an email"})
    assert bad.status_code == 400 and b"Enter an email address" in bad.data
    assert b'value="not an email"' in bad.data


def test_reset_link_works_once_and_the_old_password_stops(app, caplog):
    caplog.set_level(logging.DEBUG)
    operator = make_operator(app)
    _, owner, _ = make_tenant(app)
    other = FormClient(app)
    other.sign_in(owner.email, owner.password)
    with app.app_context(), app.extensions["voxfleet.db"][1]() as db:
        user = PlatformScope(db).first(User, User.email == owner.email)
        link = invites.send_or_return_link(user, "reset", db=db, actor=f"user:{operator.id}")
        db.commit()
    base_url = app.extensions["voxfleet.config"].base_url
    assert link is not None and link.startswith(base_url + "/password/reset/")
    path = link.split("://", 1)[1].split("/", 1)[1]
    client = FormClient(app)
    page = client.get("/" + path)
    assert page.status_code == 200 and owner.email.encode() in page.data
    assert page.headers["Referrer-Policy"] == "no-referrer"
    weak = client.post("/" + path, {"new_password": "aaaaaaaaaaaa", "confirm_password": "aaaaaaaaaaaa"})
    assert weak.status_code == 400 and b"Password too simple" in weak.data
    done = client.post("/" + path, {"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert done.status_code == 302
    assert client.get("/account").status_code == 200         # signed in by the reset
    assert other.get("/account").status_code == 302          # the other session ended
    assert FormClient(app).sign_in(owner.email, owner.password).status_code == 401
    again = FormClient(app).get("/" + path)
    assert again.status_code == 410 and b"already been used" in again.data
    assert [e.details["reason"] for e in audit_actions(app, "password_reset.link_refused")] == ["used"]
    made = audit_actions(app, "password_reset.link_made")
    assert made[0].actor == f"user:{operator.id}" and made[0].details == {"delivered": "shown"}
    token = path.rsplit("/", 1)[1]
    assert token not in caplog.text and NEW_PASSWORD not in caplog.text


def test_expired_and_forged_reset_links_get_a_clear_page(app):
    _, owner, _ = make_tenant(app)
    row = user_row(app, owner.email)
    secret = app.extensions["voxfleet.config"].secret_key.get_secret_value()
    expired = _old_token(secret, "voxfleet.reset", owner.id, row.password_hash, age_s=2 * 3600)
    client = FormClient(app)
    page = client.get(f"/password/reset/{expired}")
    assert page.status_code == 410 and b"This password reset link has expired." in page.data
    assert b"Ask for a new link" in page.data
    forged = client.get(f"/password/reset/{expired[:-4]}AAAA")
    assert forged.status_code == 400 and b"not valid" in forged.data
    # An invite link is not a reset link, even for the same person.
    invite = security.invite_token(secret, owner.id, row.password_hash)
    assert client.get(f"/password/reset/{invite}").status_code == 400
    reasons = sorted(e.details["reason"] for e in audit_actions(app, "password_reset.link_refused"))
    assert reasons == ["expired", "invalid", "invalid"]


def test_disabled_people_cannot_use_their_links(app):
    _, owner, _ = make_tenant(app)
    with app.app_context(), app.extensions["voxfleet.db"][1]() as db:
        user = PlatformScope(db).first(User, User.email == owner.email)
        link = invites.reset_link_for(user)
        user.disabled = True
        db.commit()
    page = FormClient(app).get("/" + link.split("/", 3)[3])
    assert page.status_code == 400 and b"This account is disabled." in page.data
    assert [e.details["reason"] for e in audit_actions(app, "password_reset.link_refused")] == ["disabled"]


# --- invitations -------------------------------------------------------------------------------------

def test_invite_user_then_accept_sets_name_and_password_and_signs_in(app, caplog):
    caplog.set_level(logging.DEBUG)
    tenant, owner, _ = make_tenant(app, name="Acme Hotels")
    with app.app_context(), app.extensions["voxfleet.db"][1]() as db:
        inviter = PlatformScope(db).first(User, User.email == owner.email)
        scope = TenantScope(db, tenant.id)
        user, link = invites.invite_user(scope, tenant.id, "New.Person@Example.com", "tenant_admin", inviter)
        db.commit()
        assert user.email == "new.person@example.com" and user.password_hash is None and link
        with pytest.raises(invites.InviteError, match="already has an account") as taken:
            invites.invite_user(scope, tenant.id, "new.person@example.com", "tenant_member", inviter)
        assert taken.value.field == "email"
        with pytest.raises(invites.InviteError) as bad_role:
            invites.invite_user(scope, tenant.id, "x@example.com", "platform_admin", inviter)
        assert bad_role.value.field == "role"
        with pytest.raises(invites.InviteError, match="another organisation"):
            invites.invite_user(scope, uuid.uuid4(), "y@example.com", "tenant_member", inviter)
        db.rollback()
    entry = audit_actions(app, "user.invite")[0]
    assert entry.actor == f"user:{owner.id}" and entry.tenant_id == tenant.id and entry.details == {
        "role": "tenant_admin"}
    path = "/" + link.split("/", 3)[3]
    client = FormClient(app)
    page = client.get(path)
    assert b"Acme Hotels" in page.data and b"new.person@example.com" in page.data
    missing = client.post(path, {"name": "", "new_password": "short", "confirm_password": "short"})
    assert missing.status_code == 400
    assert b"Tell us your name" in missing.data and b"Password too short" in missing.data
    done = client.post(path, {"name": "Nia Person", "new_password": NEW_PASSWORD,
                              "confirm_password": NEW_PASSWORD})
    assert done.status_code == 302 and "/login" not in done.headers["Location"]
    assert client.get(done.headers["Location"]).status_code == 200  # the tenant portal's home
    row = user_row(app, "new.person@example.com")
    assert row.name == "Nia Person" and security.verify_password(row.password_hash, NEW_PASSWORD)
    assert row.last_login_at is not None
    used = FormClient(app).get(path)
    assert used.status_code == 410 and b"already been accepted" in used.data
    assert NEW_PASSWORD not in caplog.text and path.rsplit("/", 1)[1] not in caplog.text


def test_expired_invitation_says_to_ask_for_a_new_one(app):
    tenant, _, _ = make_tenant(app, owner_password=None)
    with app.extensions["voxfleet.db"][1]() as db:
        owner = TenantScope(db, tenant.id).first(User, User.role == "tenant_owner")
        owner_id = str(owner.id)
    secret = app.extensions["voxfleet.config"].secret_key.get_secret_value()
    expired = _old_token(secret, "voxfleet.invite", owner_id, None, age_s=8 * 24 * 3600)
    page = FormClient(app).get(f"/invite/{expired}")
    assert page.status_code == 410 and b"This invite link has expired." in page.data
    assert b"Ask whoever invited you to send a new invitation." in page.data
    assert [e.details["reason"] for e in audit_actions(app, "invite.link_refused")] == ["expired"]


def test_invitations_and_resets_are_mailed_when_smtp_is_configured(mail_app, inbox, caplog):
    caplog.set_level(logging.DEBUG)
    handler, _ = inbox
    tenant, owner, _ = make_tenant(mail_app, name="Mailed Ltd")
    with mail_app.app_context(), mail_app.extensions["voxfleet.db"][1]() as db:
        user, link = invites.invite_user(db, tenant.id, "mailed@example.com", "tenant_member",
                                         f"user:{owner.id}")
        db.commit()
    assert link is None  # mailed, so nothing for the admin to pass on
    (to, body), = handler.messages
    assert to == ["mailed@example.com"] and "Subject: You are invited to Mailed Ltd on VoxFleet" in body
    assert len(handler.links()) == 1 and "/invite/" in handler.links()[0]
    client = FormClient(mail_app)
    client.get("/password/forgot")
    assert client.post("/password/forgot", {"email": owner.email}).status_code == 200
    assert client.post("/password/forgot", {"email": "nobody@example.com"}).status_code == 200
    assert [m[0] for m in handler.messages] == [["mailed@example.com"], [owner.email]]
    reset_link = handler.links()[-1]
    assert "/password/reset/" in reset_link
    path = "/" + reset_link.split("/", 3)[3]
    client.get(path)
    done = client.post(path, {"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert done.status_code == 302
    for link_seen in handler.links():
        assert link_seen.rsplit("/", 1)[1] not in caplog.text


def test_a_mail_server_that_cannot_be_reached_leaves_the_link_with_the_admin(database, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    config = load_config(tmp_path, environ={"VOXFLEET_DATABASE_URL": database.url}, smtp_host="127.0.0.1",
                         smtp_port=free_port(), smtp_security="none", smtp_password="smtp-secret-pw",
                         smtp_username="vf")
    app = create_app(config)
    tenant, owner, _ = make_tenant(app)
    with app.app_context(), app.extensions["voxfleet.db"][1]() as db:
        _, link = invites.invite_user(db, tenant.id, "late@example.com", "tenant_member", f"user:{owner.id}")
        db.commit()
    assert link and "/invite/" in link
    assert audit_actions(app, "invite.link_made")[0].details == {"delivered": "mail_failed"}
    assert "mail to example.com via 127.0.0.1" in caplog.text and "smtp-secret-pw" not in caplog.text
    assert link.rsplit("/", 1)[1] not in caplog.text
    app.extensions["voxfleet.db"][0].dispose()


# --- personal settings ---------------------------------------------------------------------------------

def test_personal_settings_keep_name_and_notification_preferences(app):
    _, owner, _ = make_tenant(app)
    client = FormClient(app)
    client.sign_in(owner.email, owner.password)
    page = client.get("/account")
    assert b'id="pref-device_offline"' in page.data and b"checked" in page.data
    too_long = client.post("/account", {"section": "profile", "name": "x" * 201})
    assert too_long.status_code == 400 and b"Use at most 200 characters." in too_long.data
    assert b'value="' + b"x" * 201 + b'"' in too_long.data  # the input is kept
    assert client.post("/account", {"section": "profile", "name": "Olga Owner"}).status_code == 302
    assert client.post("/account", {"section": "notifications", "weekly_summary": "on"}).status_code == 302
    assert user_row(app, owner.email).name == "Olga Owner"
    with app.extensions["voxfleet.db"][1]() as db:
        user = PlatformScope(db).first(User, User.email == owner.email)
        assert preferences.load(db, user) == {"device_offline": False, "weekly_summary": True,
                                              "security": False}
    page = client.get("/account")
    assert re.search(rb'id="pref-weekly_summary" name="weekly_summary" checked', page.data)
    assert not re.search(rb'id="pref-device_offline" name="device_offline" checked', page.data)
