"""A Mosquitto of the test's own, on a free port, that a test may stop and start again (fault tests).

It keeps its state on disk (``persistence``), as a production broker does, so a subscriber's
persistent session and its queued messages survive the broker's restart.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from uuid import uuid4

import paho.mqtt.client as mqtt

from tests.conftest import free_port


class OwnedMosquitto:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {folder}/\nautosave_interval 1\n"
                             f"log_dest file {folder}/mosquitto.log\n")
        self.process: subprocess.Popen | None = None

    def start(self) -> OwnedMosquitto:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen([binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not open port {self.port}: {(self.folder / 'mosquitto.log')}")

    def stop(self) -> None:
        """A clean stop (SIGTERM): Mosquitto writes its persistence file, as on a service restart."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(10)
        self.process = None


class PersistentSubscriber:
    """Subscribes with a persistent session: what is published while it is away waits for it."""

    def __init__(self, port: int, filter_: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"cloud-{uuid4().hex[:8]}",
                                  clean_session=False)
        self.client.on_connect = lambda c, *_: c.subscribe(filter_, qos=1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1.0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(5)

    def _on_message(self, client, userdata, message) -> None:
        with self.lock:
            self.messages.append((message.topic, message.payload))

    def payloads(self, suffix: str) -> list[bytes]:
        with self.lock:
            return [p for t, p in self.messages if t.endswith(suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
