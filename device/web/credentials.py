"""The setup web's own secrets in ``DATA_DIR/setup-web.json`` (0600): the admin password and the cookie key.

The password is stored only as an argon2 hash (there is no default password: the first boot page
asks for one). The cookie signing key is random per device, made on first start, so a session
cookie from one device means nothing to another and survives restarts of the setup web.

Argon2id with OWASP's minimum parameters (19 MiB, 3 passes, one lane) rather than argon2-cffi's
default (64 MiB, four lanes): the page shares a Raspberry Pi with the voice stack under a systemd
MemoryMax, and waitress runs several threads. Hashing and verifying take one lock, so at most one
hash's memory is in use at a time, whatever the number of sign-in attempts. Hashes made with other
parameters still verify: argon2 keeps its parameters in the hash.

The file is read, changed and written under one lock (the setup web is multi-threaded) through a
unique temp file, so concurrent writers neither lose each other's fields nor share a temp file.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from device.files import write_atomic

MIN_PASSWORD_LENGTH = 8
_hasher = PasswordHasher(time_cost=3, memory_cost=19456, parallelism=1)
_HASH_LOCK = threading.Lock()  # one argon2 computation at a time: bounded memory
_FILE_LOCK = threading.RLock()  # read-merge-write of setup-web.json as one step


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
    """Atomic and private (0600): a power cut keeps the old file or the new one, never half of one."""
    write_atomic(_path(data_dir), json.dumps(data, indent=2), mode=0o600)


def secret_key(data_dir: Path) -> str:
    """The cookie signing key, created on first use."""
    with _FILE_LOCK:
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


def _hash(password: str) -> str:
    with _HASH_LOCK:
        return _hasher.hash(password)


def set_password(data_dir: Path, password: str) -> None:
    """Replace the password (the password page, after the current one was checked)."""
    hashed = _hash(password)  # outside the file lock: hashing takes a while
    with _FILE_LOCK:
        data = _read(data_dir)
        data["password_hash"] = hashed
        _write(data_dir, data)


def create_password(data_dir: Path, password: str) -> bool:
    """Set the first password only if none exists yet, as one step; False when one already does.

    First boot uses this, so a second first-boot form posted at the same time cannot replace the
    password the owner just chose.
    """
    hashed = _hash(password)
    with _FILE_LOCK:
        data = _read(data_dir)
        if data.get("password_hash"):
            return False
        data["password_hash"] = hashed
        _write(data_dir, data)
        return True


def verify_password(data_dir: Path, password: str) -> bool:
    """Whether ``password`` is the setup password (False when none is set or the hash is unreadable)."""
    stored = _read(data_dir).get("password_hash")
    if not stored:
        return False
    try:
        with _HASH_LOCK:
            return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def password_stamp(data_dir: Path) -> str:
    """A short fingerprint of the current hash: sessions carry it, so a password change signs out the rest."""
    stored = _read(data_dir).get("password_hash") or ""
    return hashlib.sha256(stored.encode()).hexdigest()[:16]
