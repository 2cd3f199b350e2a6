"""Devices: list with presence, rename, move, unpair; desired config; commands such as announcements."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any, Literal, get_args

from flask import current_app
from pydantic import ConfigDict, Field, ValidationError
from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError

from cloud import capabilities, downlink
from cloud.api.common import (
    Input,
    Output,
    audit,
    decode_cursor,
    encode_cursor,
    endpoint,
    not_found,
    parse_body,
    parse_query,
    scope,
)
from cloud.billing import enforce
from cloud.broker.admin import BrokerAdminError
from cloud.broker.runtime import broker_admin
from cloud.db import Command, ConfigAck, DesiredConfig, Device, DeviceCredential, Project
from cloud.db.base import utcnow
from cloud.errors import ApiError
from protocol import messages

log = logging.getLogger(__name__)

MAX_PAGE = 200
Action = Literal["end_session", "speak", "tap_start", "tap_stop", "reload", "report_now"]
assert set(get_args(Action)) == set(get_args(messages.Command.model_fields["action"].annotation))


# --- models ------------------------------------------------------------------------------------------


class DeviceQuery(Input):
    project_id: uuid.UUID | None = None
    presence: Literal["online", "offline"] | None = None
    status: Literal["paired", "unpaired"] | None = None
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(default=None, max_length=200)


class DeviceUpdate(Input):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    project_id: uuid.UUID | None = None


class DeviceOut(Output):
    id: uuid.UUID
    device_key: str
    name: str
    project_id: uuid.UUID
    status: str
    presence: str
    presence_at: datetime | None
    last_heartbeat_at: datetime | None
    paired_at: datetime | None
    unpaired_at: datetime | None
    created_at: datetime


class DeviceList(Output):
    items: list[DeviceOut]
    next_cursor: str | None


class DesiredOut(Output):
    version: int
    config: dict[str, Any]
    created_by: str
    created_at: datetime


class AckOut(Output):
    acked_version: int
    status: str
    reason: str | None
    ignored: list[str] | None = Field(default=None, description="fields the device did not know and "
                                                                "left alone")
    at: datetime


class ConfigState(Output):
    desired: DesiredOut | None
    ack: AckOut | None


class CapabilitiesOut(Output):
    announced: bool = Field(description="false: the device announced nothing (release 0.1.0); what 0.1.0 "
                                        "could do is assumed, and its models, voices and skills are unknown")
    release: str
    config_fields: list[str]
    commands: list[str]
    details: messages.Capabilities | None = Field(description="what the device announced, as it said it")


class DeviceDetail(DeviceOut):
    last_heartbeat: dict[str, Any] | None
    config: ConfigState
    capabilities: CapabilitiesOut


class VoiceConfigIn(messages.VoiceConfig):
    """The wire's VoiceConfig reads tolerantly (a newer cloud's fields are ignored on a device); a person
    or a script setting a config gets an error for a misspelt field instead."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigPut(Output):
    version: int
    config: dict[str, Any]
    published: bool = Field(description="false: stored, but the broker did not confirm it yet; "
                                        "it is published again by the retry loop")


class SpeakArgs(Input):
    text: str = Field(min_length=1, max_length=messages.MAX_TEXT)
    lang: str | None = Field(default=None, max_length=16)


class TapStartArgs(Input):
    types: list[str] | None = Field(default=None, max_length=50)
    rate: int = Field(default=20, ge=1, le=100)
    duration_s: int = Field(default=300, ge=1, le=3600)


class NoArgs(Input):
    pass


ARGS: dict[str, type[Input]] = {"speak": SpeakArgs, "tap_start": TapStartArgs, "end_session": NoArgs,
                                "tap_stop": NoArgs, "reload": NoArgs, "report_now": NoArgs}


class CommandCreate(Input):
    action: Action
    args: dict[str, Any] = Field(default_factory=dict)


class CommandOut(Output):
    command_id: uuid.UUID
    device_id: uuid.UUID
    action: str
    args: dict[str, Any]
    status: str
    detail: str | None
    result: dict[str, Any] | None
    created_by: str
    created_at: datetime
    sent_at: datetime | None
    finished_at: datetime | None


# --- helpers -----------------------------------------------------------------------------------------


def device_out(row: Device) -> dict:
    return DeviceOut.model_validate(row).model_dump(mode="json")


def get_device(device_id: uuid.UUID) -> Device:
    row = scope().get(Device, device_id)
    if row is None:
        raise not_found("device")
    return row


def _paired(device: Device) -> Device:
    if device.status != "paired":
        raise ApiError(409, "device_unpaired", "this device is unpaired")
    return device


def command_out(row: Command) -> dict:
    return CommandOut.model_validate(row).model_dump(mode="json")


