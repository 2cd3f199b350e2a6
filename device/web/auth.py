"""Who may use the setup web: first boot, sign-in, idle expiry, sign-out, password change.

Every page is guarded by one ``before_request`` hook (``init_app``), not by a decorator on each
view: a blueprint added later (the voice pages) is protected without remembering anything. The only
open endpoints are ``static``, the sign-in page and, while no password exists, the first boot page.

- There is no default password: until one is chosen every page leads to ``/first-boot``.
- Sessions are signed cookies (HttpOnly, SameSite=Strict) that end after ``SETUP_IDLE_SECONDS``
  without a request ("your session expired") and when the password changes (they carry its stamp).
- Wrong passwords are throttled per client address (device.web.throttle), at sign-in and for the
  current password on the password page alike: otherwise that page would be an unthrottled oracle.
- First boot creates the password under a lock, only if none exists, before anything that may wait
  (the settings save can wait minutes for restarts): a second first-boot form cannot replace it.
- CSRF: Flask-WTF's CSRFProtect checks every POST; templates put ``{{ csrf_field() }}`` in each form.
"""

from __future__ import annotations

import threading
import time
from functools import wraps
from urllib.parse import urlparse
from zoneinfo import available_timezones

from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFError, CSRFProtect, generate_csrf
from markupsafe import Markup

from device.settings import DeviceSettings, SettingsError, load_settings, managed_settings
from device.web import credentials
from device.web.context import device_paths
from device.web.throttle import LoginThrottle

bp = Blueprint("auth", __name__)
csrf = CSRFProtect()
OPEN_ENDPOINTS = {"static", "auth.sign_in"}
_FIRST_BOOT_LOCK = threading.Lock()
LANGUAGES = {"en-US": "English (US)", "en-GB": "English (UK)", "de-DE": "Deutsch", "fr-FR": "Français",
             "es-ES": "Español", "it-IT": "Italiano", "nl-NL": "Nederlands", "pt-PT": "Português"}


def timezones() -> list[str]:
    """IANA zone names a person picks from (not tzdata's aliases for its own files)."""
    return sorted(z for z in available_timezones() if z not in ("localtime", "posixrules", "Factory"))


def csrf_field() -> Markup:
    """The hidden CSRF input every form carries (a Jinja global)."""
    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(generate_csrf())


def _data_dir():
    return device_paths().root


def _throttle() -> LoginThrottle:
    return current_app.extensions["voxfleet_throttle"]


def _wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json" or request.headers.get(
        "Sec-Fetch-Mode", "navigate") not in ("navigate", "nested-navigate")


def _to_sign_in(message: str | None):
    if message:
        flash(message, "error")
    if _wants_json():
        return jsonify(error=message or "sign in first"), 401
    target = request.full_path if request.method == "GET" else None
    return redirect(url_for("auth.sign_in", next=target.rstrip("?") if target else None))


def _guard():
    endpoint = request.endpoint or ""
    if endpoint in OPEN_ENDPOINTS:
        return None
    data_dir = _data_dir()
    if not credentials.has_password(data_dir):
        return None if endpoint == "auth.first_boot" else redirect(url_for("auth.first_boot"))
    if endpoint == "auth.first_boot":
        return redirect(url_for("auth.sign_in"))
    if "auth" not in session:
        # Not signed in: keep the session as it is, so the sign-in form's CSRF token survives the
        # browser's own requests (favicon, prefetch) made between showing the form and posting it.
        return _to_sign_in(None)
    if session["auth"] != credentials.password_stamp(data_dir):
        session.clear()
        return _to_sign_in("You were signed out because the password changed.")
    now = time.time()
    if now - float(session.get("seen", 0)) > current_app.config["SETUP_IDLE_SECONDS"]:
        session.clear()
        return _to_sign_in("Your session expired; sign in again.")
    session["seen"] = now
    return None


