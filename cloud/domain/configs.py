"""Desired voice configs: every change is a new version, stored, audited and published retained to
the device; the device acknowledges the version it applied.

``set_desired_config`` is the one way a config is set (API, portal, CLI). Its refusals all happen in
``check_config`` before anything is stored: a field misspelt, a value out of range, or a field or value
the device's announced capabilities do not support (cloud/capabilities.py). The config is published
encoded for the device's own release (``peer``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from cloud import capabilities
from cloud.db import ConfigAck, DesiredConfig, Device
from cloud.domain.caller import Caller
from cloud.domain.devices import require_paired
from cloud.domain.errors import DomainError
from cloud.domain.validation import validated
from cloud.downlink import Downlink
from cloud.scoping import TenantScope
from protocol import messages


class VoiceConfigIn(messages.VoiceConfig):
    """The wire's VoiceConfig reads tolerantly (a newer cloud's fields are ignored on a device); a person
    or a script setting a config gets an error for a misspelt field instead."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class ConfigState:
    """The latest desired config of a device and its latest acknowledgement (either may be None)."""

    desired: DesiredConfig | None
    ack: ConfigAck | None


@dataclass(frozen=True)
class ConfigSet:
    version: int
    config: dict[str, Any]
    published: bool   # False: stored, but the broker did not confirm it yet (the retry loop sends it again)


def config_state(scope: TenantScope, device: Device) -> ConfigState:
    desired = scope.scalar(scope.select(DesiredConfig, DesiredConfig.device_id == device.id)
                           .order_by(DesiredConfig.version.desc()).limit(1))
    ack = scope.scalar(scope.select(ConfigAck, ConfigAck.device_id == device.id)
                       .order_by(ConfigAck.at.desc(), ConfigAck.id.desc()).limit(1))
    return ConfigState(desired, ack)


def check_config(scope: TenantScope, device: Device,
                 config: Mapping[str, Any] | messages.VoiceConfig) -> dict[str, Any]:
    """The validation step: the config as it will be stored and sent, or the DomainError that refuses
    it (409 ``device_unpaired``, 400 ``invalid_request`` naming the field, 422 ``unsupported_by_device``
    for a field or value the device's capabilities do not support). Nothing is stored here."""
    require_paired(device)
    wanted = config if isinstance(config, VoiceConfigIn) else validated(VoiceConfigIn, dict(config))
    checked = wanted.model_dump(exclude_none=True)
    problems = capabilities.config_problems(capabilities.of(device), checked)
    if problems:
        first = problems[0]
        raise DomainError(422, "unsupported_by_device", f"{first['field']}: {first['message']}",
                          details=problems)
    return checked


def set_desired_config(caller: Caller, device: Device, config: Mapping[str, Any] | messages.VoiceConfig, *,
                       downlink: Downlink) -> ConfigSet:
    """Store ``config`` as the device's next version (audited, committed), then publish it retained.

    Refusals come from ``check_config``; two changes at the same moment are told apart by the version's
    unique key: the later one gets DomainError 409 ``version_conflict`` and nothing of it is kept.
    """
    scope = caller.scope
    checked = check_config(scope, device, config)
    latest = select(func.max(DesiredConfig.version)).where(DesiredConfig.device_id == device.id)
    version = (scope.scalar(latest) or 0) + 1
    try:  # (device, version) is unique: of two changes made at the same moment, the second fails here
        scope.add(DesiredConfig(device_id=device.id, version=version, config=checked,
                                created_by=caller.actor))
        scope.flush()
        caller.audit("device.config", f"device:{device.id}", version=version, fields=sorted(checked))
        scope.commit()
    except IntegrityError:
        scope.db.rollback()
        raise DomainError(409, "version_conflict",
                          "another config was set at the same moment; retry") from None
    published = downlink.publish_config(device.device_key, version, checked, device.tenant_id, device.id,
                                        peer=capabilities.of(device).peer)
    return ConfigSet(version, checked, published)
