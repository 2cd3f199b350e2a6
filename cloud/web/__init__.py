"""The portals: server-rendered pages (Jinja) for operators, tenant admins and tenant members.

Each portal is a blueprint in its own module, listed in ``WEB_MODULES``; every view declares who may
use it with ``cloud.web.access.allow`` (the route matrix test reads those declarations). Sign-in,
sessions and CSRF live in ``access``, ``csrf`` and ``signin``.
"""

from __future__ import annotations

import importlib

from flask import Flask

# Each module defines ``bp`` (a Blueprint); imported and registered in this order.
WEB_MODULES = ("signin", "account", "operator", "tenant", "member")


def register(app: Flask) -> None:
    from cloud.web import access, csrf, formats, refusals

    csrf.init_app(app)
    access.init_app(app)
    refusals.init_app(app)
    formats.init_app(app)
    for name in WEB_MODULES:
        try:
            module = importlib.import_module(f"cloud.web.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"cloud.web.{name}":
                raise
            continue  # a portal not built yet
        app.register_blueprint(module.bp)
