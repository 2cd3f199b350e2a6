"""Signing in through Keycloak (OIDC authorization code + PKCE) and managing a tenant's team there.

Realms
    A platform-wide realm (``keycloak_url``/``keycloak_realm``/``keycloak_client_id``/
    ``keycloak_client_secret``) may sign in people of any tenant it lists; a tenant may instead have a
    realm of its own (``[keycloak_tenants.<slug>]`` in cloud.toml), which can only ever sign people in
    to that tenant. Each is a confidential client with PKCE (S256) required.

The login
    ``begin_login`` makes state, nonce and a PKCE verifier, keeps them in the (signed) session cookie
    and sends the browser to the realm's authorization endpoint with the S256 challenge.
    ``finish_login`` checks the returned state against the session (CSRF on the callback), exchanges
    the code together with the verifier, and verifies the ID token: RS256 signature against the realm's
    JWKS, ``iss`` equal to ``<server_url>/realms/<realm>``, ``aud`` containing our client id (and
    ``azp`` equal to it when there are several audiences), ``exp`` not passed (60 s leeway for clock
    skew), and ``nonce`` equal to the one we sent. Any failure is refused with a page and audited with
    the check that failed; the tokens themselves are never logged or stored.

Token -> tenant and role (the mapping)
    * Groups claim ``groups`` (Keycloak's "Group Membership" mapper, full path on):
      ``/tenants/<tenant-slug>/<role>`` with role ``tenant_owner``, ``tenant_admin`` or
      ``tenant_member`` (``owner``/``admin``/``member`` also accepted). Several role groups for one
      tenant: the highest wins.
    * Organisations claim ``organization`` (Keycloak 26 Organizations; a list of aliases, or an object
      keyed by alias): membership of the organisation whose alias is the tenant slug, with no role
      group, makes a ``tenant_member``.
    * ``/platform/platform_admin`` makes an operator, only from the platform realm and only when
      ``keycloak_operators`` is on (off by default: operators use built-in accounts). It wins over
      tenant groups.
    * A tenant realm considers only its own tenant (anyone it signs in belongs there, as a
      ``tenant_member`` at least). The platform realm must name exactly one tenant, which must exist
      and must not have a realm of its own; otherwise the sign-in is refused.
    The token is the authority: the role is updated at every sign-in.

Users
    Found by ``external_subject`` = ``kc:<sha256(issuer)[:16]>:<sub>`` (a realm's admin can choose
    user ids at import, so the issuer is part of the key). A first sign-in creates the row; an existing
    row with the same email is linked only when it is an unaccepted invitation in the same tenant and
    Keycloak says the email is verified; otherwise it is refused (no takeover of password accounts).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from flask import current_app
from jwcrypto import jwk
from jwcrypto.common import JWException
from keycloak import KeycloakAdmin, KeycloakOpenID, KeycloakOpenIDConnection
from keycloak.exceptions import KeycloakError
from keycloak.pkce_utils import generate_code_challenge, generate_code_verifier
from sqlalchemy import func
from sqlalchemy.orm import Session

from cloud.admin import audit
from cloud.config import CloudConfig, KeycloakRealmConfig
from cloud.db import Tenant, User
from cloud.scoping import PlatformScope, TenantScope

log = logging.getLogger(__name__)

PLATFORM = "platform"
TENANT_ROLES = ("tenant_member", "tenant_admin", "tenant_owner")  # lowest to highest
ROLE_WORDS = {"owner": "tenant_owner", "admin": "tenant_admin", "member": "tenant_member",
              **{r: r for r in TENANT_ROLES}}
OPERATOR_GROUP = "/platform/platform_admin"
LEEWAY_S = 60
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256"]
TIMEOUT_S = 15


class KeycloakRefused(Exception):
    """A sign-in that must not go ahead: ``message`` for the person, ``reason`` for the audit log."""

    def __init__(self, message: str, reason: str, status: int = 401) -> None:
        super().__init__(message)
        self.message, self.reason, self.status = message, reason, status


@dataclass(frozen=True)
class Realm:
    """One configured realm: ``key`` is "platform" or the slug of the tenant that owns it."""

    key: str
    settings: KeycloakRealmConfig

    @property
    def tenant_slug(self) -> str | None:
        return None if self.key == PLATFORM else self.key

    @property
    def server_url(self) -> str:
        return self.settings.server_url.rstrip("/") + "/"

    @property
    def issuer(self) -> str:
        return f"{self.settings.server_url.rstrip('/')}/realms/{self.settings.realm}"

    @property
    def client_secret(self) -> str | None:
        return self.settings.client_secret.get_secret_value() if self.settings.client_secret else None

    def openid(self) -> KeycloakOpenID:
        return KeycloakOpenID(server_url=self.server_url, realm_name=self.settings.realm,
                              client_id=self.settings.client_id, client_secret_key=self.client_secret,
                              verify=self.settings.verify_tls, timeout=TIMEOUT_S)

    def admin(self) -> KeycloakAdmin:
        """The admin API, as the client's service account (client_credentials)."""
        connection = KeycloakOpenIDConnection(
            server_url=self.server_url, realm_name=self.settings.realm, client_id=self.settings.client_id,
            client_secret_key=self.client_secret, grant_type="client_credentials",
            verify=self.settings.verify_tls, timeout=TIMEOUT_S)
        return KeycloakAdmin(connection=connection)

    def subject_key(self, sub: str) -> str:
        return f"kc:{hashlib.sha256(self.issuer.encode()).hexdigest()[:16]}:{sub}"[:255]


