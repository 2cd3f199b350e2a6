"""``voxfleet cloud billing ...``: the billing scheduler as its own process, and one-off billing runs.

``run`` is what production runs beside the web workers (``billing_in_serve = false`` then keeps
``serve`` from running the same passes; running both is harmless, only wasteful). ``close-periods``
closes, once, every period that has ended at ``--at`` (default: now; a future time is refused) into a
draft invoice. Both are
safe to run while another scheduler runs: every step is idempotent (cloud/billing/scheduler.py).

Heavy imports happen inside the commands, as in every cloud/cli/ module.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from cloud.cli.common import cloud_config, data_dir_option, db_session, fail


@click.group()
def billing() -> None:
    """The built-in billing ledger: periodic passes, closing periods."""


class _Moment(click.ParamType):
    """An ISO 8601 moment with a time zone (``2026-04-01T00:00:00Z``); a naive one is refused."""

    name = "ISO-TIME"

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time such as 2026-04-01T00:00:00Z", param, ctx)
        if moment.tzinfo is None:
            self.fail(f"{value!r} has no time zone: add Z or +00:00", param, ctx)
        return moment.astimezone(UTC)


def _scheduler(data_dir: Path | None):
    from cloud.billing.scheduler import scheduler_for

    config = cloud_config(data_dir)
    db_session(config).close()  # the database is reachable and migrated before anything runs
    return config, scheduler_for(config)


@billing.command("run")
@data_dir_option
@click.option("--once", is_flag=True, help="Run one pass and exit (for cron), instead of looping.")
def run(data_dir: Path | None, once: bool) -> None:
    """Run the billing scheduler: a pass every billing_interval_s seconds, until SIGTERM or Ctrl-C."""
    import logging
    import signal
    import threading

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config, scheduler = _scheduler(data_dir)
    if once:
        report = scheduler.run_once()
        click.echo(f"thresholds checked for {len(report.checked)} tenant(s); {len(report.closed)} period(s) "
                   f"closed; {len(report.recomputed)} draft(s) recomputed; {len(report.finalized)} "
                   f"invoice(s) finalized; lago: {report.lago or 'not configured'}")
        raise SystemExit(1 if report.failures else 0)
    click.echo(f"billing: a pass every {config.billing_interval_s} s, drafts finalized "
               f"{config.invoice_grace_hours} h after their period ends", err=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    scheduler.start()
    stop.wait()
    scheduler.stop()


@billing.command("close-periods")
@data_dir_option
@click.option("--at", "at", type=_Moment(), help="Close what had ended by this past time (ISO 8601, with a "
              "time zone). Default: now; a future time is refused.")
def close_periods(data_dir: Path | None, at: datetime | None) -> None:
    """Close every ended period of every subscription into a draft invoice (safe to repeat)."""
    from cloud.billing.scheduler import close_due
    from cloud.db.base import utcnow

    now = utcnow()
    if at is not None and at > now:
        # Closing a period early applies its scheduled plan change or cancellation at once, and can close
        # months that have not begun: a future --at would bill periods ahead of time.
        raise click.UsageError(f"--at {at.isoformat()} is in the future: only periods that have ended "
                               "can be closed (leave --at out to close as of now)")
    _config_unused, scheduler = _scheduler(data_dir)
    moment = at or now
    closed, failures = close_due(scheduler.sessions, moment)
    for tenant_id, label in closed:
        click.echo(f"{tenant_id} {label} draft")
    click.echo(f"{len(closed)} period(s) closed as of {moment.isoformat()}", err=True)
    if failures:
        click.secho(f"error: {failures} tenant(s) could not be closed; see the log above", fg="red", err=True)
        raise SystemExit(1)


@billing.command("lago-sync")
@data_dir_option
def lago_sync(data_dir: Path | None) -> None:
    """Push customers, subscriptions and queued usage to Lago once (safe to repeat; the scheduler does
    the same every pass). Exits 1 when Lago was unavailable, refused the key, or refused events."""
    import logging

    from cloud.billing.lago import sync_once
    from cloud.scoping import session_factory

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = cloud_config(data_dir)
    if not config.lago_configured:
        fail("Lago is not configured: set lago_api_url and lago_api_key in cloud.toml "
              "(or $VOXFLEET_LAGO_API_URL and $VOXFLEET_LAGO_API_KEY)", 2)
    probe = db_session(config)  # the database is reachable and migrated
    engine = probe.get_bind()
    probe.close()
    report = sync_once(config=config, sessions=session_factory(engine))
    click.echo(f"lago: {report}")
    for failure in report.failures:
        click.secho(f"error: {failure}", fg="red", err=True)
    if report.rejected:
        click.secho(f"error: Lago rejected {report.rejected} event(s); they are kept with Lago's reason",
                    fg="red", err=True)
    raise SystemExit(0 if report.ok else 1)
