"""Builds multi-tenant data the way the app does, through the scoping layer."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from cloud.db import ApiKey, Device, Project, Tenant, VoiceSession, utcnow
from cloud.scoping import PlatformScope, TenantScope
from cloud.security import new_api_key


@dataclass
class TenantRows:
    tenant_id: uuid.UUID
    project_ids: set[uuid.UUID] = field(default_factory=set)
    device_ids: set[uuid.UUID] = field(default_factory=set)
    session_ids: set[uuid.UUID] = field(default_factory=set)
    api_key_ids: set[uuid.UUID] = field(default_factory=set)


def build(db, shape: list[tuple[list[int], int]]) -> list[TenantRows]:
    """``shape``: per tenant, (sessions per device, number of API keys)."""
    made = []
    platform = PlatformScope(db)
    tenants = [platform.add(Tenant(name=f"Tenant {i}", slug=f"t{i}-{uuid.uuid4().hex[:6]}"))
               for i in range(len(shape))]
    platform.flush()
    start = utcnow() - timedelta(days=1)
    for tenant, (sessions_per_device, keys) in zip(tenants, shape, strict=True):
        rows = TenantRows(tenant.id)
        scope = TenantScope(db, tenant.id)
        project = scope.add(Project(name="Default", is_default=True))
        scope.flush()
        rows.project_ids.add(project.id)
        for d, sessions in enumerate(sessions_per_device):
            device = scope.add(Device(project_id=project.id, name=f"device {d}",
                                      device_key=f"dev-{uuid.uuid4().hex[:12]}"))
            scope.flush()
            rows.device_ids.add(device.id)
            for s in range(sessions):
                session = scope.add(VoiceSession(device_id=device.id, project_id=project.id,
                                                 session_key=f"s{s}", started_at=start + timedelta(minutes=s),
                                                 transcript=f"what time is it {s}"))
                scope.flush()
                rows.session_ids.add(session.id)
        for _ in range(keys):
            key = new_api_key()
            api_key = scope.add(ApiKey(prefix=key.prefix, key_hash=key.key_hash, scope="read"))
            scope.flush()
            rows.api_key_ids.add(api_key.id)
        made.append(rows)
    db.commit()
    return made
