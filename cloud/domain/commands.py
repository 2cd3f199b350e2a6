"""Commands to a device (speak, end_session, tap_start, tap_stop, reload, report_now).

``issue_command`` is the one way a command is sent (API, portal, CLI). Its refusals all happen in
``check_command`` before anything is stored, so a rule about what a device accepts is added there once.
A command is stored ``pending`` and becomes ``sent`` only on the broker's PUBACK; the downlink's retry
loop sends what was not confirmed. A device is sent only the commands its announced capabilities list
(cloud/capabilities.py).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Literal, get_args

from pydantic import Field, ValidationError

from cloud import capabilities
from cloud.billing import enforce
from cloud.db import Command, Device
from cloud.db.base import utcnow
from cloud.domain.caller import Caller
from cloud.domain.devices import require_paired
from cloud.domain.errors import DomainError, not_found
from cloud.domain.plan_limits import within_plan
from cloud.domain.validation import Strict, invalid
from cloud.downlink import Downlink
from cloud.scoping import TenantScope
from protocol import messages

log = logging.getLogger(__name__)

Action = Literal["end_session", "speak", "tap_start", "tap_stop", "reload", "report_now"]
assert set(get_args(Action)) == set(get_args(messages.Command.model_fields["action"].annotation))


class SpeakArgs(Strict):
    text: str = Field(min_length=1, max_length=messages.MAX_TEXT)
    lang: str | None = Field(default=None, max_length=16)


class TapStartArgs(Strict):
    types: list[str] | None = Field(default=None, max_length=50)
    rate: int = Field(default=20, ge=1, le=100)
    duration_s: int = Field(default=300, ge=1, le=3600)


class NoArgs(Strict):
    pass


ARGS: dict[str, type[Strict]] = {"speak": SpeakArgs, "tap_start": TapStartArgs, "end_session": NoArgs,
                                 "tap_stop": NoArgs, "reload": NoArgs, "report_now": NoArgs}
assert set(ARGS) == set(get_args(Action))


def args_model(action: str) -> type[Strict]:
    """The model of the action's arguments; DomainError 400 ``invalid_request`` for an action the cloud
    does not know at all (a device's own list of actions is a separate check)."""
    model = ARGS.get(action)
    if model is None:
        raise DomainError(400, "invalid_request", f"action: unknown action {action!r}; one of "
                                                  f"{', '.join(sorted(ARGS))}")
    return model


def command_args(action: str, args: dict[str, Any]) -> dict[str, Any]:
    """``args`` checked against the action's model and the wire format, as they will be sent; DomainError
    400 ``invalid_request`` naming the field (``action``, ``args.<field>``) otherwise."""
    model = args_model(action)
    try:
        checked = model.model_validate(args).model_dump(exclude_none=True)
        messages.encode(messages.Command(command_id=uuid.uuid4(), action=action, args=checked,
                                         issued_at=utcnow()))
    except ValidationError as exc:
        raise invalid(exc, prefix=("args",)) from None
    except messages.MessageError as exc:
        raise DomainError(400, "invalid_request", f"args: {exc}") from None
    return checked


def check_command(scope: TenantScope, device: Device, action: str, args: dict[str, Any]) -> dict[str, Any]:
    """The validation step: the args as they will be stored and sent, or the DomainError that refuses
    the command (409 ``device_unpaired``, 400 ``invalid_request``, 422 ``unsupported_by_device`` for an
    action the device's capabilities do not list, 402 ``plan_limit_reached`` for a ``speak`` at a usage
    hard limit: an announcement is new cloud-side work). Nothing is stored here."""
    require_paired(device)
    args_model(action)
    problem = capabilities.command_problem(capabilities.of(device), action)
    if problem:
        raise DomainError(422, "unsupported_by_device", problem)
    if action == "speak":
        within_plan(scope, enforce.check_speak)
    return command_args(action, args)


def issue_command(caller: Caller, device: Device, action: str, args: dict[str, Any], *,
                  downlink: Downlink) -> Command:
    """Store the command (pending, audited, committed), then publish it; returns the row with the status
    the publish left (``sent`` once the broker confirmed it, else still ``pending``)."""
    scope = caller.scope
    checked = check_command(scope, device, action, args)
    command_id = uuid.uuid4()
    row = scope.add(Command(device_id=device.id, command_id=command_id, action=action, args=checked,
                            status="pending", created_by=caller.actor, created_at=utcnow()))
    scope.flush()
    caller.audit("device.command", f"device:{device.id}", command=action, command_id=str(command_id))
    scope.commit()
    if not downlink.send(scope, row, device):
        log.warning("command %s to %s not confirmed by the broker; left pending for retry",
                    command_id, device.device_key)
    scope.db.refresh(row)  # the status and sent_at mark_sent wrote
    return row


def get_command(scope: TenantScope, device: Device, command_id: uuid.UUID) -> Command:
    """One of the device's commands by its command id, or DomainError 404 ``command_not_found``."""
    row = scope.first(Command, Command.device_id == device.id, Command.command_id == command_id)
    if row is None:
        raise not_found("command")
    return row
