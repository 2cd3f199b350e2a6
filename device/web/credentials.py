"""The setup web's own secrets in ``DATA_DIR/setup-web.json`` (0600): the admin password and the cookie key.

The password is stored only as an argon2 hash (there is no default password: the first boot page
asks for one). The cookie signing key is random per device, made on first start, so a session
cookie from one device means nothing to another and survives restarts of the setup web.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 8
_hasher = PasswordHasher()


class PasswordError(ValueError):
    """A new password that cannot be used; the message says why."""


def _path(data_dir: Path) -> Path:
    return Path(data_dir) / "setup-web.json"


def _read(data_dir: Path) -> dict:
    try:
        data = json.loads(_path(data_dir).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"{_path(data_dir)} is not valid JSON ({exc}); delete it to set up again") from exc
    return data if isinstance(data, dict) else {}


def _write(data_dir: Path, data: dict) -> None:
    """Atomic and private: a power cut keeps the old file or the new one, never half of one."""
    target = _path(data_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2)
    os.replace(tmp, target)


def secret_key(data_dir: Path) -> str:
    """The cookie signing key, created on first use."""
    data = _read(data_dir)
    if not data.get("secret_key"):
        data["secret_key"] = secrets.token_urlsafe(48)
        _write(data_dir, data)
    return data["secret_key"]


def has_password(data_dir: Path) -> bool:
    return bool(_read(data_dir).get("password_hash"))


def check_new_password(password: str, repeat: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if password != repeat:
        raise PasswordError("the two passwords differ; type the same password twice")


def set_password(data_dir: Path, password: str) -> None:
    data = _read(data_dir)
    data["password_hash"] = _hasher.hash(password)
    _write(data_dir, data)


def verify_password(data_dir: Path, password: str) -> bool:
    stored = _read(data_dir).get("password_hash")
    if not stored:
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def password_stamp(data_dir: Path) -> str:
    """A short fingerprint of the current hash: sessions carry it, so a password change signs out the rest."""
    stored = _read(data_dir).get("password_hash") or ""
    return hashlib.sha256(stored.encode()).hexdigest()[:16]
