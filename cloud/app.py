"""The Flask app factory: ``create_app(config)`` builds one app from a CloudConfig.

Blueprints register themselves through small ``register(app)`` functions so each part of the
cloud (API, portals, ingest status) stays in its own module.
"""

from __future__ import annotations

from flask import Flask

from cloud.config import CloudConfig, load_config
from cloud.db import session as db_session
from cloud.errors import register_error_handlers
from cloud.scoping import session_factory

# Request bodies above this are refused with 413 before a view runs.
MAX_CONTENT_LENGTH = 1024 * 1024


def create_app(config: CloudConfig | None = None) -> Flask:
    config = config or load_config()
    app = Flask("cloud", instance_path=str(config.data_dir))
    app.config.update(
        SECRET_KEY=config.secret_key.get_secret_value(),
        MAX_CONTENT_LENGTH=MAX_CONTENT_LENGTH,
        JSON_SORT_KEYS=False,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    app.extensions["voxfleet.config"] = config
    if config.proxy_hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = config.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
    engine = db_session.make_engine(config.database_url, app_role=config.database_role or None)
    db_session.init_app(app, engine, session_factory(engine))
    register_error_handlers(app)

    from cloud import api, web

    api.register(app)
    web.register(app)
    return app


def current_config() -> CloudConfig:
    from flask import current_app

    return current_app.extensions["voxfleet.config"]
