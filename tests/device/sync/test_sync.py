"""`voxfleet device sync --once` against the real Mosquitto on this machine (scripts/test starts
one if none listens on 1883): every queued event arrives once, in order, and leaves the outbox only
after the broker acknowledged it."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from uuid import uuid4

import paho.mqtt.client as mqtt

from device.sync.store import Store
from protocol import messages
from protocol.topics import Channel, topic
from tests.conftest import VOXFLEET, free_port

BROKER = "mqtt://127.0.0.1:1883"


class Subscriber:
    def __init__(self, filter_: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid4().hex[:8]}")
        self.client.on_connect = lambda c, *_: c.subscribe(filter_, qos=1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload, m.retain))
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()
        assert self.ready.wait(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def paired_device(tmp_path, device_id, broker=BROKER):
    data = tmp_path / device_id
    data.mkdir()
    (data / "cloud.json").write_text(json.dumps({"device_id": device_id, "broker_url": broker,
                                                 "cloud": "http://127.0.0.1:5000"}))
    return data


def queue(data, count):
    store = Store(data / "store.db")
    for start in range(0, count, 100):
        store.append([{"event_id": str(uuid4()), "type": "wake_word", "ts": "2026-11-26T12:00:00+00:00",
                       "wake_word": "hey_jarvis"} for _ in range(min(100, count - start))])
    store.close()


def test_sync_once_delivers_everything_in_order(tmp_path):
    device_id = f"dev-{uuid4().hex[:8]}"
    data = paired_device(tmp_path, device_id)
    queue(data, 1234)
    sub = Subscriber(f"voxfleet/v1/devices/{device_id}/#")
    try:
        out = subprocess.run([VOXFLEET, "device", "sync", "--data-dir", str(data), "--once"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        deadline = time.time() + 10
        while time.time() < deadline and sum(1 for t, *_ in sub.messages if t.endswith("/events")) < 3:
            time.sleep(0.05)
    finally:
        sub.close()
    batches = [messages.decode(p) for t, p, _ in sub.messages if t == topic(device_id, Channel.EVENTS)]
    events = [e for b in batches for e in b.events]
    assert [e.seq for e in events] == list(range(1, 1235))
    assert len({e.event_id for e in events}) == 1234
    assert Store(data / "store.db").depth() == 0
    presence = [messages.decode(p).state for t, p, _ in sub.messages
                if t == topic(device_id, Channel.PRESENCE)]
    assert presence[0] == "online" and presence[-1] == "offline"  # clean shutdown says so


def test_unreachable_broker_fails_and_keeps_the_outbox(tmp_path):
    data = paired_device(tmp_path, "dev-offline", broker=f"mqtt://127.0.0.1:{free_port()}")
    queue(data, 10)
    out = subprocess.run([VOXFLEET, "device", "sync", "--data-dir", str(data), "--once", "--timeout", "3"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "could not connect to the broker" in out.stderr and "10 events stay queued" in out.stderr
    assert Store(data / "store.db").depth() == 10


def test_unpaired_device_says_so(tmp_path):
    out = subprocess.run([VOXFLEET, "device", "sync", "--data-dir", str(tmp_path), "--once"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "not paired" in out.stderr
