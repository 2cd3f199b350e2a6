"""A STAND-IN for a Keycloak server, for tests only (Keycloak itself cannot be installed here).

It serves just the endpoints cloud/web/identity/keycloak.py calls through python-keycloak, with the
response shapes Keycloak documents:

- ``/realms/{realm}/.well-known/openid-configuration``
- ``/realms/{realm}/protocol/openid-connect/auth``: no login form; it "signs in" the user a test chose
  with ``login_as`` and redirects back with a one-time code, as Keycloak does after its login page
- ``/realms/{realm}/protocol/openid-connect/token``: ``authorization_code`` (client secret, redirect
  URI and PKCE S256 verified; the code works once) and ``client_credentials`` (for the admin API)
- ``/realms/{realm}/protocol/openid-connect/certs`` (JWKS) and ``/userinfo``
- ``/admin/realms/{realm}/users`` (list/search, create, get, execute-actions-email, groups of a user,
  join/leave a group), ``/groups`` (top level, children, members), ``/group-by-path/{path}``

Tokens are RS256 JWTs signed with a key made at start (jwcrypto). For the tests of our checks, the
next ID token can be made faulty on request: ``fault = "issuer" | "audience" | "expired" | "signature"
| "nonce"``. It keeps count of PKCE verifications, so a test can prove the adapter used PKCE.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from flask import Flask, jsonify, redirect, request
from jwcrypto import jwk, jwt
from werkzeug.serving import WSGIRequestHandler, make_server

from tests.conftest import free_port


class _QuietHandler(WSGIRequestHandler):
    """No request log: its lines would carry codes, states and nonces into the tests' captured logs."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


@dataclass
class KcUser:
    id: str
    username: str
    email: str
    first_name: str = ""
    last_name: str = ""
    enabled: bool = True
    email_verified: bool = True
    organizations: list[str] = field(default_factory=list)
    required_actions: list[str] = field(default_factory=list)

    def representation(self) -> dict[str, Any]:
        """Keycloak's UserRepresentation (the fields we fill)."""
        return {"id": self.id, "username": self.username, "email": self.email, "firstName": self.first_name,
                "lastName": self.last_name, "enabled": self.enabled, "emailVerified": self.email_verified,
                "createdTimestamp": 0, "requiredActions": list(self.required_actions), "totp": False,
                "attributes": {}}


@dataclass
class KcGroup:
    id: str
    name: str
    parent: str | None
    path: str