def _config(config: CloudConfig | None = None) -> CloudConfig:
    return config or current_app.extensions["voxfleet.config"]


def realms(config: CloudConfig | None = None) -> dict[str, Realm]:
    config = _config(config)
    found = {slug: Realm(slug, settings) for slug, settings in config.keycloak_tenants.items()}
    if config.keycloak is not None:
        found[PLATFORM] = Realm(PLATFORM, config.keycloak)
    return found


def realm_for(key: str | None, config: CloudConfig | None = None) -> Realm | None:
    return realms(config).get(key or PLATFORM)


# --- the login ---------------------------------------------------------------------------------

def begin_login(realm: Realm, redirect_uri: str, session: Any, next_url: str | None = None) -> str:
    """Remember state, nonce and PKCE verifier in the session; return the authorization URL."""
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    verifier = generate_code_verifier(64)
    challenge, method = generate_code_challenge(verifier, "S256")
    session["kc"] = {"realm": realm.key, "state": state, "nonce": nonce, "verifier": verifier,
                     "redirect_uri": redirect_uri, "next": next_url}
    endpoint = realm.openid().well_known()["authorization_endpoint"]
    query = urlencode({"client_id": realm.settings.client_id, "response_type": "code",
                       "redirect_uri": redirect_uri, "scope": "openid email profile", "state": state,
                       "nonce": nonce, "code_challenge": challenge, "code_challenge_method": method})
    return f"{endpoint}?{query}"


@dataclass(frozen=True)
class Identity:
    """What a verified ID token says about the person (never the token itself)."""

    realm: Realm
    subject: str
    email: str | None
    email_verified: bool
    name: str
    role: str
    tenant_slug: str | None


