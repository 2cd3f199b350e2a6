"""``voxfleet cloud ...``: set up and run the cloud from a shell or a script.

Every command takes ``--data-dir`` (or $VOXFLEET_DATA_DIR): the folder that holds cloud.toml, the
secret key and, on embedded defaults, the SQLite database. Results go to stdout (an API key alone
on its line, so ``KEY=$(voxfleet cloud admin create-api-key ...)`` works); messages to stderr.
Heavy imports (SQLAlchemy, Flask) happen inside the commands so ``voxfleet --help`` stays quick.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import click

DATA_DIR_HELP = "Cloud data folder (cloud.toml, secret key, SQLite database). Default: var/cloud"


def data_dir_option(func: Any) -> Any:
    return click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                        envvar="VOXFLEET_DATA_DIR", help=DATA_DIR_HELP)(func)


def _fail(message: str, code: int = 1) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def _info(message: str) -> None:
    click.echo(message, err=True)


def _config(data_dir: Path | None, **overrides: Any):
    from cloud.config import ConfigError, load_config

    try:
        return load_config(data_dir, **overrides)
    except ConfigError as exc:
        _fail(str(exc), 2)


def _session(config: Any, *, migrated: bool = True):
    """A session as the app role, after checking the database is reachable and up to date."""
    from cloud.db.session import DatabaseError, check_connection, make_engine, session_factory
    from cloud.migrations import current_revision, head_revision

    try:
        owner = make_engine(config.database_url)
        try:
            check_connection(owner)
            if migrated and current_revision(owner) != head_revision():
                _fail(f"the database {_safe(config.database_url)} is not up to date: "
                      f"run `voxfleet cloud db upgrade --data-dir {config.data_dir}` first")
        finally:
            owner.dispose()
        engine = make_engine(config.database_url, app_role=config.database_role or None)
        check_connection(engine)
    except DatabaseError as exc:
        _fail(str(exc))
    return session_factory(engine)()


def _safe(url: str) -> str:
    from cloud.db.session import safe_url

    return safe_url(url)


@click.group()
def cloud() -> None:
    """The VoxFleet cloud: database, accounts, API."""


# --- db --------------------------------------------------------------------------------------------

@cloud.group()
def db() -> None:
    """The cloud's database."""


@db.command("upgrade")
@data_dir_option
@click.option("--revision", default="head", show_default=True, help="Migrate to this revision.")
def db_upgrade(data_dir: Path | None, revision: str) -> None:
    """Create or migrate the database to the latest schema (safe to run again)."""
    from cloud.db.session import DatabaseError, check_connection, make_engine
    from cloud.migrations import current_revision, upgrade

    config = _config(data_dir)
    try:
        engine = make_engine(config.database_url)
        check_connection(engine)
        before = current_revision(engine)
        upgrade(engine, revision)
        after = current_revision(engine)
        engine.dispose()
    except DatabaseError as exc:
        _fail(str(exc))
    where = _safe(config.database_url)
    if before == after:
        _info(f"database {where} already at revision {after}")
    else:
        _info(f"database {where} migrated from {before or 'empty'} to revision {after}")


# --- admin -----------------------------------------------------------------------------------------

@cloud.group()
def admin() -> None:
    """Operators, tenants and API keys."""


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    first = click.prompt("Password", hide_input=True, default="", show_default=False)
    second = click.prompt("Repeat password", hide_input=True, default="", show_default=False)
    if first != second:
        _fail("the two passwords do not match; nothing was created")
    return first


