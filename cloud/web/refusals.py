"""How the portals show a refusal of the domain (cloud.domain.errors.DomainError) to a person.

A view that can say where the problem is catches the error and shows ``sentence(exc)`` beside the
field or in a flash, keeping what was typed; a refusal no view caught becomes the portals' error page
with the refusal's status and sentence (``refusal_page``, the answer cloud/errors.py gives outside
/api/). The API answers the same error as JSON, so a person and a client are told the same thing.
"""

from __future__ import annotations

from flask import Flask, render_template

from cloud.domain.errors import DomainError
from cloud.web.access import MESSAGES


def sentence(exc: DomainError) -> str:
    """A refusal as a sentence for a person: capitalised, ending in a full stop, and without the field
    prefix meant for API clients ("project_id: no such project" -> "No such project.")."""
    text = exc.message
    head, sep, rest = text.partition(": ")
    if sep and head.replace("_", "").replace(".", "").isalnum() and " " not in head:
        text = rest
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def refusal_page(exc: DomainError) -> tuple[str, int, dict[str, str]]:
    """The error page for a refusal no view caught: its status, a title for that status, its sentence."""
    title, _ = MESSAGES.get(exc.status, ("Could not do that", None))
    headers = {k: v for k, v in (exc.headers or {}).items() if k == "Retry-After"}
    page = render_template("error.html", code=exc.status, title=title, message=sentence(exc))
    return page, exc.status, headers


def init_app(app: Flask) -> None:
    app.extensions["voxfleet.refusal_page"] = refusal_page