def issue_command(device: Device, action: str, args: dict[str, Any]) -> Command:
    """Store a command (pending), then publish it; it becomes ``sent`` only on the broker's PUBACK.
    A ``speak`` is new cloud-side work: refused (402 plan_limit_reached) at a usage hard limit."""
    _paired(device)
    problem = capabilities.command_problem(capabilities.of(device), action)
    if problem:
        raise ApiError(422, "unsupported_by_device", problem)
    if action == "speak":
        within_plan(enforce.check_speak)
    model = ARGS[action]
    try:
        checked = model.model_validate(args).model_dump(exclude_none=True)
        command_id = uuid.uuid4()
        now = utcnow()
        messages.encode(messages.Command(command_id=command_id, action=action, args=checked, issued_at=now))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(["args", *(str(p) for p in err["loc"])])
        message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        raise ApiError(400, "invalid_request", f"{where}: {message}") from None
    except messages.MessageError as exc:
        raise ApiError(400, "invalid_request", f"args: {exc}") from None
    row = scope().add(Command(device_id=device.id, command_id=command_id, action=action, args=checked,
                              status="pending", created_by=_actor(), created_at=now))
    scope().flush()
    audit("device.command", f"device:{device.id}", command=action, command_id=str(command_id))
    scope().commit()
    if not downlink.for_app(current_app).send(scope(), row, device):
        log.warning("command %s to %s not confirmed by the broker; left pending for retry",
                    command_id, device.device_key)
    scope().db.refresh(row)  # the status and sent_at mark_sent wrote
    return row


def within_plan(check: Any) -> None:
    """Run one of cloud.billing.enforce's checks for the caller's tenant; its refusal becomes the API's
    402 with the stable code ``plan_limit_reached`` and the meter, limit and usage in ``details``."""
    try:
        check(scope().db, scope().tenant_id)
    except enforce.PlanLimitReached as exc:
        raise ApiError(exc.status, exc.code, str(exc), details=exc.details) from None


def _actor() -> str:
    from cloud.api.common import actor

    return actor()


def config_state(device: Device) -> dict:
    """The latest desired config and acknowledgement of a device (API and portal)."""
    desired = scope().scalar(scope().select(DesiredConfig, DesiredConfig.device_id == device.id)
                             .order_by(DesiredConfig.version.desc()).limit(1))
    ack = scope().scalar(scope().select(ConfigAck, ConfigAck.device_id == device.id)
                         .order_by(ConfigAck.at.desc(), ConfigAck.id.desc()).limit(1))
    return ConfigState(desired=DesiredOut.model_validate(desired) if desired else None,
                       ack=AckOut.model_validate(ack) if ack else None).model_dump(mode="json")


# --- routes ------------------------------------------------------------------------------------------


@endpoint("GET", "/devices", summary="List devices (filter by project, presence, status), newest first",
          tag="devices", query=DeviceQuery, response=DeviceList)
def list_devices():
    q = parse_query(DeviceQuery)
    where: list[Any] = []
    if q.project_id is not None:
        where.append(Device.project_id == q.project_id)
    if q.presence is not None:
        where.append(Device.presence == q.presence)
    if q.status is not None:
        where.append(Device.status == q.status)
    if q.cursor:
        at, last = decode_cursor(q.cursor)
        where.append(or_(Device.created_at < at, and_(Device.created_at == at, Device.id < last)))
    rows = scope().all(Device, *where, order_by=[Device.created_at.desc(), Device.id.desc()],
                       limit=q.limit + 1)
    more = len(rows) > q.limit
    rows = rows[:q.limit]
    return {"items": [device_out(r) for r in rows],
            "next_cursor": encode_cursor(rows[-1].created_at, rows[-1].id) if more else None}


@endpoint("GET", "/devices/<uuid:device_id>",
          summary="One device, with its last heartbeat and its desired and acknowledged config",
          tag="devices", response=DeviceDetail, errors=(404,))
def get_device_detail(device_id: uuid.UUID):
    row = get_device(device_id)
    return {**device_out(row), "last_heartbeat": row.last_heartbeat, "config": config_state(row),
            "capabilities": capabilities_out(row)}


def capabilities_out(row: Device) -> dict:
    found = capabilities.of(row)
    return CapabilitiesOut(announced=found.announced, release=found.release,
                           config_fields=sorted(found.config_fields), commands=sorted(found.commands),
                           details=found.details).model_dump(mode="json", exclude_none=True)


@endpoint("PATCH", "/devices/<uuid:device_id>", summary="Rename a device or move it to another project",
          tag="devices", body=DeviceUpdate, response=DeviceOut, errors=(404, 422))
def update_device(device_id: uuid.UUID):
    body = parse_body(DeviceUpdate)
    row = get_device(device_id)
    change_device(row, name=body.name, project_id=body.project_id)
    scope().commit()
    return device_out(row)


