"""Sign-in through Keycloak (OIDC code flow with PKCE) and team management through its admin API,
against the Keycloak STAND-IN server in tests/stand_ins/keycloak.py, on SQLite and PostgreSQL.

Every check on the ID token is proved by a token that fails exactly that check; every refusal is a
page that says what happened and an audit entry that says which check failed.
"""

from __future__ import annotations

import http.client
import logging
from urllib.parse import parse_qs, urlsplit

import pytest

from cloud.app import create_app
from cloud.config import KeycloakRealmConfig, load_config
from cloud.db import Tenant, User
from cloud.scoping import PlatformScope
from cloud.web.identity import keycloak as kc
from tests.cloud.identity_helpers import FormClient, audit_actions, make_tenant, user_row
from tests.stand_ins.keycloak import KeycloakStandIn


@pytest.fixture
def stand_in():
    server = KeycloakStandIn().start()
    yield server
    server.stop()


def _app(database, tmp_path, stand_in, **overrides):
    settings = dict(keycloak_url=stand_in.url, keycloak_realm=stand_in.realm,
                    keycloak_client_id=stand_in.client_id, keycloak_client_secret=stand_in.client_secret)
    settings.update(overrides)
    config = load_config(tmp_path, environ={"VOXFLEET_DATABASE_URL": database.url}, **settings)
    return create_app(config)


@pytest.fixture
def app(database, tmp_path, stand_in):
    app = _app(database, tmp_path, stand_in)
    yield app
    app.extensions["voxfleet.db"][0].dispose()


def keycloak_sign_in(client: FormClient, start: str = "/login/keycloak", state: str | None = None):
    """What the browser does: our redirect, Keycloak's (stand-in's) redirect back, our callback."""
    begin = client.client.get(start)
    assert begin.status_code == 302, begin.data[:500]
    # http.client, as a browser would fetch it, and without urllib3's debug log of the whole URL.
    target = urlsplit(begin.headers["Location"])
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
    connection.request("GET", f"{target.path}?{target.query}")
    back = connection.getresponse()
    assert back.status == 302, back.read()
    callback = urlsplit(back.getheader("Location"))
    connection.close()
    query = parse_qs(callback.query)
    if state is not None:
        query["state"] = [state]
    return client.client.get(callback.path, query_string={k: v[0] for k, v in query.items()}), begin


def test_login_with_pkce_creates_the_user_with_tenant_and_role_from_groups(app, stand_in, caplog):
    caplog.set_level(logging.DEBUG)
    tenant, _, _ = make_tenant(app, slug="acme-hotels")
    person = stand_in.add_user("ana@acme.example", "Ana Admin", groups=("/tenants/acme-hotels/tenant_admin",
                                                                        "/tenants/acme-hotels/member"))
    stand_in.login_as(person)
    client = FormClient(app)
    done, begin = keycloak_sign_in(client)
    assert done.status_code == 302 and "/login" not in done.headers["Location"]
    # The request carried an S256 challenge, and the stand-in checked our verifier against it.
    sent = parse_qs(urlsplit(begin.headers["Location"]).query)
    assert sent["code_challenge_method"] == ["S256"] and len(sent["code_challenge"][0]) == 43
    assert sent["nonce"][0] and sent["state"][0] and sent["scope"] == ["openid email profile"]
    assert stand_in.pkce_verified == 1 and stand_in.pkce_failed == 0
    row = user_row(app, "ana@acme.example")
    assert (row.role, row.tenant_id, row.name) == ("tenant_admin", tenant.id, "Ana Admin")
    assert row.password_hash is None
    realm = kc.Realm("platform", app.extensions["voxfleet.config"].keycloak)
    assert row.external_subject == realm.subject_key(person.id)
    signed_in = audit_actions(app, "signin.succeeded")
    assert signed_in[-1].details["method"] == "keycloak:platform" and signed_in[-1].tenant_id == tenant.id
    assert client.client.get("/account").status_code == 200
    assert b"single sign-on (Keycloak)" in client.client.get("/account").data

    # The token is the authority: a new group membership changes the role at the next sign-in.
    stand_in.members[stand_in.ensure_group("/tenants/acme-hotels/tenant_admin").id].discard(person.id)
    again, _ = keycloak_sign_in(FormClient(app))
    assert again.status_code == 302 and user_row(app, "ana@acme.example").role == "tenant_member"
    assert audit_actions(app, "user.role_change")[0].details == {
        "old": "tenant_admin", "new": "tenant_member", "method": "keycloak"}
    assert client.client.get("/account").status_code == 302  # the role change ended the old session
    for secret in (stand_in.client_secret, sent["state"][0], sent["nonce"][0]):
        assert secret not in caplog.text


