"""Devices: list with presence, rename, move, unpair; desired config; commands such as announcements.
The actions are cloud/domain's (devices, configs, commands); these routes parse and serialise."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from cloud import capabilities, services
from cloud.api.common import Input, Output, caller, endpoint, owned, parse_body, parse_query, scope
from cloud.db import Device
from cloud.domain import commands, configs, devices
from cloud.domain.paging import newest_first
from protocol import messages

MAX_PAGE = 200


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


class ConfigPut(Output):
    version: int
    config: dict[str, Any]
    published: bool = Field(description="false: stored, but the broker did not confirm it yet; "
                                        "it is published again by the retry loop")


class CommandCreate(Input):
    action: commands.Action
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
    page = newest_first(scope(), Device, Device.created_at, where, q.limit, q.cursor)
    return {"items": [DeviceOut.dump(r) for r in page.rows], "next_cursor": page.next_cursor}


@endpoint("GET", "/devices/<uuid:device_id>",
          summary="One device, with its last heartbeat and its desired and acknowledged config",
          tag="devices", response=DeviceDetail, errors=(404,))
def get_device_detail(device_id: uuid.UUID):
    row = owned(Device, device_id, "device")
    return {**DeviceOut.dump(row), "last_heartbeat": row.last_heartbeat,
            "config": ConfigState.dump(configs.config_state(scope(), row)),
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
    row = owned(Device, device_id, "device")
    return DeviceOut.dump(devices.update_device(caller(), row, name=body.name, project_id=body.project_id))


@endpoint("DELETE", "/devices/<uuid:device_id>",
          summary="Unpair: revoke the device's broker credentials and disconnect it",
          tag="devices", response=DeviceOut, errors=(404, 503))
def unpair_device(device_id: uuid.UUID):
    row = owned(Device, device_id, "device")
    return DeviceOut.dump(devices.unpair(caller(), row, config=services.config(), broker=services.broker()))


@endpoint("PUT", "/devices/<uuid:device_id>/config",
          summary="Set the desired voice config (a new version, published retained to the device)",
          tag="devices", body=configs.VoiceConfigIn, response=ConfigPut, errors=(404, 409, 422))
def put_device_config(device_id: uuid.UUID):
    body = parse_body(configs.VoiceConfigIn)
    row = owned(Device, device_id, "device")
    done = configs.set_desired_config(caller(), row, body, downlink=services.downlink())
    return ConfigPut.dump(done)


@endpoint("GET", "/devices/<uuid:device_id>/config",
          summary="The latest desired config and the device's latest acknowledgement", tag="devices",
          response=ConfigState, errors=(404,))
def get_device_config(device_id: uuid.UUID):
    return ConfigState.dump(configs.config_state(scope(), owned(Device, device_id, "device")))


@endpoint("POST", "/devices/<uuid:device_id>/commands",
          summary="Send a command (speak, end_session, tap_start, tap_stop, reload, report_now)",
          tag="devices", body=CommandCreate, response=CommandOut, status=202, errors=(402, 404, 409, 422))
def post_device_command(device_id: uuid.UUID):
    body = parse_body(CommandCreate)
    row = commands.issue_command(caller(), owned(Device, device_id, "device"), body.action, body.args,
                                 downlink=services.downlink())
    return CommandOut.dump(row), 202


@endpoint("GET", "/devices/<uuid:device_id>/commands/<uuid:command_id>",
          summary="A command's status and the device's result", tag="devices", response=CommandOut,
          errors=(404,))
def get_device_command(device_id: uuid.UUID, command_id: uuid.UUID):
    return CommandOut.dump(commands.get_command(scope(), owned(Device, device_id, "device"), command_id))