@admin.command("create-operator")
@data_dir_option
@click.option("--email", required=True, help="The operator's email: their login.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
def create_operator(data_dir: Path | None, email: str, password_stdin: bool) -> None:
    """Create a platform operator (role platform_admin). The password is asked for twice."""
    from cloud import admin as ops
    from cloud.security import WeakPassword, check_password_strength

    config = _config(data_dir)
    try:
        email = ops.normalise_email(email)
    except ops.AdminError as exc:
        _fail(str(exc), 2)
    password = _read_password(password_stdin)
    try:
        check_password_strength(password)
    except WeakPassword as exc:
        _fail(f"{exc}; nothing was created")
    session = _session(config)
    try:
        user = ops.create_operator(session, email, password)
    except ops.AdminError as exc:
        _fail(str(exc))
    finally:
        session.close()
    _info(f"operator {user.email} created")
    click.echo(str(user.id))


@admin.command("create-tenant")
@data_dir_option
@click.argument("name")
@click.option("--owner-email", required=True, help="The tenant owner's email; they get an invite link.")
@click.option("--slug", help="Short name in URLs and commands (default: from NAME).")
def create_tenant(data_dir: Path | None, name: str, owner_email: str, slug: str | None) -> None:
    """Create a tenant with its default project and its owner, and print the owner's invite link."""
    from cloud import admin as ops
    from cloud.security import INVITE_MAX_AGE_S

    config = _config(data_dir)
    session = _session(config)
    try:
        made = ops.create_tenant(session, name, owner_email, config.secret_key.get_secret_value(), slug=slug)
    except ops.AdminError as exc:
        _fail(str(exc))
    finally:
        session.close()
    days = INVITE_MAX_AGE_S // 86400
    click.echo(f"tenant:  {made.tenant.name} (slug {made.tenant.slug}, id {made.tenant.id})")
    click.echo(f"project: {made.project.name} (id {made.project.id})")
    click.echo(f"owner:   {made.owner.email}")
    click.echo(f"invite:  {config.base_url}/invite/{made.invite_token}")
    _info(f"Send the invite link to the owner: it sets their password, works once, "
          f"and expires in {days} days.")


@admin.command("create-api-key")
@data_dir_option
@click.option("--tenant", "tenant_ref", required=True, help="Tenant slug or id.")
@click.option("--scope", type=click.Choice(["read", "write"]), required=True,
              help="read: GET only; write: everything the API offers the tenant.")
@click.option("--name", default="", help="A label to tell keys apart.")
def create_api_key(data_dir: Path | None, tenant_ref: str, scope: str, name: str) -> None:
    """Create an API key for a tenant. The key is printed once, alone on stdout; only its hash is kept."""
    from cloud import admin as ops

    config = _config(data_dir)
    session = _session(config)
    try:
        row, key = ops.create_api_key(session, tenant_ref, scope, name)
    except ops.AdminError as exc:
        _fail(str(exc))
    finally:
        session.close()
    _info(f"API key {row.prefix} ({scope}) for tenant {tenant_ref}. "
          "Store it now: it is shown only this once.")
    click.echo(key)


def _tenant_state(data_dir: Path | None, tenant_ref: str, suspend: bool, reason: str = "") -> None:
    from cloud import admin as ops
    from cloud.broker.admin import BrokerAdminError
    from cloud.broker.runtime import broker_admin
    from cloud.tenants import TenantStateError, reactivate_tenant, suspend_tenant

    config = _config(data_dir)
    session = _session(config)
    try:
        tenant = ops.find_tenant(session, tenant_ref)
        broker = broker_admin(config)
        try:
            if suspend:
                count = suspend_tenant(session, tenant.id, broker, "cli", reason=reason)
                _info(f"{tenant.name} suspended: {count} device account(s) disabled and disconnected, "
                      "API keys and sign-ins refused")
            else:
                count = reactivate_tenant(session, tenant.id, broker, "cli")
                _info(f"{tenant.name} reactivated: {count} device account(s) enabled")
        finally:
            broker.close()
    except (ops.AdminError, TenantStateError, BrokerAdminError) as exc:
        _fail(str(exc))
    finally:
        session.close()


@admin.command("suspend-tenant")
@data_dir_option
@click.argument("tenant_ref")
@click.option("--reason", default="", help="Recorded in the audit log.")
def suspend_tenant_cmd(data_dir: Path | None, tenant_ref: str, reason: str) -> None:
    """Suspend a tenant: its devices are disconnected, its keys and people refused (audited)."""
    _tenant_state(data_dir, tenant_ref, True, reason)


@admin.command("reactivate-tenant")
@data_dir_option
@click.argument("tenant_ref")
def reactivate_tenant_cmd(data_dir: Path | None, tenant_ref: str) -> None:
    """Reactivate a suspended tenant: its devices may connect again without re-pairing."""
    _tenant_state(data_dir, tenant_ref, False)


# --- serve -----------------------------------------------------------------------------------------

@cloud.command()
@data_dir_option
@click.option("--http-port", type=int, help="HTTP port (default 8080).")
@click.option("--mqtt-port", type=int, help="Port of the embedded MQTT broker (default 1883).")
@click.option("--host", "http_host", help="Address to listen on (default 127.0.0.1).")
def serve(data_dir: Path | None, http_port: int | None, mqtt_port: int | None, http_host: str | None) -> None:
    """Run the cloud: web app and API, and on embedded defaults the broker and ingest, until Ctrl-C."""
    import logging
    import signal
    import threading

    from cloud.serve import ServeError, start

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = _config(data_dir, http_port=http_port, http_host=http_host, mqtt_port=mqtt_port)
    try:
        running = start(config)
    except ServeError as exc:
        _fail(str(exc))
    broker = (f"embedded broker on mqtt://{config.http_host}:{config.mqtt_port}" if running.broker
              else f"broker {_safe(config.broker_url)}")
    _info(f"VoxFleet cloud on {running.url} (API {running.url}/api/v1, database "
          f"{_safe(config.database_url)}, {broker}{', ingest in-process' if running.ingest else ''})")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    _info("stopping")
    running.stop()


# --- ingest ----------------------------------------------------------------------------------------

@cloud.command()
@data_dir_option
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes on a shared subscription (Mosquitto/EMQX; the embedded broker: 1).")
@click.option("--name", help="Stable worker name in MQTT client ids (default: this host's name).")
def ingest(data_dir: Path | None, workers: int, name: str | None) -> None:
    """Store what devices send (events, presence, heartbeats, acks, results) until SIGTERM."""
    import logging

    from cloud.ingest import run_workers

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = _config(data_dir)
    _session(config).close()  # the database is reachable and migrated, before any worker starts
    if workers > 1 and config.embedded_broker:
        _fail("the embedded broker has no shared subscriptions: run --workers 1, or set "
              "VOXFLEET_BROKER_URL to Mosquitto/EMQX for several workers", 2)
    _info(f"ingest: {workers} worker(s), database {_safe(config.database_url)}")
    sys.exit(run_workers(config, workers, name=name))


# `voxfleet cloud billing ...` lives beside the ledger it drives (cloud/billing/cli.py).
from cloud.billing.cli import billing  # noqa: E402  (after `cloud` exists: that module imports nothing from here)

cloud.add_command(billing)