def exchange_and_verify(pending: dict[str, Any], args: dict[str, str],
                        config: CloudConfig | None = None) -> tuple[Realm, dict[str, Any]]:
    """Check the callback against what the session remembers, swap the code, verify the ID token."""
    if not pending or not pending.get("state"):
        raise KeycloakRefused("This sign-in did not start here, or took too long. Start again.",
                              "no sign-in in progress", 400)
    if not secrets.compare_digest(str(args.get("state", "")), str(pending["state"])):
        raise KeycloakRefused("This sign-in did not start here (its state does not match). Start again.",
                              "state mismatch", 400)
    realm = realm_for(pending.get("realm"), config)
    if realm is None:
        raise KeycloakRefused("That single sign-on is no longer configured.", "realm not configured", 400)
    if args.get("error"):
        # Keycloak's own error words only (e.g. access_denied); its description could echo input.
        raise KeycloakRefused("Keycloak did not sign you in. Try again, or use another way to sign in.",
                              f"keycloak error {str(args['error'])[:40]}", 401)
    code = args.get("code")
    if not code:
        raise KeycloakRefused("Keycloak sent no sign-in code back. Start again.", "no code", 400)
    openid = realm.openid()
    try:
        tokens = openid.token(grant_type="authorization_code", code=code,
                              redirect_uri=pending["redirect_uri"], code_verifier=pending["verifier"])
    except KeycloakError as exc:
        raise KeycloakRefused("Keycloak refused the sign-in code. Start again.",
                              f"code exchange refused ({exc.response_code})", 401) from None
    id_token = tokens.get("id_token")
    if not isinstance(id_token, str):
        raise KeycloakRefused("Keycloak sent no ID token.", "no id token", 401)
    claims = verify_id_token(openid, realm, id_token, pending["nonce"])
    if not claims.get("email") and isinstance(tokens.get("access_token"), str):
        # Realms whose ID tokens leave the profile out still answer at the userinfo endpoint.
        try:
            info = openid.userinfo(tokens["access_token"])
        except KeycloakError:
            info = {}
        if isinstance(info, dict) and info.get("sub") == claims["sub"]:
            for key in ("email", "email_verified", "name", "preferred_username"):
                if key in info and key not in claims:
                    claims[key] = info[key]
    return realm, claims


def verify_id_token(openid: KeycloakOpenID, realm: Realm, id_token: str, nonce: str) -> dict[str, Any]:
    """Every check a relying party owes an ID token, each failing with its own audited reason."""
    try:
        keys = jwk.JWKSet()
        for cert in openid.certs().get("keys", []):
            if cert.get("use", "sig") == "sig":
                keys.add(jwk.JWK(**cert))
    except (KeycloakError, JWException, TypeError, ValueError):
        raise KeycloakRefused("Could not read Keycloak's signing keys.", "jwks unavailable", 502) from None
    try:
        claims = openid.decode_token(id_token, validate=True, key=keys, check_claims=False,
                                     algs=ALGORITHMS)
    except (JWException, ValueError, TypeError):
        raise KeycloakRefused("The sign-in token's signature is not valid.", "bad signature") from None
    client_id = realm.settings.client_id
    if claims.get("iss") != realm.issuer:
        raise KeycloakRefused("The sign-in token comes from an unexpected issuer.", "wrong issuer")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if client_id not in audiences or (len(audiences) > 1 and claims.get("azp") != client_id):
        raise KeycloakRefused("The sign-in token was not made for this service.", "wrong audience")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or exp + LEEWAY_S < time.time():
        raise KeycloakRefused("The sign-in token has expired. Sign in again.", "expired")
    if not isinstance(claims.get("nonce"), str) or not secrets.compare_digest(claims["nonce"], nonce):
        raise KeycloakRefused("The sign-in token does not belong to this sign-in (nonce).", "nonce mismatch")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise KeycloakRefused("The sign-in token names nobody.", "no subject")
    return claims


def _organisations(claim: Any) -> set[str]:
    if isinstance(claim, dict):
        return {str(k) for k in claim}
    if isinstance(claim, list):
        return {str(v) for v in claim if isinstance(v, str)}
    if isinstance(claim, str):
        return {claim}
    return set()


