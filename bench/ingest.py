"""Ingest benchmark: simulated devices -> test-owned Mosquitto (Dynamic Security) -> PostgreSQL.

For 1, 2 and 4 ingest workers (``voxfleet cloud ingest --workers K``, real processes on a shared
subscription) and, in the same run, the bare path: one subscriber process that json-decodes each
batch and INSERTs its events into a plain table (no validation, no dedupe, no sessions, no scoping),
one executemany and one commit per MQTT message, acknowledged after that commit (paho acknowledges
a QoS 1 message when its callback returns). Per message, not per batch of messages: that is what a
minimal subscriber does, and gathering messages into one transaction is part of what ingest does
to be fast, so it belongs to the measured difference. Each round has its own devices, each a real
paho client with its own dynsec account, publishing batches of ``--batch`` events with one batch in
flight (as device/sync/link.py's drain does); both paths get the same devices count, events and batches.
Every event carries its publish time as ``ts``.

Figures: events stored per second = events / (the moment a poll, every ``POLL_S``, first sees all
of them committed - first publish), the same for both paths. Delay = ``received_at`` - ``ts``, p50,
p99 and max; ``received_at`` is the database's clock at the insert on the bare path, and the
moment the worker starts the cycle's transaction on ingest (its commit follows within the cycle).
With ``--rate 0`` devices publish as fast as the broker acknowledges (it queues for the
subscriber), so the whole round is one backlog and the delay is mostly the backlog's queueing: it
measures capacity, not latency. ``--rate R`` offers R events/s in total, spread over the devices:
below capacity, its delay is the latency of one batch through the broker and ingest.

Needs PostgreSQL on 127.0.0.1:5432 (trust) and the mosquitto program. Writes
bench/results/ingest-<timestamp>.json.

    .venv/bin/python bench/ingest.py [--devices 16] [--events 3000] [--batch 100] [--workers 1,2,4]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cloud.broker.dynsec import DynsecAdmin  # noqa: E402
from cloud.broker.mosquitto import MosquittoProcess  # noqa: E402
from cloud.migrations import upgrade  # noqa: E402
from protocol.ids import new_event_id  # noqa: E402
from protocol.topics import Channel, topic, upstream_filter  # noqa: E402
from tests.cloud.ingest_rig import Rig, cloud_config  # noqa: E402

ADMIN, ADMIN_PASSWORD = "bench-admin", f"pw-{uuid.uuid4().hex}"
PG_ADMIN = os.environ.get("VOXFLEET_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
POLL_S = 0.02  # how often a round's end is looked for (its resolution)
TYPES = ("session.started", "wake_word", "utterance", "intent.matched", "answer.spoken", "session.ended",
         "usage")


def event(seq: int, session: str, kind: str) -> str:
    fields = {
        "session.started": "",
        "wake_word": ',"wake_word":"hey_jarvis"',
        "utterance": ',"transcript":"what time is it","stt_seconds":0.3',
        "intent.matched": ',"skill_id":"ovos-skill-date-time.openvoiceos","intent":"what.time"',
        "answer.spoken": ',"text":"It is five past ten.","audio_seconds":1.4',
        "session.ended": ',"end_state":"answered","timings_ms":{"wake_to_utterance":1450.0}',
        "usage": (',"wake_words":1,"stt_seconds":0.3,"tts_characters":20,"tts_seconds":1.4,'
                  '"intents_handled":1'),
    }[kind]
    ts = datetime.now(UTC).isoformat()
    return (f'{{"event_id":"{new_event_id()}","seq":{seq},"ts":"{ts}","session_id":"{session}",'
            f'"type":"{kind}"{fields}}}')


def publish_device(port: int, device, events: int, batch: int, rate: float, started: list[float],
                   phase: float = 0.0) -> None:
    """Publish ``events`` in batches; ``rate`` > 0: this device's events/s, its first batch ``phase``
    (0..1) of a batch interval late, so that the devices' batches are spread evenly, not in bursts."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"voxfleet-{device.device_id}",
                         clean_session=False, protocol=mqtt.MQTTv311)
    client.username_pw_set(device.username, device.password)
    client.connect("127.0.0.1", port, 30)
    client.loop_start()
    name = topic(device.device_id, Channel.EVENTS)
    seq, session = 0, ""
    if rate > 0:
        time.sleep(phase * batch / rate)
    t0 = time.monotonic()
    started.append(time.time())
    while seq < events:
        body = []
        for _ in range(min(batch, events - seq)):
            kind = TYPES[seq % len(TYPES)]
            if kind == "session.started":
                session = f"s-{uuid.uuid4().hex[:12]}"
            seq += 1
            body.append(event(seq, session, kind))
        payload = f'{{"v":1,"kind":"event_batch","dropped":0,"events":[{",".join(body)}]}}'.encode()
        info = client.publish(name, payload, qos=1)
        info.wait_for_publish(30)
        if rate > 0:
            time.sleep(max(0.0, t0 + seq / rate - time.monotonic()))
    client.disconnect()
    client.loop_stop()


