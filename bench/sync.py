"""Sync benchmark: outbox writes, draining a backlog to the real broker, bytes per session, agent at rest.

Each figure is printed beside a baseline measured in the same run on the same machine:

- outbox writes: ours (one durable transaction per voice session) against one durable transaction
  per event, the naive outbox;
- drain: ours (batches of up to 500 events, one QoS 1 batch in flight, deleted on PUBACK) against
  one QoS 1 message per event with paho's default in-flight window;
- bytes on the wire per voice session: one batch against one message per event;
- the agent at rest (paired, idle bus, heartbeat every 30 s): CPU and resident memory against a
  bare Python process holding one idle paho connection, the floor any Python MQTT client pays.

Needs Mosquitto on 127.0.0.1:1883 (scripts/test starts one). Writes bench/results/sync-<timestamp>.json.

    .venv/bin/python bench/sync.py [--backlog 100000] [--baseline-events 10000] [--rest-seconds 60]
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from uuid import uuid4

import paho.mqtt.client as mqtt
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from device.offline import force_offline  # noqa: E402
from device.paths import DevicePaths  # noqa: E402
from device.settings import DeviceSettings, save_settings  # noqa: E402
from device.stack.supervisor import SERVICES, Supervisor  # noqa: E402
from device.sync.events import session_events  # noqa: E402
from device.sync.link import LinkConfig, MqttLink, drain  # noqa: E402
from device.sync.store import Store  # noqa: E402
from device.voice.sessions import BusEvent, SessionBuilder  # noqa: E402
from protocol import messages  # noqa: E402
from protocol.topics import Channel, topic  # noqa: E402

force_offline()
BROKER = ("127.0.0.1", 1883)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def typical_session() -> list[dict]:
    """The events of one answered voice command, built by the real session builder."""
    t = time.time()
    ctx = {"session": {"session_id": "default"}}
    skill = "ovos-skill-date-time.openvoiceos"
    feed = [
        ("recognizer_loop:wakeword", {"key_phrase": "hey_jarvis"}, {}),
        ("recognizer_loop:record_begin", {}, {}),
        ("recognizer_loop:record_end", {}, {}),
        ("recognizer_loop:utterance", {"utterances": ["what time is it"]}, {}),
        (f"{skill}:what.time.is.it.intent", {"utterance": "what time is it"}, {"skill_id": skill}),
        ("speak", {"utterance": "It's twenty past three."}, {"skill_id": skill}),
        ("ovos.utterance.handled", {}, {"skill_id": skill}),
        ("recognizer_loop:audio_output_start", {}, {}), ("recognizer_loop:audio_output_end", {}, {}),
    ]
    builder = SessionBuilder()
    done = []
    for i, (kind, data, extra) in enumerate(feed):
        done += builder.feed(BusEvent(t + i * 0.3, kind, data, {**ctx, **extra}))
    (session,) = done
    return session_events(session, {"record_end_to_audio": 900.0})


def fresh(session: list[dict]) -> list[dict]:
    return [{**e, "event_id": str(uuid4())} for e in session]


# -- outbox writes -------------------------------------------------------------------------------------


def bench_writes(folder: Path, sessions: int) -> dict:
    session = typical_session()
    store = Store(folder / "writes.db", cap_bytes=2**40)
    start = time.perf_counter()
    for _ in range(sessions):
        store.append(fresh(session))
    ours = sessions * len(session) / (time.perf_counter() - start)
    store.close()

    conn = sqlite3.connect(folder / "naive.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE outbox(seq INTEGER PRIMARY KEY, event_id TEXT UNIQUE, payload TEXT)")
    start = time.perf_counter()
    for _ in range(sessions):
        for event in fresh(session):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO outbox(event_id, payload) VALUES(?, ?)",
                         [event["event_id"], json.dumps(event)])
            conn.execute("COMMIT")
    naive = sessions * len(session) / (time.perf_counter() - start)
    conn.close()
    return {"events_per_s": round(ours), "baseline_events_per_s": round(naive), "sessions": sessions,
            "events_per_session": len(session)}


# -- drain ---------------------------------------------------------------------------------------------


class Counter:
    """The cloud's side: counts events as they arrive on the real broker."""

    def __init__(self, device_id: str) -> None:
        self.events = 0
        self.messages = 0
        self.done = threading.Event()
        self.expect = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid4().hex[:8]}")
        ready = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(f"voxfleet/v1/devices/{device_id}/events", qos=1)
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = self._on_message
        self.client.connect(*BROKER)
        self.client.loop_start()
        ready.wait(5)

    def _on_message(self, client, userdata, message) -> None:
        self.messages += 1
        self.events += message.payload.count(b'"event_id"')
        if self.events >= self.expect:
            self.done.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def bench_drain(folder: Path, backlog: int, baseline_events: int) -> dict:
    session = typical_session()
    device_id = f"bench-{uuid4().hex[:8]}"
    store = Store(folder / "drain.db", cap_bytes=2**40)
    while store.depth() < backlog:
        store.append([e for _ in range(50) for e in fresh(session)])
    queued = store.depth()
    counter = Counter(device_id)
    counter.expect = queued
    link = MqttLink(LinkConfig(device_id=device_id, broker_url=f"mqtt://{BROKER[0]}:{BROKER[1]}"))
    link.start()
    cpu0 = psutil.Process().cpu_times()
    start = time.perf_counter()
    sent = drain(store, link)
    acked = time.perf_counter() - start
    counter.done.wait(60)
    cpu1 = psutil.Process().cpu_times()
    link.close()
    counter.close()
    received = counter.events
    assert sent == queued and store.depth() == 0, "the drain left events behind"
    assert received == queued, f"the subscriber got {received} of {queued} events"
    store.close()

    # Baseline: one QoS 1 message per event (paho's in-flight window), deleted as each is acknowledged.
    device_id = f"bench-{uuid4().hex[:8]}"
    counter = Counter(device_id)
    counter.expect = baseline_events
    link = MqttLink(LinkConfig(device_id=device_id, broker_url=f"mqtt://{BROKER[0]}:{BROKER[1]}"))
    link.start()
    payloads = [json.dumps({**e, "seq": i}).encode() for i, e in
                enumerate((e for _ in range(baseline_events // len(session) + 1) for e in fresh(session)), 1)]
    payloads = payloads[:baseline_events]
    start = time.perf_counter()
    infos = [link.publish(Channel.EVENTS, p) for p in payloads]
    for info in infos:
        info.wait_for_publish(30)
    baseline = baseline_events / (time.perf_counter() - start)
    link.close()
    counter.close()
    return {"backlog_events": queued, "events_per_s": round(queued / acked),
            "seconds": round(acked, 2), "received_by_subscriber": received,
            "drain_cpu_s": round((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system), 2),
            "baseline_events": baseline_events, "baseline_events_per_s": round(baseline)}


# -- bytes per session -------------------------------------------------------------------------------


def mqtt_publish_bytes(topic_name: str, payload: bytes, qos: int = 1) -> int:
    """Bytes of one PUBLISH packet: fixed header, topic, packet id (QoS > 0), payload; plus the PUBACK."""
    body = 2 + len(topic_name.encode()) + (2 if qos else 0) + len(payload)
    length_bytes = 1 if body < 128 else 2 if body < 16384 else 3
    return 1 + length_bytes + body + (4 if qos else 0)


def bench_bytes() -> dict:
    session = [{**e, "seq": i} for i, e in enumerate(fresh(typical_session()), 1)]
    name = topic("kitchen-0001", Channel.EVENTS)
    batch = messages.EventBatch.model_validate({"events": session})
    ours = mqtt_publish_bytes(name, messages.encode(batch))
    naive = sum(mqtt_publish_bytes(name, json.dumps(e, separators=(",", ":")).encode()) for e in session)
    return {"bytes_per_session": ours, "baseline_bytes_per_session": naive,
            "events_per_session": len(session)}


# -- the agent at rest -------------------------------------------------------------------------------


def sample(proc: psutil.Process, seconds: float) -> tuple[float, float]:
    """CPU as % of one core over ``seconds``, and resident MB at the end."""
    before = proc.cpu_times()
    time.sleep(seconds)
    after = proc.cpu_times()
    used = (after.user + after.system) - (before.user + before.system)
    return round(100 * used / seconds, 2), round(proc.memory_info().rss / 2**20, 1)


def bench_rest(folder: Path, seconds: float) -> dict:
    paths = DevicePaths.at(folder / "device").create()
    settings = DeviceSettings(bus_port=free_port(), timezone="UTC")
    save_settings(paths.root, settings)
    (paths.root / "cloud.json").write_text(json.dumps({"device_id": f"bench-{uuid4().hex[:8]}",
                                                      "broker_url": "mqtt://127.0.0.1:1883"}))
    stack = tuple(s for s in SERVICES if s.name in ("messagebus", "agent"))
    supervisor = Supervisor(paths, settings, services=stack)
    supervisor.start(timeout=120)
    baseline = subprocess.Popen([sys.executable, "-c", (
        "import time, paho.mqtt.client as m\n"
        "c = m.Client(m.CallbackAPIVersion.VERSION2); c.connect('127.0.0.1', 1883, 30); c.loop_start()\n"
        "time.sleep(86400)\n")])
    try:
        time.sleep(10)  # past start-up work: imports, the first heartbeat
        agent = psutil.Process(supervisor.services["agent"].process.pid)
        cpu, rss = sample(agent, seconds)
        base_cpu, base_rss = sample(psutil.Process(baseline.pid), min(seconds, 20))
    finally:
        baseline.kill()
        supervisor.stop()
    return {"agent_cpu_percent_of_core": cpu, "agent_rss_mb": rss, "seconds": seconds,
            "baseline_cpu_percent_of_core": base_cpu, "baseline_rss_mb": base_rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--baseline-events", type=int, default=10_000)
    parser.add_argument("--write-sessions", type=int, default=2000)
    parser.add_argument("--rest-seconds", type=float, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="voxfleet-bench-") as tmp:
        folder = Path(tmp)
        results = {
            "machine": {"cpu": platform.processor() or platform.machine(), "cores": psutil.cpu_count(),
                        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                        "python": platform.python_version()},
            "writes": bench_writes(folder, args.write_sessions),
            "drain": bench_drain(folder, args.backlog, args.baseline_events),
            "bytes": bench_bytes(),
            "rest": bench_rest(folder, args.rest_seconds),
        }
    w, d, b, r = results["writes"], results["drain"], results["bytes"], results["rest"]
    rows = [
        ("outbox writes (events/s)", w["events_per_s"], w["baseline_events_per_s"], "-"),
        (f"drain {d['backlog_events']:,} events (events/s)", d["events_per_s"], d["baseline_events_per_s"],
         ">= 2000"),
        ("bytes on the wire per session", b["bytes_per_session"], b["baseline_bytes_per_session"], "-"),
        ("agent at rest, CPU (% of a core)", r["agent_cpu_percent_of_core"],
         r["baseline_cpu_percent_of_core"], "< 1"),
        ("agent at rest, RSS (MB)", r["agent_rss_mb"], r["baseline_rss_mb"], "< 80"),
    ]
    print(f"{'measure':42} {'voxfleet':>12} {'baseline':>12}  target")
    for name, ours, base, target in rows:
        print(f"{name:42} {ours:>12} {base:>12}  {target}")
    out = ROOT / "bench" / "results" / f"sync-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