def map_claims(realm: Realm, claims: dict[str, Any], operators_allowed: bool,
               tenant_realms: set[str]) -> tuple[str | None, str]:
    """(tenant slug or None, role) from the token's groups and organisations; see the module doc."""
    groups = [g for g in claims.get("groups") or [] if isinstance(g, str)]
    tenant_roles: dict[str, str] = {}
    for group in groups:
        parts = group.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "tenants" and parts[2] in ROLE_WORDS:
            role = ROLE_WORDS[parts[2]]
            best = tenant_roles.get(parts[1])
            if best is None or TENANT_ROLES.index(role) > TENANT_ROLES.index(best):
                tenant_roles[parts[1]] = role
    organisations = _organisations(claims.get("organization"))
    if realm.tenant_slug is not None:
        slug = realm.tenant_slug
        return slug, tenant_roles.get(slug, "tenant_member")
    if any(g.rstrip("/") == OPERATOR_GROUP for g in groups):
        if operators_allowed:
            return None, "platform_admin"
        if not tenant_roles and not organisations:
            raise KeycloakRefused("Operators sign in with their VoxFleet account, not through Keycloak.",
                                  "operator via keycloak not allowed", 403)
    candidates = set(tenant_roles) | organisations
    if not candidates:
        raise KeycloakRefused("Your Keycloak account is not a member of any organisation on VoxFleet. "
                              "Ask your administrator to add you.", "no tenant in token", 403)
    if len(candidates) > 1:
        raise KeycloakRefused("Your Keycloak account belongs to several organisations; VoxFleet can sign "
                              "it in to only one. Ask your administrator.", "several tenants in token", 403)
    slug = candidates.pop()
    if slug in tenant_realms:
        raise KeycloakRefused("Your organisation signs in through its own single sign-on. Use that.",
                              "tenant has its own realm", 403)
    return slug, tenant_roles.get(slug, "tenant_member")


def sign_in_user(db: Session, realm: Realm, claims: dict[str, Any], config: CloudConfig | None = None,
                 ip: str | None = None) -> User:
    """Find or create the user a verified token names, with the tenant and role it gives."""
    config = _config(config)
    slug, role = map_claims(realm, claims, config.keycloak_operators,
                            set(config.keycloak_tenants))
    platform = PlatformScope(db)
    tenant: Tenant | None = None
    if slug is not None:
        tenant = platform.first(Tenant, Tenant.slug == slug)
        if tenant is None:
            raise KeycloakRefused("Your organisation is not known to VoxFleet. Ask your administrator.",
                                  f"unknown tenant {slug[:64]}", 403)
        if tenant.status != "active":
            raise KeycloakRefused("Your organisation's account is suspended. Contact the service operator.",
                                  "tenant suspended", 403)
    tenant_id = tenant.id if tenant else None
    subject = realm.subject_key(claims["sub"])
    email = str(claims.get("email") or "").strip().lower()[:320] or None
    name = str(claims.get("name") or claims.get("preferred_username") or "")[:200]
    user = platform.first(User, User.external_subject == subject)
    if user is None and email:
        same_email = platform.first(User, func.lower(User.email) == email)
        if same_email is not None:
            pending_invite = (same_email.password_hash is None and same_email.external_subject is None
                              and same_email.tenant_id == tenant_id and same_email.role != "platform_admin")
            if not (pending_invite and claims.get("email_verified") is True):
                raise KeycloakRefused("An account with this email already exists on VoxFleet and signs in "
                                      "another way. Ask your administrator.", "email taken", 403)
            user = same_email
            user.external_subject = subject
    if user is None:
        if not email:
            raise KeycloakRefused("Your Keycloak account has no email address; VoxFleet needs one.",
                                  "no email", 403)
        user = User(email=email, name=name, role=role, password_hash=None, external_subject=subject,
                    tenant_id=tenant_id)
        platform.add(user)
        platform.flush()
        audit(db, f"keycloak:{realm.key}", "user.create", target=f"user:{user.id}", tenant_id=tenant_id,
              ip=ip, role=role, method="keycloak")
        return user
    if user.disabled:
        raise KeycloakRefused("This account is disabled. Contact your administrator.", "user disabled", 403)
    if user.tenant_id != tenant_id:
        raise KeycloakRefused("Your Keycloak account now names another organisation than before. Ask "
                              "your administrator.", "tenant changed", 403)
    if user.role != role:
        audit(db, f"keycloak:{realm.key}", "user.role_change", target=f"user:{user.id}", tenant_id=tenant_id,
              ip=ip, old=user.role, new=role, method="keycloak")
        user.role = role
    if name and not user.name:
        user.name = name
    platform.flush()
    return user


