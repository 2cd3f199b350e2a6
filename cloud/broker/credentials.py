"""The embedded broker's accounts: one SQLite table in the cloud's data dir, argon2 hashes only.

A file rather than memory so accounts survive restarts and so another process on the same data
dir (a ``voxfleet cloud`` command) can provision or revoke while the broker runs; the broker checks
it on every CONNECT and reconciles live connections against it (see embedded.py).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from cloud.broker.acl import Grants, device_grants, service_grants
from cloud.broker.admin import AccountExistsError, check_credentials
from protocol.topics import check_device_id

Kind = Literal["device", "service"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS broker_accounts (
    username      TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('device', 'service')),
    device_id     TEXT,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    disabled      INTEGER NOT NULL DEFAULT 0,
    CHECK ((kind = 'device') = (device_id IS NOT NULL))
)
"""


@dataclass(frozen=True)
class Account:
    username: str
    kind: Kind
    device_id: str | None

    @property
    def grants(self) -> Grants:
        return device_grants(self.device_id) if self.device_id else service_grants()


class CredentialStore:
    """Accounts of the embedded broker; a connection per call so any thread or process may use it."""

    def __init__(self, path: Path, hasher: PasswordHasher | None = None) -> None:
        self.path = Path(path)
        self._hasher = hasher or PasswordHasher()
        # Verifying against this for unknown users makes a miss cost what a hit costs.
        self._dummy_hash = self._hasher.hash("voxfleet-no-such-account")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(broker_accounts)")}
            if "disabled" not in columns:  # a store made before accounts could be disabled
                db.execute("ALTER TABLE broker_accounts ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        db.execute("PRAGMA busy_timeout=10000")
        return db

    def add_device(self, device_id: str, username: str, password: str) -> Account:
        check_device_id(device_id)
        check_credentials(username, password)
        try:
            with self._connect() as db:
                db.execute("INSERT INTO broker_accounts (username, kind, device_id, password_hash) "
                           "VALUES (?, 'device', ?, ?)", (username, device_id, self._hasher.hash(password)))
        except sqlite3.IntegrityError as exc:
            raise AccountExistsError(f"broker account {username!r} already exists") from exc
        return Account(username, "device", device_id)

    def set_service(self, username: str, password: str) -> Account:
        check_credentials(username, password)
        with self._connect() as db:
            row = db.execute("SELECT kind FROM broker_accounts WHERE username = ?", (username,)).fetchone()
            if row and row[0] != "service":
                raise AccountExistsError(f"broker account {username!r} already exists as a {row[0]} account")
            db.execute("INSERT INTO broker_accounts (username, kind, device_id, password_hash) "
                       "VALUES (?, 'service', NULL, ?) ON CONFLICT(username) DO UPDATE SET "
                       "password_hash = excluded.password_hash", (username, self._hasher.hash(password)))
        return Account(username, "service", None)

    def remove(self, username: str) -> bool:
        with self._connect() as db:
            return db.execute("DELETE FROM broker_accounts WHERE username = ?", (username,)).rowcount > 0

    def set_disabled(self, username: str, disabled: bool) -> bool:
        """A disabled account keeps its password but cannot connect (a suspended tenant's devices)."""
        with self._connect() as db:
            return db.execute("UPDATE broker_accounts SET disabled = ? WHERE username = ?",
                              (int(disabled), username)).rowcount > 0

    def get(self, username: str) -> Account | None:
        with self._connect() as db:
            row = db.execute("SELECT username, kind, device_id FROM broker_accounts WHERE username = ?",
                             (username,)).fetchone()
        return Account(row[0], row[1], row[2]) if row else None

    def usernames(self) -> set[str]:
        """Accounts that may be connected now (the reconciler drops every other connection)."""
        with self._connect() as db:
            return {row[0] for row in db.execute("SELECT username FROM broker_accounts WHERE disabled = 0")}

    def verify(self, username: str | None, password: str | None) -> Account | None:
        """The account if the password is right, else None; slow on purpose (argon2), run off-loop."""
        if not username:
            return None
        with self._connect() as db:
            row = db.execute("SELECT username, kind, device_id, password_hash FROM broker_accounts "
                             "WHERE username = ? AND disabled = 0", (username,)).fetchone()
        try:
            self._hasher.verify(row[3] if row else self._dummy_hash, password or "")
        except (VerificationError, InvalidHashError):
            return None
        return Account(row[0], row[1], row[2]) if row else None