def change_device(row: Device, *, name: str | None = None, project_id: uuid.UUID | None = None) -> Device:
    """Rename and/or move a device (audited, not committed): shared by the API and the tenant portal.

    Raises ApiError 422 ``unknown_project`` for a project that is not the caller's.
    """
    if project_id is not None and project_id != row.project_id:
        if scope().get(Project, project_id) is None:
            raise ApiError(422, "unknown_project", "project_id: no such project")
        audit("device.move", f"device:{row.id}", old=str(row.project_id), new=str(project_id))
        row.project_id = project_id
    if name is not None and name != row.name:
        audit("device.rename", f"device:{row.id}", old=row.name, new=name)
        row.name = name
    return row


@endpoint("DELETE", "/devices/<uuid:device_id>",
          summary="Unpair: revoke the device's broker credentials and disconnect it",
          tag="devices", response=DeviceOut, errors=(404, 503))
def unpair_device(device_id: uuid.UUID):
    return device_out(unpair(get_device(device_id)))


def unpair(row: Device) -> Device:
    """Revoke the device's broker credentials, mark it unpaired and offline, and commit: shared by the
    API's DELETE and the tenant portal. Raises ApiError 503 when the broker cannot revoke now (nothing
    is changed then, so the device is never shown unpaired while it can still connect)."""
    credentials = scope().all(DeviceCredential, DeviceCredential.device_id == row.id,
                              DeviceCredential.revoked_at.is_(None))
    config = current_app.extensions["voxfleet.config"]
    now = utcnow()
    if credentials:
        try:
            admin = broker_admin(config, current_app.extensions.get("voxfleet.broker"))
        except BrokerAdminError as exc:
            log.error("unpair %s: no broker admin: %s", row.device_key, exc)
            raise ApiError(503, "broker_unavailable", "the broker cannot revoke credentials now") from None
        try:
            for credential in credentials:
                admin.remove_device(credential.username)
                credential.revoked_at = now
        except BrokerAdminError as exc:
            scope().db.rollback()
            log.error("unpair %s: the broker refused: %s", row.device_key, exc)
            raise ApiError(503, "broker_unavailable", "the broker cannot revoke credentials now") from None
        finally:
            admin.close()
    if row.status != "unpaired" or credentials:
        row.status, row.unpaired_at = "unpaired", row.unpaired_at or now
        row.presence, row.presence_at = "offline", now
        audit("device.unpair", f"device:{row.id}", device_key=row.device_key,
              credentials_revoked=len(credentials))
        scope().commit()
    return row


@endpoint("PUT", "/devices/<uuid:device_id>/config",
          summary="Set the desired voice config (a new version, published retained to the device)",
          tag="devices", body=VoiceConfigIn, response=ConfigPut, errors=(404, 409, 422))
def put_device_config(device_id: uuid.UUID):
    body = parse_body(VoiceConfigIn)
    row = _paired(get_device(device_id))
    config = body.model_dump(exclude_none=True)
    problems = capabilities.config_problems(capabilities.of(row), config)
    if problems:
        raise ApiError(422, "unsupported_by_device", f"{problems[0]['field']}: {problems[0]['message']}",
                       details=problems)
    current = scope().scalar(select(func.max(DesiredConfig.version)).where(DesiredConfig.device_id == row.id))
    version = (current or 0) + 1
    scope().add(DesiredConfig(device_id=row.id, version=version, config=config, created_by=_actor()))
    scope().flush()
    audit("device.config", f"device:{row.id}", version=version, fields=sorted(config))
    try:
        scope().commit()
    except IntegrityError:
        scope().db.rollback()
        raise ApiError(409, "version_conflict", "another config was set at the same moment; retry") from None
    published = downlink.for_app(current_app).publish_config(row.device_key, version, config,
                                                              row.tenant_id, row.id,
                                                              peer=capabilities.of(row).peer)
    return {"version": version, "config": config, "published": published}


@endpoint("GET", "/devices/<uuid:device_id>/config",
          summary="The latest desired config and the device's latest acknowledgement", tag="devices",
          response=ConfigState, errors=(404,))
def get_device_config(device_id: uuid.UUID):
    return config_state(get_device(device_id))


@endpoint("POST", "/devices/<uuid:device_id>/commands",
          summary="Send a command (speak, end_session, tap_start, tap_stop, reload, report_now)",
          tag="devices", body=CommandCreate, response=CommandOut, status=202, errors=(402, 404, 409, 422))
def post_device_command(device_id: uuid.UUID):
    body = parse_body(CommandCreate)
    row = get_device(device_id)
    return command_out(issue_command(row, body.action, body.args)), 202


@endpoint("GET", "/devices/<uuid:device_id>/commands/<uuid:command_id>",
          summary="A command's status and the device's result", tag="devices", response=CommandOut,
          errors=(404,))
def get_device_command(device_id: uuid.UUID, command_id: uuid.UUID):
    row = get_device(device_id)
    command = scope().first(Command, Command.device_id == row.id, Command.command_id == command_id)
    if command is None:
        raise not_found("command")
    return command_out(command)
