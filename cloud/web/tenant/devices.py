"""Devices: the list with presence, pairing by the code a device shows, rename, move, unpair, and a
device's detail page with its health history and voice services."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for

from cloud import capabilities, services
from cloud.db import Command, Device, Heartbeat, Project, VoiceSession
from cloud.domain import configs, pairing
from cloud.domain import devices as domain_devices
from cloud.domain.errors import DomainError
from cloud.web.access import TENANT_ADMINS, allow, current_user, scope
from cloud.web.refusals import sentence
from cloud.web.tenant.blueprint import bp
from cloud.web.tenant.common import as_uuid, caller, owned

HEARTBEATS_SHOWN = 50


def _list_page(form: dict[str, str] | None = None, errors: dict[str, str] | None = None, status: int = 200):
    current = scope()
    projects = current.all(Project, order_by=[Project.is_default.desc(), Project.name])
    wanted_project = as_uuid(request.args.get("project"))
    presence = request.args.get("presence") if request.args.get("presence") in ("online", "offline") else None
    where: list[Any] = [Device.status == "paired"] if request.args.get("show") != "all" else []
    if wanted_project is not None:
        where.append(Device.project_id == wanted_project)
    if presence:
        where.append(Device.presence == presence)
    rows = current.all(Device, *where, order_by=[Device.status, Device.name, Device.id])
    default = next((p for p in projects if p.is_default), projects[0] if projects else None)
    form = form or {"project_id": str(default.id) if default else ""}
    return render_template(
        "tenant/devices.html",
        devices=rows,
        projects=projects,
        project_names={p.id: p.name for p in projects},
        form=form,
        errors=errors or {},
        filters={
            "project": str(wanted_project or ""),
            "presence": presence or "",
            "show": request.args.get("show", ""),
        },
    ), status


@bp.get("/devices")
@allow(*TENANT_ADMINS)
def devices():
    return _list_page()


@bp.post("/devices/pair")
@allow(*TENANT_ADMINS)
def pair_device():
    """Claim the device that shows the typed code (cloud.domain.pairing.claim, as the API does, so wrong
    codes count against the same per-tenant budget)."""
    form = {k: request.form.get(k, "").strip() for k in ("code", "project_id", "name")}
    errors: dict[str, str] = {}
    project_id = as_uuid(form["project_id"])
    if not form["code"]:
        errors["code"] = "Type the code the device shows."
    elif len(form["code"]) > 16:
        errors["code"] = "A pairing code has 6 characters."
    if project_id is None:
        errors["project_id"] = "Choose a project."
    if len(form["name"]) > 200:
        errors["name"] = "At most 200 characters."
    if errors:
        return _list_page(form, errors, 400)
    try:
        device = pairing.claim(caller(), form["code"], project_id, form["name"] or None,
                               claimed_by=current_user().id)
    except DomainError as exc:
        field = "project_id" if exc.code == "unknown_project" else "code"
        hint = {
            "unknown_code": "No device shows this code. Check it on the device's screen or setup page.",
            "code_expired": "This code has expired. The device shows a new one; type that instead.",
            "already_claimed": "This code was already used to pair a device.",
        }.get(exc.code, sentence(exc))
        errors[field] = hint
        return _list_page(form, errors, exc.status if exc.status != 404 else 400)
    flash(f"Paired “{device.name}”. It appears online once it has collected its credentials and connected.")
    return redirect(url_for("tenant.device", device_id=device.id))


@bp.get("/devices/<uuid:device_id>")
@allow(*TENANT_ADMINS)
def device(
    device_id, form: dict[str, str] | None = None, errors: dict[str, str] | None = None, status: int = 200
):
    current = scope()
    row = owned(Device, device_id)
    heartbeats = current.all(
        Heartbeat,
        Heartbeat.device_id == row.id,
        order_by=[Heartbeat.at.desc(), Heartbeat.id.desc()],
        limit=HEARTBEATS_SHOWN,
    )
    sessions = current.all(
        VoiceSession,
        VoiceSession.device_id == row.id,
        order_by=[VoiceSession.started_at.desc(), VoiceSession.id.desc()],
        limit=10,
    )
    commands = current.all(
        Command,
        Command.device_id == row.id,
        order_by=[Command.created_at.desc(), Command.id.desc()],
        limit=10,
    )
    projects = current.all(Project, order_by=[Project.is_default.desc(), Project.name])
    latest = row.last_heartbeat or {}
    return render_template(
        "tenant/device.html",
        device=row,
        heartbeats=heartbeats,
        sessions=sessions,
        commands=commands,
        projects=projects,
        project=current.get(Project, row.project_id),
        services=latest.get("services") or {},
        versions=latest.get("versions") or {},
        latest=latest,
        config=configs.config_state(current, row),
        abilities=capabilities.of(row),
        form=form or {"name": row.name, "project_id": str(row.project_id)},
        errors=errors or {},
    ), status


@bp.post("/devices/<uuid:device_id>")
@allow(*TENANT_ADMINS)
def update_device(device_id):
    row = owned(Device, device_id)
    form = {"name": request.form.get("name", "").strip(), "project_id": request.form.get("project_id", "")}
    errors: dict[str, str] = {}
    if not form["name"]:
        errors["name"] = "Give the device a name."
    elif len(form["name"]) > 200:
        errors["name"] = "At most 200 characters."
    project_id = as_uuid(form["project_id"])
    if project_id is None:
        errors["project_id"] = "Choose a project."
    if not errors:
        try:
            domain_devices.update_device(caller(), row, name=form["name"], project_id=project_id)
        except DomainError as exc:
            scope().db.rollback()
            errors["project_id"] = sentence(exc)
    if errors:
        return device(device_id, form, errors, 400)
    flash("Device saved.")
    return redirect(url_for("tenant.device", device_id=row.id))


@bp.post("/devices/<uuid:device_id>/unpair")
@allow(*TENANT_ADMINS)
def unpair_device(device_id):
    """Revoke the broker credentials and disconnect, as DELETE /api/v1/devices/{id} does."""
    row = owned(Device, device_id)
    try:
        domain_devices.unpair(caller(), row, config=services.config(), broker=services.broker())
    except DomainError as exc:
        flash(f"Could not unpair: {sentence(exc)} Nothing was changed; try again in a moment.", "error")
        return redirect(url_for("tenant.device", device_id=device_id))
    flash(
        f"“{row.name}” is unpaired: its broker login is revoked and it is disconnected. "
        "Its sessions stay in the history. To use it again, pair it with a new code."
    )
    return redirect(url_for("tenant.devices"))
