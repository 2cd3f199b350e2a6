"""``voxfleet cloud admin ...``: operators, tenants and API keys from a shell.

Results go to stdout (an API key alone on its line, so ``KEY=$(voxfleet cloud admin create-api-key ...)``
works); messages to stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cloud.cli.common import cloud_config, data_dir_option, db_session, fail, info


@click.group()
def admin() -> None:
    """Operators, tenants and API keys."""


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    first = click.prompt("Password", hide_input=True, default="", show_default=False)
    second = click.prompt("Repeat password", hide_input=True, default="", show_default=False)
    if first != second:
        fail("the two passwords do not match; nothing was created")
    return first


@admin.command("create-operator")
@data_dir_option
@click.option("--email", required=True, help="The operator's email: their login.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
def create_operator(data_dir: Path | None, email: str, password_stdin: bool) -> None:
    """Create a platform operator (role platform_admin). The password is asked for twice."""
    from cloud import admin as ops
    from cloud.security import WeakPassword, check_password_strength

    config = cloud_config(data_dir)
    try:
        email = ops.normalise_email(email)
    except ops.AdminError as exc:
        fail(str(exc), 2)
    password = _read_password(password_stdin)
    try:
        check_password_strength(password)
    except WeakPassword as exc:
        fail(f"{exc}; nothing was created")
    session = db_session(config)
    try:
        user = ops.create_operator(session, email, password)
    except ops.AdminError as exc:
        fail(str(exc))
    finally:
        session.close()
    info(f"operator {user.email} created")
    click.echo(str(user.id))


@admin.command("create-tenant")
@data_dir_option
@click.argument("name")
@click.option("--owner-email", required=True, help="The tenant owner's email; they get an invite link.")
@click.option("--slug", help="Short name in URLs and commands (default: from NAME).")
@click.option("--password-stdin", is_flag=True,
              help="Set the owner's password from the first line of stdin instead of making an invite link "
                   "(for scripted setups, where nobody follows a link).")
def create_tenant(data_dir: Path | None, name: str, owner_email: str, slug: str | None,
                  password_stdin: bool) -> None:
    """Create a tenant with its default project and its owner, and print the owner's invite link."""
    from cloud import admin as ops
    from cloud.security import INVITE_MAX_AGE_S, WeakPassword, check_password_strength

    config = cloud_config(data_dir)
    password = None
    if password_stdin:
        password = _read_password(True)
        try:
            check_password_strength(password)
        except WeakPassword as exc:
            fail(f"{exc}; nothing was created")
    session = db_session(config)
    try:
        made = ops.create_tenant(session, name, owner_email, config.secret_key.get_secret_value(), slug=slug,
                                 owner_password=password)
    except ops.AdminError as exc:
        fail(str(exc))
    finally:
        session.close()
    days = INVITE_MAX_AGE_S // 86400
    click.echo(f"tenant:  {made.tenant.name} (slug {made.tenant.slug}, id {made.tenant.id})")
    click.echo(f"project: {made.project.name} (id {made.project.id})")
    click.echo(f"owner:   {made.owner.email}")
    if made.invite_token is None:
        info(f"The owner signs in at {config.base_url}/login with the password given.")
        return
    click.echo(f"invite:  {config.base_url}/invite/{made.invite_token}")
    info(f"Send the invite link to the owner: it sets their password, works once, "
          f"and expires in {days} days.")


@admin.command("create-api-key")
@data_dir_option
@click.option("--tenant", "tenant_ref", required=True, help="Tenant slug, id or name.")
@click.option("--scope", type=click.Choice(["read", "write"]), required=True,
              help="read: GET only; write: everything the API offers the tenant.")
@click.option("--name", default="", help="A label to tell keys apart.")
def create_api_key(data_dir: Path | None, tenant_ref: str, scope: str, name: str) -> None:
    """Create an API key for a tenant. The key is printed once, alone on stdout; only its hash is kept."""
    from cloud import admin as ops

    config = cloud_config(data_dir)
    session = db_session(config)
    try:
        row, key = ops.create_api_key(session, tenant_ref, scope, name)
    except ops.AdminError as exc:
        fail(str(exc))
    finally:
        session.close()
    info(f"API key {row.prefix} ({scope}) for tenant {tenant_ref}. "
          "Store it now: it is shown only this once.")
    click.echo(key)


def _tenant_state(data_dir: Path | None, tenant_ref: str, suspend: bool, reason: str = "") -> None:
    from cloud import admin as ops
    from cloud.broker.admin import BrokerAdminError
    from cloud.broker.runtime import broker_admin
    from cloud.tenants import TenantStateError, reactivate_tenant, suspend_tenant

    config = cloud_config(data_dir)
    session = db_session(config)
    try:
        tenant = ops.find_tenant(session, tenant_ref)
        broker = broker_admin(config)
        try:
            if suspend:
                count = suspend_tenant(session, tenant.id, broker, "cli", reason=reason)
                info(f"{tenant.name} suspended: {count} device account(s) disabled and disconnected, "
                      "API keys and sign-ins refused")
            else:
                count = reactivate_tenant(session, tenant.id, broker, "cli")
                info(f"{tenant.name} reactivated: {count} device account(s) enabled")
        finally:
            broker.close()
    except (ops.AdminError, TenantStateError, BrokerAdminError) as exc:
        fail(str(exc))
    finally:
        session.close()


@admin.command("suspend-tenant")
@data_dir_option
@click.argument("tenant_ref")
@click.option("--reason", default="", help="Recorded in the audit log.")
def suspend_tenant_cmd(data_dir: Path | None, tenant_ref: str, reason: str) -> None:
    """Suspend a tenant (TENANT_REF: its slug, id or name): its devices are disconnected, its keys and
    people refused (audited)."""
    _tenant_state(data_dir, tenant_ref, True, reason)


@admin.command("reactivate-tenant")
@data_dir_option
@click.argument("tenant_ref")
def reactivate_tenant_cmd(data_dir: Path | None, tenant_ref: str) -> None:
    """Reactivate a suspended tenant (TENANT_REF: its slug, id or name): its devices may connect again
    without re-pairing."""
    _tenant_state(data_dir, tenant_ref, False)