def bare_subscriber(port: int, username: str, password: str, dsn: str, ready: multiprocessing.Event,
                    stop: multiprocessing.Event) -> None:
    """The bare path: decode, INSERT each event, commit per message. Nothing checked, nothing deduped."""
    conn = psycopg.connect(dsn)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-bare-{uuid.uuid4().hex[:6]}",
                         clean_session=True, protocol=mqtt.MQTTv311)
    client.username_pw_set(username, password)

    def on_message(c, u, message) -> None:
        device = message.topic.split("/")[3]
        body = json.loads(message.payload)
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO bench_bare(event_id, device, seq, type, ts, payload) "
                            "VALUES (%s, %s, %s, %s, %s, %s)",
                            [(e["event_id"], device, e["seq"], e["type"], e["ts"], json.dumps(e))
                             for e in body["events"]])
        conn.commit()

    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(upstream_filter(Channel.EVENTS), 1)
    client.on_subscribe = lambda c, u, mid, codes, p: ready.set()
    client.connect("127.0.0.1", port, 30)
    client.loop_start()
    stop.wait()
    client.disconnect()
    client.loop_stop()
    conn.close()


def run_round(rig: Rig, owner, label: str, devices: list, args, table: str, where: str) -> dict:
    """Publish the round's load and wait until every event is committed.

    The end of the round is when a poll (every ``POLL_S``) first sees all of its events committed,
    the same way for the bare path and for ingest: ``max(received_at)`` would favour ingest, whose
    ``received_at`` is taken when a cycle's transaction starts, before its (possibly long) write.
    """
    started: list[float] = []
    threads = [threading.Thread(target=publish_device, args=(rig.broker_port, d, args.events, args.batch,
                                                             args.rate / len(devices), started,
                                                             i / len(devices)))
               for i, d in enumerate(devices)]
    total = len(devices) * args.events
    load_before = os.getloadavg()[0]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    published = time.time()
    deadline = time.monotonic() + 600
    with owner.connect() as conn:
        while True:
            stored = conn.execute(text(f"SELECT count(*) FROM {table} WHERE {where}")).scalar_one()
            conn.commit()
            if stored >= total or time.monotonic() > deadline:
                break
            time.sleep(POLL_S)
    done = time.time()
    with owner.connect() as conn:
        p50, p99, pmax = conn.execute(text(
            f"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM received_at - ts)), "
            f"percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM received_at - ts)), "
            f"max(extract(epoch FROM received_at - ts)) FROM {table} WHERE {where}")).one()
    elapsed = done - min(started)
    return {"label": label, "events": total, "stored": stored, "seconds": round(elapsed, 2),
            "publish_seconds": round(published - min(started), 2),
            "events_per_s": round(stored / elapsed), "delay_p50_ms": round(float(p50) * 1000, 1),
            "delay_p99_ms": round(float(p99) * 1000, 1), "delay_max_ms": round(float(pmax) * 1000, 1),
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=16)
    parser.add_argument("--events", type=int, default=3000, help="events per device per round")
    parser.add_argument("--batch", type=int, default=100, help="events per MQTT message")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="offered events/s in total (0: as fast as acked)")
    args = parser.parse_args()
    admin_engine = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"voxfleet_bench_{uuid.uuid4().hex[:8]}"
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    results: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                 "processor": platform.processor()},
                     "params": vars(args), "rounds": []}
    try:
        upgrade(url)
        owner = create_engine(url)
        with owner.begin() as conn:
            conn.execute(text("CREATE TABLE bench_bare (id bigserial PRIMARY KEY, event_id uuid, "
                              "device text, seq bigint, type text, ts timestamptz, "
                              "received_at timestamptz NOT NULL DEFAULT clock_timestamp(), payload json)"))
        with tempfile.TemporaryDirectory() as tmp, \
                MosquittoProcess(Path(tmp) / "mosquitto", ADMIN, ADMIN_PASSWORD) as mosquitto, \
                DynsecAdmin("127.0.0.1", mosquitto.port, ADMIN, ADMIN_PASSWORD) as dynsec:
            password = f"pw-{uuid.uuid4().hex}"
            dynsec.ensure_service_account("voxfleet-cloud", password)
            config = cloud_config(Path(tmp) / "cloud", url, broker_port=mosquitto.port,
                                  service_password=password)
            rig = Rig("bench", config, dynsec, url, mosquitto.port)
            env = {**os.environ, "VOXFLEET_DATABASE_URL": url,
                   "VOXFLEET_BROKER_URL": f"mqtt://127.0.0.1:{mosquitto.port}",
                   "VOXFLEET_BROKER_SERVICE_PASSWORD": password}

            def fleet() -> list:
                tenants = [rig.tenant(f"bench {i}") for i in range(4)]
                return [rig.device(tenants[i % 4]) for i in range(args.devices)]

            def warm_up(subscribers: int, table: str, column: str, key) -> None:
                """Before a round, a few small batches for every subscriber (a shared subscription
                deals them round-robin), stored before the round starts: the first cycle of a fresh
                process (connections, prepared statements, lazy imports) is not part of the figures."""
                device = rig.device(rig.tenant("warm-up"))
                publish_device(rig.broker_port, device, 4 * subscribers * 5, 5, 0.0, [])
                deadline = time.monotonic() + 60
                with owner.connect() as conn:
                    while time.monotonic() < deadline and conn.execute(
                            text(f"SELECT count(*) FROM {table} WHERE {column} = :k"),
                            {"k": key(device)}).scalar_one() < 4 * subscribers * 5:
                        conn.commit()
                        time.sleep(0.05)

            # Bare path first.
            context = multiprocessing.get_context("spawn")
            ready, stop = context.Event(), context.Event()
            dsn = url.replace("postgresql+psycopg://", "postgresql://")
            bare = context.Process(target=bare_subscriber,
                                   args=(mosquitto.port, "voxfleet-cloud", password, dsn, ready, stop))
            bare.start()
            ready.wait(30)
            warm_up(1, "bench_bare", "device", lambda d: d.device_id)
            devices = fleet()
            keys = ",".join(f"'{d.device_id}'" for d in devices)
            results["rounds"].append(run_round(rig, owner, "bare path (1 subscriber)", devices, args,
                                               "bench_bare", f"device IN ({keys})"))
            stop.set()
            bare.join(30)
            print(results["rounds"][-1], flush=True)
            # One worker name for every round, and rounds in growing worker counts: on Mosquitto a
            # stopped worker's persistent session stays in the shared group and keeps receiving its
            # share (queued for its return), so a round must not leave a member the next one lacks.
            for count in sorted(int(c) for c in args.workers.split(",")):
                command = subprocess.Popen(
                    [str(Path(sys.executable).parent / "voxfleet"), "cloud", "ingest", "--data-dir",
                     str(config.data_dir), "--workers", str(count), "--name", "bench"],
                    env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                log: list[str] = []
                reader = threading.Thread(target=lambda c=command, lg=log: lg.extend(c.stdout), daemon=True)
                reader.start()
                deadline = time.monotonic() + 60
                while (sum("subscribed (shared)" in line for line in log) < count
                       and time.monotonic() < deadline):
                    time.sleep(0.1)
                warm_up(count, "session_events", "device_id", lambda d: d.row_id)
                devices = fleet()
                ids = ",".join(f"'{d.row_id}'" for d in devices)
                results["rounds"].append(run_round(rig, owner, f"ingest, {count} worker(s)", devices, args,
                                                   "session_events", f"device_id IN ({ids})"))
                command.send_signal(signal.SIGTERM)
                command.wait(60)
                reader.join(10)
                # A cycle the database could not take (a deadlock, a lock timeout) is retried: count them.
                retried = [line.strip() for line in log
                           if "cannot store a cycle" in line or "retrying it now" in line]
                results["rounds"][-1]["retried_cycles"] = len(retried)
                for line in retried[:3]:
                    print(f"  {line[:300]}", flush=True)
                print(results["rounds"][-1], flush=True)
            rig.close()
        owner.dispose()
    finally:
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()
    bare_rate = results["rounds"][0]["events_per_s"]
    for row in results["rounds"][1:]:
        row["vs_bare"] = round(row["events_per_s"] / bare_rate, 2)
    print(f"\n{'path':<28}{'events':>8}{'stored/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'vs bare':>9}")
    for row in results["rounds"]:
        print(f"{row['label']:<28}{row['stored']:>8}{row['events_per_s']:>10}{row['delay_p50_ms']:>10}"
              f"{row['delay_p99_ms']:>10}{row.get('vs_bare', 1.0):>9}")
    out = ROOT / "bench" / "results" / f"ingest-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