@pytest.mark.parametrize(("fault", "reason", "message"), [
    ("issuer", "wrong issuer", b"unexpected issuer"),
    ("audience", "wrong audience", b"not made for this service"),
    ("expired", "expired", b"has expired"),
    ("signature", "bad signature", b"signature is not valid"),
    ("nonce", "nonce mismatch", b"does not belong to this sign-in"),
])
def test_bad_id_tokens_are_refused_with_a_page_and_an_audit_entry(app, stand_in, fault, reason, message):
    make_tenant(app, slug="acme")
    stand_in.login_as(stand_in.add_user("bo@acme.example", groups=("/tenants/acme/tenant_owner",)))
    stand_in.fault = fault
    client = FormClient(app)
    refused, _ = keycloak_sign_in(client)
    assert refused.status_code == 401 and message in refused.data
    assert b"Single sign-on did not work" in refused.data
    assert [e.details["reason"] for e in audit_actions(app, "signin.keycloak_refused")] == [reason]
    assert not audit_actions(app, "signin.succeeded")
    with app.extensions["voxfleet.db"][1]() as db:
        assert PlatformScope(db).first(User, User.email == "bo@acme.example") is None
    assert client.client.get("/account").status_code == 302


def test_a_callback_that_did_not_start_here_is_refused(app, stand_in):
    make_tenant(app, slug="acme")
    stand_in.login_as(stand_in.add_user("cy@acme.example", groups=("/tenants/acme/tenant_member",)))
    forged, _ = keycloak_sign_in(FormClient(app), state="attacker-chosen-state")
    assert forged.status_code == 400 and b"its state does not match" in forged.data
    cold = FormClient(app).client.get("/login/keycloak/callback?code=abc&state=xyz")
    assert cold.status_code == 400 and b"did not start here" in cold.data
    reasons = [e.details["reason"] for e in audit_actions(app, "signin.keycloak_refused")]
    assert reasons == ["state mismatch", "no sign-in in progress"]
    assert stand_in.pkce_verified == 0  # the code was never even exchanged


def test_disabled_users_and_suspended_tenants_are_refused(app, stand_in):
    tenant, _, _ = make_tenant(app, slug="acme")
    person = stand_in.add_user("di@acme.example", groups=("/tenants/acme/tenant_member",))
    stand_in.login_as(person)
    assert keycloak_sign_in(FormClient(app))[0].status_code == 302
    with app.extensions["voxfleet.db"][1]() as db:
        PlatformScope(db).first(User, User.email == "di@acme.example").disabled = True
        db.commit()
    refused, _ = keycloak_sign_in(FormClient(app))
    assert refused.status_code == 403 and b"This account is disabled." in refused.data
    with app.extensions["voxfleet.db"][1]() as db:
        user = PlatformScope(db).first(User, User.email == "di@acme.example")
        user.disabled = False
        PlatformScope(db).get(Tenant, tenant.id).status = "suspended"
        db.commit()
    suspended, _ = keycloak_sign_in(FormClient(app))
    assert suspended.status_code == 403 and b"suspended" in suspended.data
    assert [e.details["reason"] for e in audit_actions(app, "signin.keycloak_refused")] == [
        "user disabled", "tenant suspended"]


