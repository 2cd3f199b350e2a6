"""The status page (services, sync, versions, uptime, disk, temperature) and the voice history."""

from __future__ import annotations

import math

from flask import Blueprint, redirect, render_template, request, url_for

from device.settings import SettingsError, load_settings
from device.web import device_info
from device.web.context import device_paths

bp = Blueprint("status", __name__)
PER_PAGE = 20


def index():
    return redirect(url_for("status.status"))


@bp.get("/status")
def status():
    paths = device_paths()
    try:
        settings, settings_error = load_settings(paths.root), None
    except SettingsError as exc:
        settings, settings_error = None, str(exc)
    return render_template(
        "status.html", stack=device_info.services(paths), sync=device_info.sync_state(paths),
        pairing=device_info.pairing(paths), versions=device_info.versions(),
        models=device_info.model_packages(),
        system=device_info.system(paths), duration=device_info.duration, settings=settings,
        settings_error=settings_error)


@bp.get("/history")
def history():
    paths = device_paths()
    try:
        page = int(request.args.get("page", "1"))
    except ValueError:
        page = 1
    # A page past the end (a hand-typed or stale link) shows the last one; the cap keeps the SQL
    # OFFSET within SQLite's integers whatever number is typed.
    page = min(max(1, page), device_info.MAX_PAGE)
    sessions, total = device_info.history(paths, page, PER_PAGE)
    pages = max(1, math.ceil(total / PER_PAGE))
    if page > pages:
        page = pages
        sessions, total = device_info.history(paths, page, PER_PAGE)
    return render_template("history.html", sessions=sessions, total=total, page=page, pages=pages)
