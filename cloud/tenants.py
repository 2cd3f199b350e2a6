"""Suspending and reactivating a tenant: one place, used by the operator portal and the CLI.

Suspension takes effect everywhere at once: the tenant's devices are disabled on the broker (their
connections dropped; their accounts kept, so reactivation needs no re-pairing), its API keys answer
403 ``tenant_suspended`` (cloud/api/auth.py), its people cannot sign in and their sessions end
(cloud/web/access.py), and ingest refuses what its devices may still have in flight. Both changes
are audited. Devices are marked offline here because ingest will not store their Last Will.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from cloud.admin import audit
from cloud.broker.admin import BrokerAdmin
from cloud.db import Device, DeviceCredential, Tenant
from cloud.db.base import utcnow
from cloud.scoping import PlatformScope


class TenantStateError(ValueError):
    """The tenant is not in a state where this change makes sense."""


def _credentials(db: Session, tenant_id: uuid.UUID) -> list[DeviceCredential]:
    scope = PlatformScope(db).for_tenant(tenant_id)
    return scope.all(DeviceCredential, DeviceCredential.revoked_at.is_(None))


def suspend_tenant(db: Session, tenant_id: uuid.UUID, admin: BrokerAdmin, actor: str,
                   reason: str = "", ip: str | None = None) -> int:
    """Suspend; returns how many device accounts were disabled. Commits."""
    platform = PlatformScope(db)
    tenant = platform.get(Tenant, tenant_id)
    if tenant is None:
        raise TenantStateError("no such tenant")
    if tenant.status == "suspended":
        raise TenantStateError(f"{tenant.name} is already suspended")
    tenant.status = "suspended"
    tenant.suspended_at = utcnow()
    platform.flush()
    disabled = 0
    for credential in _credentials(db, tenant.id):
        admin.disable_device(credential.username)
        disabled += 1
    scope = platform.for_tenant(tenant.id)
    now = utcnow()
    for device in scope.all(Device, Device.presence == "online"):
        device.presence, device.presence_at = "offline", now
    scope.flush()
    audit(db, actor, "tenant.suspended", target=f"tenant:{tenant.id}", tenant_id=tenant.id, ip=ip,
          reason=reason[:500], devices_disabled=disabled)
    db.commit()
    return disabled


def reactivate_tenant(db: Session, tenant_id: uuid.UUID, admin: BrokerAdmin, actor: str,
                      ip: str | None = None) -> int:
    platform = PlatformScope(db)
    tenant = platform.get(Tenant, tenant_id)
    if tenant is None:
        raise TenantStateError("no such tenant")
    if tenant.status == "active":
        raise TenantStateError(f"{tenant.name} is already active")
    enabled = 0
    for credential in _credentials(db, tenant.id):
        admin.enable_device(credential.username)
        enabled += 1
    platform.flush()
    tenant.status = "active"
    tenant.suspended_at = None
    platform.flush()
    audit(db, actor, "tenant.reactivated", target=f"tenant:{tenant.id}", tenant_id=tenant.id, ip=ip,
          devices_enabled=enabled)
    db.commit()
    return enabled