def login_required(view):
    """For views outside this app's guard (there are none today): the same check as ``_guard``."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        return _guard() or view(*args, **kwargs)
    return wrapper


def _start_session() -> None:
    session.clear()  # a fresh session (and CSRF token) on sign-in: no session fixation
    session["auth"] = credentials.password_stamp(_data_dir())
    session["seen"] = time.time()


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and not urlparse(target).netloc:
        return target
    return url_for("status.status")


@bp.route("/first-boot", methods=["GET", "POST"])
def first_boot():
    data_dir = _data_dir()
    settings = load_settings(data_dir)
    managed = set(managed_settings(data_dir)[1])
    zones = timezones()
    form = {"name": settings.name, "lang": settings.lang, "timezone": settings.timezone}
    if request.method == "GET":
        return render_template("first_boot.html", form=form, languages=LANGUAGES, timezones=zones,
                               managed=managed, min_length=credentials.MIN_PASSWORD_LENGTH)
    form.update({k: request.form.get(k, "").strip() for k in form if k not in managed})
    try:
        credentials.check_new_password(request.form.get("password", ""), request.form.get("repeat", ""))
        fields = {k: form[k] for k in ("name", "lang", "timezone") if k not in managed}
        if "lang" in fields and fields["lang"] not in LANGUAGES:
            raise SettingsError(f"unknown language '{fields['lang']}'")
        DeviceSettings(**{**load_settings(data_dir).model_dump(), **fields})  # all checked before any write
    except (credentials.PasswordError, SettingsError, ValueError) as exc:
        return render_template("first_boot.html", form=form, languages=LANGUAGES, timezones=zones,
                               managed=managed, min_length=credentials.MIN_PASSWORD_LENGTH,
                               error=_one_line(exc)), 400
    from device.web.saving import save_fields

    # The guard let this request in while no password existed; another first-boot post may have
    # set one since. Check again and create it as one step, before the save (which may wait for
    # restarts), so the first owner's password stands and a second form changes nothing.
    with _FIRST_BOOT_LOCK:
        created = (not credentials.has_password(data_dir)
                   and credentials.create_password(data_dir, request.form["password"]))
    if not created:
        flash("This device was set up a moment ago from another browser; nothing was changed. "
              "Sign in with the password chosen there.", "error")
        return redirect(url_for("auth.sign_in"))
    _start_session()
    try:
        note = save_fields(device_paths(), **fields)
    except (SettingsError, ValueError) as exc:  # e.g. the cloud took over a field meanwhile
        flash(f"The password is set, but the device settings were not saved: {_one_line(exc)}", "error")
        return redirect(url_for("settings_page.device"))
    flash(f"The device is set up. {note.removeprefix('Saved. ').removeprefix('Saved.')}".strip())
    return redirect(url_for("status.status"))


def _one_line(exc: Exception) -> str:
    text = str(exc)
    if hasattr(exc, "errors"):  # pydantic: the first message, without its URL footer
        errors = exc.errors()
        if errors:
            return f"{'.'.join(str(p) for p in errors[0]['loc'])}: {errors[0]['msg']}"
    return text


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    data_dir = _data_dir()
    if not credentials.has_password(data_dir):
        return redirect(url_for("auth.first_boot"))
    target = request.values.get("next")
    if request.method == "GET":
        return render_template("sign_in.html", next=target)
    address = request.remote_addr or "?"
    wait = _throttle().wait_left(address)
    if wait:
        return render_template("sign_in.html", next=target,
                               error=f"Too many wrong passwords. Try again in {wait} s."), 429
    if not credentials.verify_password(data_dir, request.form.get("password", "")):
        wait = _throttle().failed(address)
        error = (f"Wrong password. Too many wrong passwords: try again in {wait} s." if wait
                 else "Wrong password.")
        return render_template("sign_in.html", next=target, error=error), 429 if wait else 401
    _throttle().succeeded(address)
    _start_session()
    return redirect(_safe_next(target))


@bp.post("/sign-out")
def sign_out():
    session.clear()
    flash("You are signed out.")
    return redirect(url_for("auth.sign_in"))


@bp.route("/password", methods=["GET", "POST"])
def change_password():
    if request.method == "GET":
        return render_template("password.html", min_length=credentials.MIN_PASSWORD_LENGTH)
    data_dir = _data_dir()
    address = request.remote_addr or "?"
    wait = _throttle().wait_left(address)
    if wait:
        return render_template("password.html", min_length=credentials.MIN_PASSWORD_LENGTH,
                               error=f"Too many wrong passwords. Try again in {wait} s; nothing was "
                                     "changed."), 429
    if not credentials.verify_password(data_dir, request.form.get("current", "")):
        wait = _throttle().failed(address)
        error = "The current password is wrong; nothing was changed."
        if wait:
            error += f" Too many wrong passwords: try again in {wait} s."
        return render_template("password.html", min_length=credentials.MIN_PASSWORD_LENGTH,
                               error=error), 429 if wait else 400
    _throttle().succeeded(address)
    try:
        credentials.check_new_password(request.form.get("password", ""), request.form.get("repeat", ""))
    except credentials.PasswordError as exc:
        return render_template("password.html", min_length=credentials.MIN_PASSWORD_LENGTH,
                               error=str(exc)), 400
    credentials.set_password(data_dir, request.form["password"])
    _start_session()  # this browser stays signed in; every other session ends
    flash("Password changed. Other browsers signed in to this device are signed out.")
    return redirect(url_for("status.status"))


def init_app(app: Flask) -> None:
    app.extensions["voxfleet_throttle"] = LoginThrottle()
    csrf.init_app(app)
    app.jinja_env.globals["csrf_field"] = csrf_field
    app.before_request(_guard)

    @app.errorhandler(CSRFError)
    def _csrf_refused(exc: CSRFError):
        message = ("This form is out of date or did not come from this device's page (" + exc.description
                   + "). Reload the page and try again; nothing was changed.")
        if _wants_json():
            return jsonify(error=message), 400
        return render_template("error.html", title="Form refused", message=message), 400