def test_organisation_claim_and_the_edges_of_the_mapping(app, stand_in):
    tenant, owner, _ = make_tenant(app, slug="globex")
    make_tenant(app, slug="initech")
    member = stand_in.add_user("org@globex.example", organizations=("globex",))
    stand_in.login_as(member)
    assert keycloak_sign_in(FormClient(app))[0].status_code == 302
    row = user_row(app, "org@globex.example")
    assert (row.role, row.tenant_id) == ("tenant_member", tenant.id)

    cases = [
        (stand_in.add_user("two@x.example", organizations=("globex", "initech")), "several tenants in token"),
        (stand_in.add_user("none@x.example"), "no tenant in token"),
        (stand_in.add_user("ghost@x.example", groups=("/tenants/nowhere/tenant_owner",)),
         "unknown tenant nowhere"),
        (stand_in.add_user("op@x.example", groups=("/platform/platform_admin",)),
         "operator via keycloak not allowed"),
        # Somebody with a password account here cannot be taken over by a Keycloak account of that email.
        (stand_in.add_user(owner.email, groups=("/tenants/globex/tenant_owner",)), "email taken"),
    ]
    for person, _ in cases:
        stand_in.login_as(person)
        refused, _ = keycloak_sign_in(FormClient(app))
        assert refused.status_code == 403
    reasons = [e.details["reason"] for e in audit_actions(app, "signin.keycloak_refused")]
    assert reasons == [r for _, r in cases]
    assert user_row(app, owner.email).external_subject is None


def test_email_from_userinfo_when_the_id_token_has_no_profile(app, stand_in):
    make_tenant(app, slug="acme")
    stand_in.profile_in_id_token = False
    stand_in.login_as(stand_in.add_user("quiet@acme.example", "Quinn Quiet", groups=("/tenants/acme/admin",)))
    assert keycloak_sign_in(FormClient(app))[0].status_code == 302
    row = user_row(app, "quiet@acme.example")
    assert (row.role, row.name) == ("tenant_admin", "Quinn Quiet")


def test_operators_only_when_the_platform_realm_is_allowed_to_make_them(database, tmp_path, stand_in):
    app = _app(database, tmp_path, stand_in, keycloak_operators=True)
    person = stand_in.add_user("root@platform.example", groups=("/platform/platform_admin",))
    stand_in.login_as(person)
    done, _ = keycloak_sign_in(FormClient(app))
    assert done.status_code == 302
    row = user_row(app, "root@platform.example")
    assert (row.role, row.tenant_id) == ("platform_admin", None)
    app.extensions["voxfleet.db"][0].dispose()


def test_a_tenant_realm_signs_in_only_to_its_own_tenant(database, tmp_path, stand_in):
    own = KeycloakStandIn(realm="acme", client_id="voxfleet").start()
    try:
        app = _app(database, tmp_path, stand_in, keycloak_tenants={"acme": KeycloakRealmConfig(
            server_url=own.url, realm="acme", client_id="voxfleet", client_secret=own.client_secret)})
        tenant, _, _ = make_tenant(app, slug="acme")
        make_tenant(app, slug="other")
        own.login_as(own.add_user("eve@acme.example", groups=("/tenants/other/tenant_owner",)))
        client = FormClient(app)
        assert b"Your organisation's single sign-on" in client.get("/login").data
        done, _ = keycloak_sign_in(client, start="/login/keycloak?organisation=acme")
        assert done.status_code == 302 and own.pkce_verified == 1
        row = user_row(app, "eve@acme.example")
        # "other" is not this realm's to give.
        assert (row.role, row.tenant_id) == ("tenant_member", tenant.id)
        # The platform realm may not speak for a tenant that has a realm of its own.
        stand_in.login_as(stand_in.add_user("mallory@x.example", groups=("/tenants/acme/tenant_owner",)))
        refused, _ = keycloak_sign_in(FormClient(app))
        assert refused.status_code == 403
        refusal = audit_actions(app, "signin.keycloak_refused")[0]
        assert refusal.details["reason"] == "tenant has its own realm"
        unknown = FormClient(app).client.get("/login/keycloak?organisation=nope")
        assert unknown.status_code == 404 and b"has no single sign-on here" in unknown.data
        app.extensions["voxfleet.db"][0].dispose()
    finally:
        own.stop()


