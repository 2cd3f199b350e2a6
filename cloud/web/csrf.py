"""CSRF protection for every form: a per-session token, checked on every state-changing request.

Written here rather than taken from Flask-WTF because the portals use plain forms and pydantic for
validation; the whole of what is needed is a token in the session and a constant-time comparison.
The API (/api/v1, bearer keys, no cookies) is exempt: a browser cannot be tricked into sending a key.
"""

from __future__ import annotations

import hmac
import secrets

from flask import Flask, abort, request, session

SESSION_KEY = "csrf"
FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def token() -> str:
    if SESSION_KEY not in session:
        session[SESSION_KEY] = secrets.token_urlsafe(32)
    return session[SESSION_KEY]


def _check() -> None:
    if request.method in SAFE_METHODS or request.path.startswith("/api/") or request.path.startswith(
            "/static/"):
        return
    sent = request.form.get(FIELD) or request.headers.get(HEADER) or ""
    expected = session.get(SESSION_KEY) or ""
    if not expected or not hmac.compare_digest(sent, expected):
        abort(400, description="This form has expired or did not come from this site. Reload the page "
                               "and try again.")


def init_app(app: Flask) -> None:
    app.before_request(_check)
    app.jinja_env.globals["csrf_token"] = token
