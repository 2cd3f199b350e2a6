"""The network page: Wi-Fi scan and join through NetworkManager, or "managed by the host"."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from device import netman

bp = Blueprint("network", __name__)


def _render(status: int = 200, error: str | None = None, scan: bool = False, ssid: str = ""):
    reason = netman.unavailable_reason()
    if reason is not None:
        return render_template("network.html", managed_by_host=True, reason=reason,
                               addresses=netman.host_addresses()), status
    networks, devices, problem = [], [], error
    try:
        devices = netman.devices()
        if scan:
            networks = netman.scan()
    except netman.NetworkError as exc:
        problem = problem or str(exc)
    return render_template("network.html", managed_by_host=False, devices=devices, networks=networks,
                           scanned=scan, error=problem, ssid=ssid,
                           addresses=netman.host_addresses()), status


@bp.get("/network")
def network():
    return _render(scan=request.args.get("scan") == "1")


@bp.post("/network/join")
def join():
    if netman.unavailable_reason() is not None:
        return _render(409)
    ssid = request.form.get("ssid", "")
    try:
        netman.join(ssid, request.form.get("password") or None)
    except netman.NetworkError as exc:
        shown = ssid.replace("\x00", "\ufffd")  # a NUL is refused by netman; never echo it into the page
        return _render(400, f"Could not join '{shown}': {exc}", ssid=shown)
    flash(f"Joined '{ssid}'. If this page stops answering, find the device's new address on that network.")
    return redirect(url_for("network.network"))
