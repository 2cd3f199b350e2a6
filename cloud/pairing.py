"""Pairing, as a person does it: the device shows a short code, a tenant admin types it in, the device
collects its broker credentials.

1. ``request_code``: the device sends a secret only it holds (it never leaves the device again
   except to poll); the cloud answers with a 6-character code from an alphabet without look-alikes
   (no 0/O, 1/I/L), valid for ``CODE_TTL``, and the topic id the device will use.
2. ``claim``: a tenant admin (portal or API, write key) enters the code and picks a project; the
   device row is created under that tenant. Wrong codes count against the tenant (guessing).
3. ``collect``: the device, polling with its code and secret, receives its broker URL and a
   freshly made password once. The password is provisioned in the broker (Dynamic Security or the
   embedded broker's store) at that moment and only its Argon2 hash is kept; a second collect is
   refused, and a wrong secret counts towards locking the code.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from cloud.broker.admin import BrokerAdmin
from cloud.db import Device, DeviceCredential, PairingCode, Project
from cloud.db.base import utcnow
from cloud.domain.errors import DomainError
from cloud.scoping import PlatformScope, TenantScope
from cloud.security import hash_password, verify_password

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 6
CODE_TTL = timedelta(minutes=10)
MAX_SECRET_ATTEMPTS = 5
MIN_SECRET_LENGTH = 32


class PairingError(DomainError):
    """A pairing step that cannot go on; ``code`` is stable for API clients, ``status`` its HTTP status.
    A DomainError, so the API and the portals answer it as any other refusal."""


@dataclass(frozen=True)
class IssuedCode:
    code: str
    device_key: str
    expires_at: datetime


@dataclass(frozen=True)
class Credentials:
    device_key: str
    username: str
    password: str
    broker_url: str
    tenant: str
    project: str
    device_name: str

    def __repr__(self) -> str:  # never print the password
        return f"Credentials(device_key={self.device_key!r}, broker_url={self.broker_url!r})"


def normalise_code(code: str) -> str:
    """What a person types: any case, spaces or a dash in the middle are fine."""
    return "".join(ch for ch in code.upper() if ch not in " -")


def new_device_key() -> str:
    return "dk-" + "".join(secrets.choice("abcdefghijkmnpqrstuvwxyz23456789") for _ in range(12))


def request_code(db: Session, secret: str) -> IssuedCode:
    if len(secret) < MIN_SECRET_LENGTH:
        raise PairingError(400, "weak_secret", f"the device secret must be at least {MIN_SECRET_LENGTH} "
                                               "random characters")
    platform = PlatformScope(db)
    for _ in range(10):  # a collision with a live code is unlikely; try again if it happens
        code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
        if platform.first(PairingCode, PairingCode.code == code) is None:
            break
    else:
        raise PairingError(503, "no_code", "could not allocate a pairing code; try again")
    row = PairingCode(code=code, device_key=new_device_key(), secret_hash=hash_password(secret),
                      expires_at=utcnow() + CODE_TTL)
    platform.add(row)
    db.commit()
    return IssuedCode(row.code, row.device_key, row.expires_at)


def _live(platform: PlatformScope, code: str) -> PairingCode:
    row = platform.first(PairingCode, PairingCode.code == normalise_code(code))
    if row is None:
        raise PairingError(404, "unknown_code", "no such pairing code; check the code on the device")
    if row.expires_at <= utcnow() or row.attempts >= MAX_SECRET_ATTEMPTS:
        raise PairingError(410, "code_expired",
                           "this pairing code has expired; the device will show a new one")
    return row


def claim(scope: TenantScope, code: str, project_id: uuid.UUID, name: str | None = None,
          claimed_by: uuid.UUID | None = None) -> Device:
    """The tenant takes the device that shows ``code`` into ``project_id``."""
    project = scope.get(Project, project_id)
    if project is None:
        raise PairingError(404, "unknown_project", "no such project")
    platform = PlatformScope(scope.db)
    row = _live(platform, code)
    if row.claimed_at is not None:
        raise PairingError(409, "already_claimed", "this code has already been claimed")
    device = scope.add(Device(project_id=project.id, device_key=row.device_key,
                              name=(name or f"Device {row.code}")[:200], status="paired",
                              presence="offline", paired_at=utcnow()))
    scope.flush()
    platform.flush()  # the code row is the platform's until now: change it under that scope
    row.tenant_id = scope.tenant_id
    row.project_id = project.id
    row.device_id = device.id
    row.claimed_at = utcnow()
    row.claimed_by_user_id = claimed_by
    return device


def collect(db: Session, code: str, secret: str, admin: BrokerAdmin, broker_url: str) -> Credentials | None:
    """The device's poll: None while unclaimed, its credentials once after the claim."""
    platform = PlatformScope(db)
    row = _live(platform, code)
    if not verify_password(row.secret_hash, secret):
        row.attempts += 1
        db.commit()
        raise PairingError(403, "wrong_secret", "this device did not ask for this code")
    if row.claimed_at is None:
        return None
    if row.credentials_delivered:
        raise PairingError(410, "already_delivered",
                           "the credentials were delivered already; pair the device again for new ones")
    scope = platform.for_tenant(row.tenant_id)
    device = scope.get(Device, row.device_id)
    if device is None or device.status != "paired":
        raise PairingError(410, "device_removed", "the device was removed after the claim; pair it again")
    project = scope.get(Project, device.project_id)
    tenant = scope.tenant()
    password = secrets.token_urlsafe(24)
    username = device.device_key
    admin.add_device(device.device_key, username, password)  # BrokerAdminError -> the caller (503)
    scope.add(DeviceCredential(device_id=device.id, username=username, password_hash=hash_password(password)))
    scope.flush()
    platform.flush()
    row.credentials_delivered = True
    row.delivered_at = utcnow()
    db.commit()
    return Credentials(device.device_key, username, password, broker_url, tenant.name,
                       project.name if project else "", device.name)
