"""``voxfleet cloud serve``: everything the cloud needs, in one process, for a laptop or a small site.

On embedded defaults this starts, in order: the database (SQLite, migrated), the embedded MQTT
broker with the cloud's service account, one ingest worker thread, the webhook delivery thread,
the billing scheduler thread (unless ``billing_in_serve`` is off: production may run
``voxfleet cloud billing run`` on its own instead) and the web app on Flask's threaded server.
With ``broker_url`` set (Mosquitto/EMQX), ingest runs as its own processes (``voxfleet cloud ingest
--workers N``) and serve runs only the web app, webhook deliveries and billing; with PostgreSQL,
migrations are an explicit step (``voxfleet cloud db upgrade``)
so that several web workers never race to migrate. Production serves the same app with gunicorn:
``gunicorn 'cloud.wsgi:app'`` (see cloud/wsgi.py), and sends webhooks with ``voxfleet cloud webhooks
run``, the same worker as serve's thread in a process of its own. serve keeps its thread even then:
deliveries are claimed before they are sent, so the two never send one twice.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import make_server

from cloud.app import create_app
from cloud.config import CloudConfig

log = logging.getLogger(__name__)


class ServeError(RuntimeError):
    """The cloud cannot start; the message names the part and the remedy."""


@dataclass
class Running:
    """The parts ``serve`` started, stopped in reverse order."""

    config: CloudConfig
    app: Any = None
    broker: Any = None
    ingest: Any = None
    delivery: Any = None
    billing: Any = None
    http: Any = None
    threads: list[threading.Thread] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.config.http_host}:{self.http.server_port}" if self.http else ""

    def stop(self) -> None:
        for name, part in (("web", self.http), ("billing", self.billing), ("deliveries", self.delivery),
                           ("ingest", self.ingest), ("broker", self.broker)):
            if part is None:
                continue
            try:
                part.shutdown() if name == "web" else part.stop()
            except Exception:  # stopping must reach every part
                log.exception("stopping %s failed", name)
        for thread in self.threads:
            thread.join(timeout=10)


def prepare_database(config: CloudConfig) -> None:
    from cloud.db.session import DatabaseError, check_connection, make_engine
    from cloud.migrations import current_revision, head_revision, upgrade

    try:
        engine = make_engine(config.database_url)
        check_connection(engine)
        if config.database_url.startswith("sqlite"):
            upgrade(engine)
        elif current_revision(engine) != head_revision():
            raise ServeError("the database schema is not up to date: run `voxfleet cloud db upgrade` first")
        engine.dispose()
    except DatabaseError as exc:
        raise ServeError(str(exc)) from None


def start_broker(config: CloudConfig):
    """The embedded broker (on ``mqtt_port``) with the cloud's service account in its store."""
    from cloud.broker.embedded import EmbeddedBroker, EmbeddedBrokerError
    from cloud.broker.runtime import service_account

    broker = EmbeddedBroker(config.data_dir, host=config.http_host, port=config.mqtt_port)
    account = service_account(config)
    admin = broker.admin()
    admin.ensure_service_account(account.username, account.password)
    try:
        broker.start()
    except EmbeddedBrokerError as exc:
        raise ServeError(f"{exc}; choose another with --mqtt-port") from None
    return broker


def ensure_service_account(config: CloudConfig) -> None:
    """On Mosquitto: the cloud's own account, made (or its password updated) through Dynamic Security."""
    from cloud.broker.admin import BrokerAdminError
    from cloud.broker.runtime import broker_admin, service_account

    account = service_account(config)
    try:
        admin = broker_admin(config)
        try:
            admin.ensure_service_account(account.username, account.password)
        finally:
            admin.close()
    except BrokerAdminError as exc:
        raise ServeError(f"cannot set up the cloud's broker account: {exc}") from None


def start(config: CloudConfig, *, ingest: bool | None = None) -> Running:
    """Start every part; on failure, stop what already started and raise ServeError."""
    from cloud.billing.scheduler import start_billing_thread
    from cloud.ingest.runner import start_ingest_thread
    from cloud.webhooks.deliver import start_delivery_thread

    running = Running(config)
    try:
        prepare_database(config)
        if config.embedded_broker:
            running.broker = start_broker(config)
        elif config.broker_admin_password is not None:
            ensure_service_account(config)
        running.app = create_app(config)
        if running.broker is not None:
            running.app.extensions["voxfleet.broker"] = running.broker
        sessions = running.app.extensions["voxfleet.db"][1]  # share the app's engine
        if ingest if ingest is not None else config.embedded_broker:
            running.ingest = start_ingest_thread(config, sessions=sessions)
        running.delivery = start_delivery_thread(config)
        if config.billing_in_serve:
            running.billing = start_billing_thread(config)
        try:
            running.http = make_server(config.http_host, config.http_port, running.app, threaded=True)
        except OSError as exc:
            raise ServeError(f"cannot listen on {config.http_host}:{config.http_port} ({exc.strerror}); "
                             f"choose another with --http-port") from None
        thread = threading.Thread(target=running.http.serve_forever, name="http", daemon=True)
        thread.start()
        running.threads.append(thread)
    except BaseException:
        running.stop()
        raise
    return running
