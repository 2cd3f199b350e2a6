"""``voxfleet cloud webhooks run``: the webhook delivery worker as its own process.

The web app (gunicorn ``cloud.wsgi:app``), ingest and billing only queue deliveries; this is what a
production cloud runs to send them (cloud/webhooks/deliver.py), as systemd's voxfleet-webhooks.service.
``serve`` runs the same worker as a thread. Several of them at once (``serve`` beside this, a second
copy, a second host) are safe: each delivery is claimed before it is sent, so no attempt goes out twice.

Heavy imports happen inside the command, as in every cloud/cli/ module.
"""

from __future__ import annotations

from pathlib import Path

import click

from cloud.cli.common import cloud_config, data_dir_option, db_session, info, safe


@click.group()
def webhooks() -> None:
    """Tenant webhooks: sending the queued deliveries."""


@webhooks.command("run")
@data_dir_option
@click.option("--once", is_flag=True, help="Send what is due now and exit (for cron), instead of looping.")
def run(data_dir: Path | None, once: bool) -> None:
    """Send queued webhook deliveries as they fall due, until SIGTERM or Ctrl-C (the attempt in hand is
    finished and recorded first)."""
    import logging
    import signal
    import threading

    from cloud.scoping import session_factory
    from cloud.webhooks.deliver import DeliveryWorker, allow_private_default, deliver_due

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = cloud_config(data_dir)
    probe = db_session(config)  # the database is reachable and migrated before anything runs
    sessions = session_factory(probe.get_bind())  # the app's role, so row-level security applies
    probe.close()
    private = allow_private_default(config)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if once:
            total = 0
            while not stop.is_set() and (made := deliver_due(sessions, allow_private=private,
                                                               stopping=stop.is_set)):
                total += made
            click.echo(f"{total} delivery attempt(s) made")
            return
        info(f"webhooks: sending due deliveries, database {safe(config.database_url)}"
             f"{', private addresses allowed' if private else ''}")
        worker = DeliveryWorker(sessions, allow_private=private).start()
        stop.wait()
        worker.request_stop()
        info("webhooks: stopping after the delivery in hand")
        worker.thread.join()
    finally:
        for sig, handler in previous.items():  # run in-process (tests), the caller's handlers come back
            signal.signal(sig, handler)
