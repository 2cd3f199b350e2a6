"""The device page: name, language and time zone, saved through ``save_fields``."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from device.settings import SettingsError, load_settings, managed_settings
from device.web.auth import LANGUAGES, timezones
from device.web.context import device_paths
from device.web.saving import save_fields

bp = Blueprint("settings_page", __name__)
FIELDS = ("name", "lang", "timezone")


def _render(status: int = 200, error: str | None = None, form: dict | None = None):
    root = device_paths().root
    settings = load_settings(root)
    values = {name: getattr(settings, name) for name in FIELDS}
    values.update(form or {})
    return render_template("device.html", form=values, managed=set(managed_settings(root)[1]),
                           languages=LANGUAGES, timezones=timezones(), error=error), status


@bp.get("/device")
def device():
    return _render()


@bp.post("/device")
def save_device():
    # Only fields the form could change: a managed field's disabled input is not sent at all.
    fields = {name: request.form[name].strip() for name in FIELDS if name in request.form}
    try:
        if "lang" in fields and fields["lang"] not in LANGUAGES:
            raise SettingsError(f"unknown language '{fields['lang']}'; choose one from the list")
        note = save_fields(device_paths(), **fields)
    except SettingsError as exc:
        return _render(400, str(exc), fields)
    flash(note)
    return redirect(url_for("settings_page.device"))