class KeycloakStandIn:
    """One stand-in server holding one realm and one confidential client."""

    def __init__(self, realm: str = "voxfleet", client_id: str = "voxfleet-cloud",
                 client_secret: str | None = None) -> None:
        self.realm = realm
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.kid = secrets.token_hex(8)
        self.key = jwk.JWK.generate(kty="RSA", size=2048, kid=self.kid, alg="RS256", use="sig")
        # Same key id, different key: what a forger who read our JWKS would try.
        self.other_key = jwk.JWK.generate(kty="RSA", size=2048, kid=self.kid, alg="RS256")
        self.users: dict[str, KcUser] = {}
        self.groups: dict[str, KcGroup] = {}
        self.members: dict[str, set[str]] = {}      # group id -> user ids
        self.codes: dict[str, dict[str, Any]] = {}
        self.access_tokens: dict[str, dict[str, Any]] = {}
        self.admin_tokens: set[str] = set()
        self.next_user: str | None = None
        self.fault: str | None = None
        # Off: ID tokens carry no profile (a realm without those mappers); the email comes from userinfo.
        self.profile_in_id_token = True
        self.pkce_verified = 0
        self.pkce_failed = 0
        self.auth_requests: list[dict[str, str]] = []
        self.actions_emails: list[tuple[str, list[str]]] = []
        self.lock = threading.Lock()
        self.stopped = False
        self.app = self._build()
        self.server = make_server("127.0.0.1", self.port, self.app, threaded=True,
                                  request_handler=_QuietHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="keycloak-stand-in",
                                       daemon=True)

    # --- set-up by tests -----------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        return f"{self.url}/realms/{self.realm}"

    def start(self) -> KeycloakStandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.server.shutdown()
        self.server.server_close()

    def add_user(self, email: str, name: str = "", groups: tuple[str, ...] = (),
                 organizations: tuple[str, ...] = (), email_verified: bool = True) -> KcUser:
        first, _, last = name.partition(" ")
        user = KcUser(id=str(uuid.uuid4()), username=email, email=email, first_name=first, last_name=last,
                      organizations=list(organizations), email_verified=email_verified)
        self.users[user.id] = user
        for path in groups:
            self.members.setdefault(self.ensure_group(path).id, set()).add(user.id)
        return user

    def ensure_group(self, path: str) -> KcGroup:
        parent: KcGroup | None = None
        for name in path.strip("/").split("/"):
            full = f"{parent.path if parent else ''}/{name}"
            found = next((g for g in self.groups.values() if g.path == full), None)
            if found is None:
                found = KcGroup(str(uuid.uuid4()), name, parent.id if parent else None, full)
                self.groups[found.id] = found
            parent = found
        assert parent is not None
        return parent

    def login_as(self, user: KcUser) -> None:
        """Whom the next authorization request signs in (what a person would do on Keycloak's page)."""
        self.next_user = user.id

    def group_paths(self, user_id: str) -> list[str]:
        return sorted(self.groups[g].path for g, ids in self.members.items() if user_id in ids)

    # --- tokens --------------------------------------------------------------------------------

    def sign(self, claims: dict[str, Any], key: jwk.JWK | None = None) -> str:
        token = jwt.JWT(header={"alg": "RS256", "typ": "JWT", "kid": self.kid}, claims=claims)
        token.make_signed_token(key or self.key)
        return token.serialize()

    def _id_token(self, user: KcUser, nonce: str | None, fault: str | None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "exp": now + 300, "iat": now, "auth_time": now, "jti": str(uuid.uuid4()), "iss": self.issuer,
            "aud": self.client_id, "sub": user.id, "typ": "ID", "azp": self.client_id,
            "session_state": str(uuid.uuid4()), "sid": str(uuid.uuid4()), "acr": "1",
            "email_verified": user.email_verified, "name": f"{user.first_name} {user.last_name}".strip(),
            "preferred_username": user.username, "given_name": user.first_name,
            "family_name": user.last_name, "email": user.email, "groups": self.group_paths(user.id),
        }
        if nonce:
            claims["nonce"] = nonce
        if user.organizations:
            claims["organization"] = list(user.organizations)
        if not self.profile_in_id_token:
            for key in ("email", "email_verified", "name", "preferred_username", "given_name", "family_name"):
                claims.pop(key)
        if fault == "issuer":
            claims["iss"] = f"{self.url}/realms/someone-else"
        elif fault == "audience":
            claims["aud"] = "another-client"
            claims["azp"] = "another-client"
        elif fault == "expired":
            claims["exp"], claims["iat"] = now - 3600, now - 3900
        elif fault == "nonce":
            claims["nonce"] = secrets.token_urlsafe(16)
        return self.sign(claims, self.other_key if fault == "signature" else None)

    def _access_token(self, subject: str, extra: dict[str, Any]) -> str:
        now = int(time.time())
        claims = {"exp": now + 300, "iat": now, "jti": str(uuid.uuid4()), "iss": self.issuer,
                  "aud": "account", "sub": subject, "typ": "Bearer", "azp": self.client_id,
                  "scope": "openid email profile",
                  **extra}
        token = self.sign(claims)
        self.access_tokens[token] = claims
        return token

    # --- the HTTP side -------------------------------------------------------------------------

    def _client_ok(self) -> bool:
        client_id = request.form.get("client_id")
        secret = request.form.get("client_secret")
        if request.authorization and request.authorization.type == "basic":
            client_id, secret = request.authorization.username, request.authorization.password
        return client_id == self.client_id and secret is not None and secrets.compare_digest(
            secret, self.client_secret)

    def _admin_ok(self) -> bool:
        header = request.headers.get("Authorization", "")
        return header.startswith("Bearer ") and header[7:] in self.admin_tokens

    def _build(self) -> Flask:  # noqa: C901 (one small server, one function per endpoint)
        app = Flask("keycloak-stand-in")
        base = "/realms/<realm>/protocol/openid-connect"

        def error(status: int, code: str, description: str = "") -> Any:
            body = {"error": code, "error_description": description} if description else {"error": code}
            return jsonify(body), status

        @app.before_request
        def realm_known() -> Any:
            realm = (request.view_args or {}).get("realm")
            if realm is not None and realm != self.realm:
                return jsonify({"error": "Realm does not exist"}), 404
            if request.path.startswith("/admin/") and not self._admin_ok():
                return jsonify({"error": "HTTP 401 Unauthorized"}), 401
            return None

        @app.get("/realms/<realm>/.well-known/openid-configuration")
        def well_known(realm: str) -> Any:
            oidc = f"{self.issuer}/protocol/openid-connect"
            return jsonify({
                "issuer": self.issuer, "authorization_endpoint": f"{oidc}/auth",
                "token_endpoint": f"{oidc}/token",
                "userinfo_endpoint": f"{oidc}/userinfo", "jwks_uri": f"{oidc}/certs",
                "end_session_endpoint": f"{oidc}/logout",
                "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
                "response_types_supported": ["code"], "subject_types_supported": ["public", "pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported":
                ["plain", "S256"], "scopes_supported": ["openid", "email", "profile", "organization"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"]})

        @app.get(f"{base}/auth")
        def auth(realm: str) -> Any:
            args = request.args
            self.auth_requests.append(dict(args))
            if args.get("client_id") != self.client_id or args.get("response_type") != "code":
                return "Invalid parameter: client_id or response_type", 400
            redirect_uri = args.get("redirect_uri", "")
            if not redirect_uri.startswith("http://127.0.0.1:"):
                return "Invalid parameter: redirect_uri", 400
            # The client is set to require PKCE with S256, as ours must be.
            if args.get("code_challenge_method") != "S256" or not args.get("code_challenge"):
                query = {"error": "invalid_request",
                         "error_description": "Missing parameter: code_challenge_method",
                         "state": args.get("state", "")}
                return redirect(f"{redirect_uri}?{urlencode(query)}")
            if self.next_user is None:
                return "No user chosen for the stand-in's login (call login_as)", 400
            code = secrets.token_urlsafe(32)
            with self.lock:
                self.codes[code] = {"user": self.next_user, "redirect_uri": redirect_uri,
                                    "challenge": args["code_challenge"], "nonce": args.get("nonce"),
                                    "fault": self.fault}
            query = {"state": args.get("state", ""), "session_state": str(uuid.uuid4()), "iss": self.issuer,
                     "code": code}
            return redirect(f"{redirect_uri}?{urlencode(query)}")

        @app.post(f"{base}/token")
        def token(realm: str) -> Any:
            if not self._client_ok():
                return error(401, "unauthorized_client", "Invalid client or Invalid client credentials")
            grant = request.form.get("grant_type")
            if grant == "client_credentials":
                access = self._access_token(f"service-account-{self.client_id}", {"clientId": self.client_id})
                self.admin_tokens.add(access)
                return jsonify({"access_token": access, "expires_in": 300, "refresh_expires_in": 0,
                                "token_type": "Bearer", "not-before-policy": 0, "scope": "email profile"})
            if grant != "authorization_code":
                return error(400, "unsupported_grant_type", "Unsupported grant_type")
            with self.lock:
                pending = self.codes.pop(request.form.get("code", ""), None)
            if pending is None:
                return error(400, "invalid_grant", "Code not valid")
            if request.form.get("redirect_uri") != pending["redirect_uri"]:
                return error(400, "invalid_grant", "Incorrect redirect_uri")
            verifier = request.form.get("code_verifier") or ""
            digest = hashlib.sha256(verifier.encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if not verifier or not secrets.compare_digest(challenge, pending["challenge"]):
                self.pkce_failed += 1
                return error(400, "invalid_grant", "PKCE verification failed: Code mismatch")
            self.pkce_verified += 1
            user = self.users[pending["user"]]
            access = self._access_token(user.id, {"email": user.email, "preferred_username": user.username})
            return jsonify({
                "access_token": access, "expires_in": 300, "refresh_expires_in": 1800,
                "refresh_token": secrets.token_urlsafe(32), "token_type": "Bearer",
                "id_token": self._id_token(user, pending["nonce"], pending["fault"]),
                "not-before-policy": 0, "session_state": str(uuid.uuid4()), "scope": "openid email profile"})

        @app.get(f"{base}/certs")
        def certs(realm: str) -> Any:
            public = self.key.export_public(as_dict=True)
            return jsonify({"keys": [{**public, "use": "sig", "alg": "RS256"}]})

        @app.route(f"{base}/userinfo", methods=["GET", "POST"])
        def userinfo(realm: str) -> Any:
            header = request.headers.get("Authorization", "")
            claims = self.access_tokens.get(header[7:]) if header.startswith("Bearer ") else None
            if claims is None or claims["sub"] not in self.users:
                return error(401, "invalid_token", "Token verification failed")
            user = self.users[claims["sub"]]
            return jsonify({"sub": user.id, "email_verified": user.email_verified, "email": user.email,
                            "preferred_username": user.username, "given_name": user.first_name,
                            "family_name": user.last_name,
                            "name": f"{user.first_name} {user.last_name}".strip()})

        # --- admin REST API ---------------------------------------------------------------------
        admin = "/admin/realms/<realm>"

        def brief(group: KcGroup) -> dict[str, Any]:
            children = [g for g in self.groups.values() if g.parent == group.id]
            return {"id": group.id, "name": group.name, "path": group.path, "parentId": group.parent,
                    "subGroupCount": len(children), "subGroups": [], "attributes": {}, "realmRoles": [],
                    "clientRoles": {}, "access": {"view": True, "manage": True, "manageMembership": True}}

        def page(items: list[Any]) -> Any:
            first = int(request.args.get("first", 0))
            size = int(request.args.get("max", 100))
            return jsonify(items[first:first + size])

        @app.get(f"{admin}/users")
        def list_users(realm: str) -> Any:
            found = sorted(self.users.values(), key=lambda u: u.username)
            exact = request.args.get("exact") in ("true", "True")
            for name in ("email", "username"):
                wanted = request.args.get(name)
                if wanted:
                    found = [u for u in found if (getattr(u, name) == wanted.lower() if exact
                                                  else wanted.lower() in getattr(u, name))]
            return page([u.representation() for u in found])

        @app.post(f"{admin}/users")
        def create_user(realm: str) -> Any:
            body = request.get_json(force=True)
            username = str(body.get("username", "")).lower()
            if not username:
                return jsonify({"errorMessage": "User name is missing"}), 400
            if any(u.username == username for u in self.users.values()):
                return jsonify({"errorMessage": "User exists with same username"}), 409
            user = KcUser(id=str(uuid.uuid4()), username=username, email=str(body.get("email", "")).lower(),
                          first_name=body.get("firstName", ""), last_name=body.get("lastName", ""),
                          enabled=bool(body.get("enabled", False)),
                          email_verified=bool(body.get("emailVerified", False)),
                          required_actions=list(body.get("requiredActions", [])))
            self.users[user.id] = user
            return "", 201, {"Location": f"{self.url}/admin/realms/{realm}/users/{user.id}"}

        @app.get(f"{admin}/users/<user_id>")
        def get_user(realm: str, user_id: str) -> Any:
            user = self.users.get(user_id)
            return (jsonify(user.representation()) if user else (jsonify({"error": "User not found"}), 404))

        @app.put(f"{admin}/users/<user_id>/execute-actions-email")
        def actions_email(realm: str, user_id: str) -> Any:
            if user_id not in self.users:
                return jsonify({"error": "User not found"}), 404
            self.actions_emails.append((user_id, list(request.get_json(force=True) or [])))
            return "", 204

        @app.get(f"{admin}/users/<user_id>/groups")
        def user_groups(realm: str, user_id: str) -> Any:
            return page([brief(self.groups[g]) for g, ids in self.members.items() if user_id in ids])

        @app.route(f"{admin}/users/<user_id>/groups/<group_id>", methods=["PUT", "DELETE"])
        def membership(realm: str, user_id: str, group_id: str) -> Any:
            if user_id not in self.users or group_id not in self.groups:
                return jsonify({"error": "Could not find"}), 404
            ids = self.members.setdefault(group_id, set())
            if request.method == "PUT":
                ids.add(user_id)
            else:
                ids.discard(user_id)
            return "", 204

        @app.get(f"{admin}/groups")
        def top_groups(realm: str) -> Any:
            top = sorted((g for g in self.groups.values() if g.parent is None), key=lambda g: g.name)
            return page([brief(g) for g in top])

        @app.post(f"{admin}/groups")
        def create_top_group(realm: str) -> Any:
            return add_group(realm, None)

        @app.get(f"{admin}/groups/<group_id>")
        def get_group(realm: str, group_id: str) -> Any:
            group = self.groups.get(group_id)
            return jsonify(brief(group)) if group else (jsonify({"error": "Could not find group by id"}), 404)

        @app.get(f"{admin}/groups/<group_id>/children")
        def children(realm: str, group_id: str) -> Any:
            return page([brief(g) for g in self.groups.values() if g.parent == group_id])

        @app.post(f"{admin}/groups/<group_id>/children")
        def create_child(realm: str, group_id: str) -> Any:
            if group_id not in self.groups:
                return jsonify({"error": "Could not find parent group"}), 404
            return add_group(realm, group_id)

        def add_group(realm: str, parent: str | None) -> Any:
            name = str((request.get_json(force=True) or {}).get("name", ""))
            path = f"{self.groups[parent].path if parent else ''}/{name}"
            if not name or any(g.path == path for g in self.groups.values()):
                return jsonify({"errorMessage": f"Top level group named '{name}' already exists."}), 409
            group = KcGroup(str(uuid.uuid4()), name, parent, path)
            self.groups[group.id] = group
            return "", 201, {"Location": f"{self.url}/admin/realms/{realm}/groups/{group.id}"}

        @app.get(f"{admin}/groups/<group_id>/members")
        def group_members(realm: str, group_id: str) -> Any:
            ids = sorted(self.members.get(group_id, set()))
            return page([self.users[i].representation() for i in ids if i in self.users])

        @app.get(f"{admin}/group-by-path/<path:path>")
        def group_by_path(realm: str, path: str) -> Any:
            wanted = "/" + path.strip("/")
            group = next((g for g in self.groups.values() if g.path == wanted), None)
            return jsonify(brief(group)) if group else (jsonify({"error": "Group path does not exist"}), 404)

        return app