def test_team_management_through_the_admin_api(app, stand_in):
    tenant, _, _ = make_tenant(app, slug="acme", owner_password=None)
    boss = stand_in.add_user("boss@acme.example", "Bea Boss", groups=("/tenants/acme/tenant_owner",))
    stand_in.login_as(boss)
    assert keycloak_sign_in(FormClient(app))[0].status_code == 302
    with app.app_context(), app.extensions["voxfleet.db"][1]() as db:
        tenant_row = PlatformScope(db).get(Tenant, tenant.id)
        # The owner made by create_tenant never set a password: this tenant lives in Keycloak.
        team = kc.keycloak_team(db, tenant_row, actor="user:test")
        assert team is not None
        assert [(m.email, m.role) for m in team.members()] == [("boss@acme.example", "tenant_owner")]
        invited = team.invite("New@Acme.example", "tenant_member", name="Nel New")
        assert stand_in.actions_emails == [(invited.id, ["UPDATE_PASSWORD", "VERIFY_EMAIL"])]
        assert stand_in.group_paths(invited.id) == ["/tenants/acme/tenant_member"]
        team.change_role(invited.id, "tenant_admin")
        assert stand_in.group_paths(invited.id) == ["/tenants/acme/tenant_admin"]
        with pytest.raises(kc.TeamError, match="last owner"):
            team.change_role(boss.id, "tenant_admin")
        with pytest.raises(kc.TeamError, match="last owner"):
            team.remove(boss.id)
        assert [(m.email, m.name, m.role) for m in team.members()] == [
            ("boss@acme.example", "Bea Boss", "tenant_owner"),
            ("new@acme.example", "Nel New", "tenant_admin")]
        team.remove(invited.id)
        db.commit()
    assert stand_in.group_paths(invited.id) == []
    assert [e.action for e in audit_actions(app, "user.invite")] == ["user.invite"]
    assert audit_actions(app, "user.remove")[0].target == f"keycloak:{invited.id}"
    # The removed person can no longer sign in: the token names no tenant any more.
    stand_in.login_as(stand_in.users[invited.id])
    assert keycloak_sign_in(FormClient(app))[0].status_code == 403


def test_tenants_on_built_in_accounts_have_no_keycloak_team(app):
    tenant, _, _ = make_tenant(app)
    with app.app_context(), app.extensions["voxfleet.db"][1]() as db:
        assert kc.keycloak_team(db, PlatformScope(db).get(Tenant, tenant.id), actor="user:x") is None


def test_an_unreachable_keycloak_gets_a_page_not_a_crash(database, tmp_path, stand_in):
    app = _app(database, tmp_path, stand_in)
    stand_in.stop()
    client = FormClient(app)
    refused = client.client.get("/login/keycloak")
    assert refused.status_code == 502 and b"Keycloak cannot be reached right now." in refused.data
    reasons = [e.details["reason"] for e in audit_actions(app, "signin.keycloak_refused")]
    assert reasons == ["discovery failed"]
    app.extensions["voxfleet.db"][0].dispose()


def test_without_single_sign_on_the_login_page_offers_none(database, tmp_path):
    config = load_config(tmp_path, environ={"VOXFLEET_DATABASE_URL": database.url})
    app = create_app(config)
    client = FormClient(app)
    assert b"single sign-on" not in client.get("/login").data
    sent_back = client.client.get("/login/keycloak")
    assert sent_back.status_code == 302 and sent_back.headers["Location"].endswith("/login")
    assert b"Single sign-on is not set up on this service" in client.get("/login").data
    app.extensions["voxfleet.db"][0].dispose()