# --- team management through the admin API ---------------------------------------------------------

@dataclass(frozen=True)
class TeamMember:
    id: str            # the Keycloak user id (the token's ``sub``)
    email: str
    name: str
    role: str
    enabled: bool


class TeamError(ValueError):
    """A team change a person can fix (last owner, unknown member...) or Keycloak refused."""


class KeycloakTeam:
    """A tenant's team as Keycloak holds it: groups ``/tenants/<slug>/<role>`` in the tenant's realm.

    What the tenant portal's team page uses for a Keycloak tenant (``keycloak_team`` makes one, or
    None for a tenant on built-in accounts). Every change is audited in ``db`` as ``actor``; the caller
    commits. Removing someone or changing their role also updates their VoxFleet user row, which
    ends their sessions at once (the session fingerprint covers the role; removal disables the row).
    """

    def __init__(self, realm: Realm, tenant: Tenant, db: Session, actor: str, ip: str | None = None) -> None:
        self.realm, self.tenant, self.db, self.actor, self.ip = realm, tenant, db, actor, ip
        self._admin: KeycloakAdmin | None = None

    @property
    def admin(self) -> KeycloakAdmin:
        if self._admin is None:
            self._admin = self.realm.admin()
        return self._admin

    def _path(self, role: str | None = None) -> str:
        return f"tenants/{self.tenant.slug}" + (f"/{role}" if role else "")

    def _group_id(self, role: str, create: bool = False) -> str | None:
        """The id of the tenant's group for ``role``; made (with its parents) when ``create``."""
        names = ["tenants", self.tenant.slug, role]
        parent_id: str | None = None
        for depth in range(len(names)):
            path = "/".join(names[: depth + 1])
            try:
                parent_id = self.admin.get_group_by_path(path)["id"]
                continue
            except KeycloakError as exc:
                if exc.response_code != 404:
                    raise TeamError(f"Keycloak refused to list groups ({exc.response_code}).") from None
            if not create:
                return None
            parent_id = self.admin.create_group({"name": names[depth]}, parent=parent_id)
        return parent_id

    def members(self) -> list[TeamMember]:
        """Everyone in one of the tenant's role groups, with their highest role."""
        found: dict[str, TeamMember] = {}
        for role in TENANT_ROLES:  # lowest first: a higher role overwrites
            group_id = self._group_id(role)
            if group_id is None:
                continue
            for user in self.admin.get_group_members(group_id):
                name = " ".join(p for p in (user.get("firstName"), user.get("lastName")) if p)
                email = user.get("email") or user.get("username", "")
                found[user["id"]] = TeamMember(id=user["id"], email=email, name=name, role=role,
                                               enabled=bool(user.get("enabled", True)))
        return sorted(found.values(), key=lambda m: (-TENANT_ROLES.index(m.role), m.email))

    def _member(self, member_id: str) -> TeamMember:
        for member in self.members():
            if member.id == member_id:
                return member
        raise TeamError("That person is not in this team.")

    def _owners(self) -> int:
        return sum(1 for m in self.members() if m.role == "tenant_owner")

    def invite(self, email: str, role: str, name: str = "") -> TeamMember:
        """Create the Keycloak user (or take the existing one) and put them in the role's group.

        Keycloak mails them its own "set your password" link when the realm has mail configured.
        """
        if role not in TENANT_ROLES:
            raise TeamError("Choose owner, admin or member.")
        email = email.strip().lower()
        first, _, last = name.strip().partition(" ")
        try:
            existing = self.admin.get_users({"email": email, "exact": True})
            if existing:
                user_id = existing[0]["id"]
            else:
                user_id = self.admin.create_user({
                    "username": email, "email": email, "firstName": first, "lastName": last,
                    "enabled": True, "emailVerified": False,
                    "requiredActions": ["UPDATE_PASSWORD", "VERIFY_EMAIL"]})
            self._set_role(user_id, role)
            try:
                self.admin.send_update_account(user_id, ["UPDATE_PASSWORD", "VERIFY_EMAIL"],
                                               client_id=self.realm.settings.client_id)
                mailed = True
            except KeycloakError:
                mailed = False  # the realm has no mail set up: the admin tells the person
        except KeycloakError as exc:
            raise TeamError(f"Keycloak refused the invitation ({exc.response_code}).") from None
        audit(self.db, self.actor, "user.invite", target=f"keycloak:{user_id}", tenant_id=self.tenant.id,
              ip=self.ip, role=role, method="keycloak", mailed=mailed)
        return TeamMember(id=user_id, email=email, name=name.strip(), role=role, enabled=True)

    def _set_role(self, user_id: str, role: str | None) -> None:
        for each in TENANT_ROLES:
            if each == role:
                self.admin.group_user_add(user_id, self._group_id(each, create=True))
            else:
                group_id = self._group_id(each)
                if group_id is not None:
                    try:
                        self.admin.group_user_remove(user_id, group_id)
                    except KeycloakError as exc:
                        if exc.response_code != 404:
                            raise

    def _local(self, member_id: str) -> User | None:
        return TenantScope(self.db, self.tenant.id).first(
            User, User.external_subject == self.realm.subject_key(member_id))

    def change_role(self, member_id: str, role: str) -> None:
        if role not in TENANT_ROLES:
            raise TeamError("Choose owner, admin or member.")
        member = self._member(member_id)
        if member.role == "tenant_owner" and role != "tenant_owner" and self._owners() <= 1:
            raise TeamError("This is the last owner: make someone else owner first.")
        try:
            self._set_role(member_id, role)
        except KeycloakError as exc:
            raise TeamError(f"Keycloak refused the change ({exc.response_code}).") from None
        local = self._local(member_id)
        if local is not None:
            local.role = role
        audit(self.db, self.actor, "user.role_change", target=f"keycloak:{member_id}",
              tenant_id=self.tenant.id, ip=self.ip, old=member.role, new=role, method="keycloak")

    def remove(self, member_id: str) -> None:
        """Take the person out of the tenant's groups (their Keycloak account stays) and end access."""
        member = self._member(member_id)
        if member.role == "tenant_owner" and self._owners() <= 1:
            raise TeamError("This is the last owner; an organisation needs one.")
        try:
            self._set_role(member_id, None)
        except KeycloakError as exc:
            raise TeamError(f"Keycloak refused the change ({exc.response_code}).") from None
        local = self._local(member_id)
        if local is not None:
            local.disabled = True
            local.session_epoch = (local.session_epoch or 0) + 1
        audit(self.db, self.actor, "user.remove", target=f"keycloak:{member_id}", tenant_id=self.tenant.id,
              ip=self.ip, role=member.role, method="keycloak")


def keycloak_team(db: Session, tenant: Tenant, actor: str, ip: str | None = None,
                  config: CloudConfig | None = None) -> KeycloakTeam | None:
    """The Keycloak team of ``tenant``, or None when its people use built-in accounts.

    A tenant has a Keycloak team when it has a realm of its own, or when the platform realm is
    configured and it has no built-in users with passwords (its people came in through Keycloak).
    """
    config = _config(config)
    own = realm_for(tenant.slug, config) if tenant.slug in config.keycloak_tenants else None
    if own is not None:
        return KeycloakTeam(own, tenant, db, actor, ip)
    platform_realm = realm_for(PLATFORM, config)
    if platform_realm is None:
        return None
    scope = TenantScope(db, tenant.id)
    built_in = scope.count(User, User.password_hash.is_not(None))
    external = scope.count(User, User.external_subject.is_not(None))
    return KeycloakTeam(platform_realm, tenant, db, actor, ip) if external and not built_in else None
