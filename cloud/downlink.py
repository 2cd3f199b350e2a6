"""Cloud -> device: desired configs (retained, QoS 1) and commands (QoS 1), as the cloud's service account.

One long-lived MQTT connection per process (paho reconnects it). A publish counts only once the
broker's PUBACK came back: a command is marked ``sent`` after that and never before, so a broker
that is down leaves it ``pending`` and the retry loop (or the next call of ``retry_pending``) sends
it again. Resending is safe: the device recognises a command id it has seen and runs it once
(docs/protocol.md), and a retained desired config is a whole document with a version.

A command still unconfirmed 10 minutes after it was issued is given up (``error``): the device would
reject it as expired anyway. Desired configs whose publish was not confirmed are kept in memory and
re-published by the retry loop; after a restart of the process, the next PUT publishes again.

Every message is encoded for the device it goes to (``peer``, from what the device announced,
cloud/capabilities.py): a 0.1.0 device refuses a whole message over one field it does not know, so it
is sent only the fields 0.1.0 read.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from sqlalchemy import select, update

from cloud import capabilities
from cloud.broker.runtime import broker_url, service_client
from cloud.config import CloudConfig
from cloud.db import Command, DesiredConfig, Device
from cloud.db.base import utcnow
from cloud.scoping import PlatformScope
from protocol import messages
from protocol.topics import Channel, topic
from protocol.versions import LEGACY, Peer

log = logging.getLogger(__name__)

PUBACK_TIMEOUT_S = 5.0
RETRY_INTERVAL_S = 10.0
# Matches the device's own expiry (docs/protocol.md, "Commands").
COMMAND_EXPIRY = timedelta(minutes=10)
# A command younger than this is still being published by the request that made it.
RETRY_GRACE = timedelta(seconds=15)
EXTENSION_KEY = "voxfleet.downlink"


class Downlink:
    """The process's publisher for down channels. Thread-safe: paho serialises publishes itself."""

    def __init__(self, config: CloudConfig, *, timeout: float = PUBACK_TIMEOUT_S,
                 client_id: str | None = None) -> None:
        self.timeout = timeout
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._retry_thread: threading.Thread | None = None
        self._unconfirmed_configs: dict[str, tuple[uuid.UUID, uuid.UUID]] = {}
        self._lock = threading.Lock()
        client_id = client_id or f"voxfleet-cloud-downlink-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.client = service_client(config, client_id)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        url = urlparse(broker_url(config))
        port = url.port or (8883 if url.scheme == "mqtts" else 1883)
        # Asynchronous: a broker that is down at start-up is retried by paho's loop, not fatal.
        self.client.connect_async(url.hostname or "127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("downlink: the broker refused the service account: %s", reason)
            return
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("downlink: disconnected from the broker (%s); reconnecting", reason)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def _publish(self, topic_name: str, payload: bytes, retain: bool) -> bool:
        """True only once the broker acknowledged the message (PUBACK)."""
        if not self._connected.wait(self.timeout):
            return False
        info = self.client.publish(topic_name, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        try:
            info.wait_for_publish(self.timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def publish_config(self, device_key: str, version: int, config: dict[str, Any],
                       tenant_id: uuid.UUID | None = None, device_id: uuid.UUID | None = None,
                       peer: Peer = LEGACY) -> bool:
        message = messages.DesiredConfig(version=version, config=messages.VoiceConfig(**config))
        done = self._publish(topic(device_key, Channel.DESIRED_CONFIG), messages.encode(message, peer=peer),
                             retain=True)
        with self._lock:
            if done:
                self._unconfirmed_configs.pop(device_key, None)
            elif tenant_id is not None and device_id is not None:
                self._unconfirmed_configs[device_key] = (tenant_id, device_id)
        return done

    def send_command(self, device_key: str, command_id: uuid.UUID, action: str, args: dict[str, Any],
                     issued_at: datetime, peer: Peer = LEGACY) -> bool:
        message = messages.Command(command_id=command_id, action=action, args=args, issued_at=issued_at)
        return self._publish(topic(device_key, Channel.COMMANDS), messages.encode(message, peer=peer),
                             retain=False)

    def send(self, scope: Any, command: Command, device: Device) -> bool:
        """Publish ``command`` to ``device`` and, once acknowledged, mark it sent (in its own small
        transaction)."""
        if not self.send_command(device.device_key, command.command_id, command.action, command.args or {},
                                 command.created_at, peer=capabilities.of(device).peer):
            return False
        mark_sent(scope, command.id)
        return True

    # --- retries --------------------------------------------------------------------------------------

    def retry_pending(self, sessions: Callable[[], Any], grace: timedelta = RETRY_GRACE) -> int:
        """Send again what was not confirmed; returns how many went out now. ``grace``: leave younger
        commands alone (their own request is still waiting for the PUBACK)."""
        sent = 0
        with sessions() as db:
            platform = PlatformScope(db)
            now = utcnow()
            rows = platform.execute(
                select(Command, Device).join(Device, Device.id == Command.device_id)
                .where(Command.status == "pending", Command.created_at <= now - grace)
                .order_by(Command.created_at).limit(500)).all()
            for command, device in rows:
                if command.created_at <= now - COMMAND_EXPIRY:
                    platform.execute(update(Command)
                                     .where(Command.id == command.id, Command.status == "pending")
                                     .values(status="error", finished_at=now,
                                             detail="not delivered: the broker did not confirm it in time"))
                    platform.commit()
                    continue
                if self.send(platform, command, device):
                    sent += 1
            with self._lock:
                waiting = dict(self._unconfirmed_configs)
            for device_key, (_tenant_id, device_id) in waiting.items():
                latest = platform.scalar(select(DesiredConfig).where(DesiredConfig.device_id == device_id)
                                         .order_by(DesiredConfig.version.desc()).limit(1))
                device = platform.get(Device, device_id)
                if latest is not None and device is not None and self.publish_config(
                        device_key, latest.version, latest.config, peer=capabilities.of(device).peer):
                    sent += 1
        return sent

    def start_retry_loop(self, sessions: Callable[[], Any], interval: float = RETRY_INTERVAL_S) -> None:
        if self._retry_thread is not None:
            return

        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    self.retry_pending(sessions)
                except Exception:  # the loop must outlive one bad pass (database restarting, ...)
                    log.exception("downlink: retrying pending commands failed; will try again")

        self._retry_thread = threading.Thread(target=run, name="voxfleet-downlink-retry", daemon=True)
        self._retry_thread.start()

    def close(self) -> None:
        self._stop.set()
        self.client.disconnect()
        self.client.loop_stop()
        if self._retry_thread is not None:
            self._retry_thread.join(5)


def mark_sent(scope: Any, command_row_id: uuid.UUID) -> None:
    """pending -> sent, in ``scope`` (a TenantScope or PlatformScope); a result recorded meanwhile by
    ingest (ok/error) is left as it is."""
    scope.execute(update(Command).where(Command.id == command_row_id, Command.status == "pending")
                  .values(status="sent", sent_at=utcnow()))
    scope.commit()


_app_lock = threading.Lock()


def for_app(app: Any) -> Downlink:
    """The app's downlink, made on first use with its retry loop (one per process in production)."""
    with _app_lock:
        downlink = app.extensions.get(EXTENSION_KEY)
        if downlink is None:
            config = app.extensions["voxfleet.config"]
            timeout = float(app.config.get("DOWNLINK_PUBACK_TIMEOUT", PUBACK_TIMEOUT_S))
            downlink = Downlink(config, timeout=timeout)
            downlink.start_retry_loop(app.extensions["voxfleet.db"][1])
            app.extensions[EXTENSION_KEY] = downlink
        return downlink
