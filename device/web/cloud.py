"""The cloud page: enter the cloud's address, show the pairing code large, wait for the claim, unpair.

Unpairing deletes ``cloud.json`` (the agent follows that file and disconnects) and ``managed.json``:
without a cloud nothing manages the device's settings any more, so they return to local control and
the services the cloud's fields affected are restarted with the local values.
"""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, flash, jsonify, redirect, render_template, request, url_for

from device.settings import managed_path, managed_settings
from device.sync import pairing
from device.web import device_info
from device.web.context import device_paths
from device.web.pairing_job import PairingJob
from device.web.saving import affected, request_restart, stack_running

bp = Blueprint("cloud", __name__)


def _job() -> PairingJob:
    return current_app.extensions["voxfleet_pairing"]


def _render(status: int = 200, error: str | None = None, url: str = ""):
    paths = device_paths()
    snap = _job().snapshot()
    return render_template("cloud.html", pairing=device_info.pairing(paths), job=snap,
                           url=url or snap.cloud or "", error=error), status


@bp.get("/cloud")
def cloud():
    return _render()


@bp.get("/cloud/state")
def state():
    snap = _job().snapshot().as_dict()
    record = device_info.pairing(device_paths())
    snap["paired"] = record is not None
    if record:
        snap.update(tenant=record.get("tenant"), project=record.get("project"))
    return jsonify(snap)


@bp.post("/cloud/pair")
def pair():
    url = request.form.get("cloud", "").strip()
    if device_info.pairing(device_paths()) is not None:
        return _render(409, "This device is already paired. Unpair it first to pair with another cloud.", url)
    if not url:
        return _render(400, "Enter the cloud's web address, like https://cloud.example.com", url)
    try:
        _job().start(url)
    except pairing.PairingFailed as exc:
        return _render(400, str(exc), url)
    return redirect(url_for("cloud.cloud"))


@bp.post("/cloud/cancel")
def cancel():
    _job().cancel()
    flash("Pairing cancelled.")
    return redirect(url_for("cloud.cloud"))


@bp.post("/cloud/unpair")
def unpair():
    paths = device_paths()
    if device_info.pairing(paths) is None:
        flash("This device is not paired.")
        return redirect(url_for("cloud.cloud"))
    _job().cancel()
    (paths.root / "cloud.json").unlink(missing_ok=True)
    fields = set(managed_settings(paths.root)[1])
    managed_path(paths.root).unlink(missing_ok=True)
    note = "Unpaired: the device no longer talks to the cloud."
    services = affected(fields)
    bus = stack_running(paths)
    if services and bus is not None:
        try:
            request_restart(bus, services)
            note += f" Settings are local again; restarted {', '.join(services)}."
        except RuntimeError as exc:
            note += f" Restarting {', '.join(services)} failed: {exc}"
    elif fields:
        note += " Settings the cloud managed are local again."
    flash(note)
    return redirect(url_for("cloud.cloud"))


def init_app(app: Flask) -> None:
    app.extensions["voxfleet_pairing"] = PairingJob(app.config["DEVICE_PATHS"].root)
