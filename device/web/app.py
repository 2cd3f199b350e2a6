"""The setup web's Flask app: one factory, the device's data folder in its config, every blueprint.

``create_app`` is what ``voxfleet device setup-web`` serves and what the tests drive; pages reach
the data folder through ``device_paths()`` and change settings only through ``save_fields``.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Flask, render_template, session

from device.paths import DevicePaths
from device.settings import SettingsError, load_settings
from device.web import auth, cloud, credentials, lan, network, settings_page, status, voice, voice_checks
from device.web.context import device_paths
from device.web.saving import save_fields

__all__ = ["create_app", "device_paths", "save_fields"]

IDLE_SECONDS = 15 * 60
# A whole request: the largest recording voice_checks accepts plus room for the form's other fields
# and the multipart framing. Larger requests are refused (413) before the form is parsed, and waitress
# refuses bodies past this plus its own slack before buffering them (device/web/serve.py).
MAX_UPLOAD_BYTES = voice_checks.MAX_UPLOAD_BYTES + 64 * 1024


def create_app(paths: DevicePaths, *, idle_seconds: float = IDLE_SECONDS) -> Flask:
    """The setup web for the device whose data folder is ``paths``."""
    paths.root.mkdir(parents=True, exist_ok=True)
    app = Flask(__name__)
    app.config.update(
        DEVICE_PATHS=paths,
        SECRET_KEY=credentials.secret_key(paths.root),
        SETUP_IDLE_SECONDS=idle_seconds,
        SESSION_COOKIE_NAME="voxfleet_setup",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session, which has its own idle expiry
        MAX_CONTENT_LENGTH=MAX_UPLOAD_BYTES,
    )
    lan.init_app(app)
    auth.init_app(app)
    for module in (auth, status, settings_page, network, cloud, voice):
        app.register_blueprint(module.bp)
    cloud.init_app(app)
    _template_helpers(app)

    @app.errorhandler(SettingsError)
    def _unreadable_settings(exc: SettingsError):
        # settings.json was broken by hand: say which field and why instead of a bare server error.
        return render_template("error.html", title="The device settings cannot be read",
                               message=f"{exc}. Fix or delete settings.json in {paths.root}."), 500
    app.add_url_rule("/", endpoint="index", view_func=lambda: status.index())
    return app


def _device_settings():
    try:
        return load_settings(device_paths().root)
    except SettingsError:
        return None


def _template_helpers(app: Flask) -> None:
    def device_name() -> str:
        settings = _device_settings()
        return settings.name if settings else ""

    def signed_in() -> bool:
        return "auth" in session and credentials.has_password(device_paths().root)

    def when(epoch: float | None) -> str:
        """A moment in the device's own time zone: what a person standing next to it expects."""
        if not epoch:
            return "–"
        settings = _device_settings()
        zone = ZoneInfo(settings.timezone) if settings else None
        return datetime.fromtimestamp(float(epoch), zone).strftime("%Y-%m-%d %H:%M:%S %Z")

    app.jinja_env.globals.update(device_name=device_name, signed_in=signed_in)
    app.jinja_env.filters["when"] = when
