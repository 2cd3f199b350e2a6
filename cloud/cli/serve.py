"""``voxfleet cloud serve`` and ``voxfleet cloud ingest``: the cloud's long-running processes."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cloud.cli.common import cloud_config, data_dir_option, db_session, fail, info, safe


@click.command()
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
    config = cloud_config(data_dir, http_port=http_port, http_host=http_host, mqtt_port=mqtt_port)
    try:
        running = start(config)
    except ServeError as exc:
        fail(str(exc))
    broker = (f"embedded broker on mqtt://{config.http_host}:{config.mqtt_port}" if running.broker
              else f"broker {safe(config.broker_url)}")
    info(f"VoxFleet cloud on {running.url} (API {running.url}/api/v1, database "
          f"{safe(config.database_url)}, {broker}{', ingest in-process' if running.ingest else ''})")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    info("stopping")
    running.stop()



@click.command()
@data_dir_option
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes on a shared subscription (Mosquitto/EMQX; the embedded broker: 1).")
@click.option("--name", help="Stable worker name in MQTT client ids (default: this host's name).")
def ingest(data_dir: Path | None, workers: int, name: str | None) -> None:
    """Store what devices send (events, presence, heartbeats, acks, results) until SIGTERM."""
    import logging

    from cloud.ingest import run_workers

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = cloud_config(data_dir)
    db_session(config).close()  # the database is reachable and migrated, before any worker starts
    if workers > 1 and config.embedded_broker:
        fail("the embedded broker has no shared subscriptions: run --workers 1, or set "
              "VOXFLEET_BROKER_URL to Mosquitto/EMQX for several workers", 2)
    info(f"ingest: {workers} worker(s), database {safe(config.database_url)}")
    sys.exit(run_workers(config, workers, name=name))
