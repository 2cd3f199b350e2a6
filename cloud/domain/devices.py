"""A tenant's devices: rename, move to another project, unpair.

Desired configs and commands have modules of their own (configs.py, commands.py); both refuse an
unpaired device through ``require_paired``.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from cloud.broker.admin import BrokerAdminError
from cloud.broker.runtime import broker_admin
from cloud.config import CloudConfig
from cloud.db import Device, DeviceCredential, Project
from cloud.db.base import utcnow
from cloud.domain.caller import Caller
from cloud.domain.errors import DomainError

log = logging.getLogger(__name__)


def require_paired(device: Device) -> Device:
    """The device, or DomainError 409 ``device_unpaired``: an unpaired device takes no orders."""
    if device.status != "paired":
        raise DomainError(409, "device_unpaired", "this device is unpaired")
    return device


def update_device(caller: Caller, device: Device, *, name: str | None = None,
                  project_id: uuid.UUID | None = None) -> Device:
    """Rename and/or move a device, audited, and commit. DomainError 422 ``unknown_project`` for a
    project that is not the caller's (nothing is changed then)."""
    scope = caller.scope
    if project_id is not None and project_id != device.project_id:
        if scope.get(Project, project_id) is None:
            raise DomainError(422, "unknown_project", "project_id: no such project")
        caller.audit("device.move", f"device:{device.id}", old=str(device.project_id), new=str(project_id))
        device.project_id = project_id
    if name is not None and name != device.name:
        caller.audit("device.rename", f"device:{device.id}", old=device.name, new=name)
        device.name = name
    scope.commit()
    return device


def unpair(caller: Caller, device: Device, *, config: CloudConfig, broker: Any = None) -> Device:
    """Revoke the device's broker credentials, mark it unpaired and offline, and commit.

    DomainError 503 ``broker_unavailable`` when the broker cannot revoke now; nothing is changed then,
    so a device is never shown unpaired while it can still connect. ``broker``: the embedded broker
    when the cloud runs one (cloud.broker.runtime.broker_admin).
    """
    scope = caller.scope
    credentials = scope.all(DeviceCredential, DeviceCredential.device_id == device.id,
                            DeviceCredential.revoked_at.is_(None))
    now = utcnow()
    if credentials:
        try:
            admin = broker_admin(config, broker)
        except BrokerAdminError as exc:
            log.error("unpair %s: no broker admin: %s", device.device_key, exc)
            raise _broker_unavailable() from None
        try:
            for credential in credentials:
                admin.remove_device(credential.username)
                credential.revoked_at = now
        except BrokerAdminError as exc:
            scope.db.rollback()
            log.error("unpair %s: the broker refused: %s", device.device_key, exc)
            raise _broker_unavailable() from None
        finally:
            admin.close()
    if device.status != "unpaired" or credentials:
        device.status, device.unpaired_at = "unpaired", device.unpaired_at or now
        device.presence, device.presence_at = "offline", now
        caller.audit("device.unpair", f"device:{device.id}", device_key=device.device_key,
                     credentials_revoked=len(credentials))
        scope.commit()
    return device


def _broker_unavailable() -> DomainError:
    return DomainError(503, "broker_unavailable", "the broker cannot revoke credentials now")
