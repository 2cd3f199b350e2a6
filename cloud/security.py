"""Passwords, API keys and invite links: how each is made, stored and checked.

Passwords: Argon2id (argon2-cffi defaults), since people reuse weak ones. API keys: 256 random
bits, stored as SHA-256 (a slow hash adds nothing for a random key and would slow every request).
Invite links: itsdangerous signatures with the app's secret key, expiring, and void once used
(they sign a fingerprint of the current password hash, which setting a password changes).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
API_KEY_MARK = "vfk"
INVITE_MAX_AGE_S = 7 * 24 * 3600

_hasher = PasswordHasher()


class WeakPassword(ValueError):
    pass


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"password too short: at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"password too long: at most {MAX_PASSWORD_LENGTH} characters")
    if len(set(password)) < 4:
        raise WeakPassword("password too simple: use more different characters")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class NewApiKey:
    key: str          # shown once, never stored
    prefix: str       # stored, for lookup; also shown in lists so people can tell keys apart
    key_hash: str     # stored


def new_api_key() -> NewApiKey:
    prefix = secrets.token_hex(6)
    key = f"{API_KEY_MARK}_{prefix}_{secrets.token_urlsafe(32)}"
    return NewApiKey(key=key, prefix=prefix, key_hash=hash_api_key(key))


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_prefix(key: str) -> str | None:
    """The lookup prefix of a presented key, or None when it is not shaped like one of ours."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_MARK or len(parts[1]) != 12 or not parts[2]:
        return None
    return parts[1]


def api_key_matches(key: str, key_hash: str) -> bool:
    return hmac.compare_digest(hash_api_key(key), key_hash)


def _fingerprint(password_hash: str | None) -> str:
    return hashlib.sha256((password_hash or "none").encode()).hexdigest()[:16]


def _link_token(secret_key: str, salt: str, user_id: str, password_hash: str | None) -> str:
    payload = {"user": user_id, "fp": _fingerprint(password_hash)}
    return URLSafeTimedSerializer(secret_key, salt=salt).dumps(payload)


def _read_link_token(secret_key: str, salt: str, token: str, max_age: int, what: str,
                     error: type[ValueError]) -> tuple[str, str]:
    try:
        data = URLSafeTimedSerializer(secret_key, salt=salt).loads(token, max_age=max_age)
    except SignatureExpired:
        raise error(f"this {what} link has expired") from None
    except BadSignature:
        raise error(f"this {what} link is not valid") from None
    return data["user"], data["fp"]


def invite_token(secret_key: str, user_id: str, password_hash: str | None) -> str:
    return _link_token(secret_key, "voxfleet.invite", user_id, password_hash)


class InvalidInvite(ValueError):
    pass


def read_invite_token(secret_key: str, token: str, max_age: int = INVITE_MAX_AGE_S) -> tuple[str, str]:
    """(user id, fingerprint) from a valid token; compare the fingerprint with the user's hash."""
    return _read_link_token(secret_key, "voxfleet.invite", token, max_age, "invite", InvalidInvite)


def invite_still_valid(fingerprint: str, password_hash: str | None) -> bool:
    return hmac.compare_digest(fingerprint, _fingerprint(password_hash))


# Password reset links work like invite links (signed, expiring, void once the password changes) with a
# salt of their own, so an invite link can never be replayed as a reset link or the other way round.
RESET_MAX_AGE_S = 3600


def reset_token(secret_key: str, user_id: str, password_hash: str | None) -> str:
    return _link_token(secret_key, "voxfleet.reset", user_id, password_hash)


class InvalidReset(ValueError):
    pass


def read_reset_token(secret_key: str, token: str, max_age: int = RESET_MAX_AGE_S) -> tuple[str, str]:
    """(user id, fingerprint) from a valid reset token; check it with ``invite_still_valid``."""
    return _read_link_token(secret_key, "voxfleet.reset", token, max_age, "password reset", InvalidReset)
