"""Ingest end to end: devices publish real protocol messages through a real broker, one worker stores
them in a real database. Run on a test-owned Mosquitto (Dynamic Security) + PostgreSQL and on the
embedded amqtt broker + SQLite.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud.broker.dynsec import DynsecAdmin
from cloud.broker.embedded import EmbeddedBroker
from cloud.broker.mosquitto import MosquittoProcess, free_port
from cloud.broker.runtime import service_account
from cloud.db import (
    Command,
    ConfigAck,
    Device,
    DeviceIngest,
    Heartbeat,
    IngestWorkerStats,
    SessionEvent,
    UsageRecord,
    VoiceSession,
    Webhook,
    WebhookDelivery,
    utcnow,
)
from cloud.ingest import IngestWorker, Reason, worker_id
from cloud.migrations import upgrade
from cloud.scoping import TenantScope
from device.sync.link import drain
from device.sync.store import Store
from protocol import messages
from protocol.topics import Channel
from tests.cloud.ingest_rig import WAIT, Rig, batch, cloud_config, session_events, wait_for

ADMIN, ADMIN_PASSWORD = "dynsec-admin", f"pw-{uuid.uuid4().hex}"


@pytest.fixture(scope="module", params=["mosquitto+postgresql", "embedded+sqlite"])
def rig(request, tmp_path_factory) -> Iterator[Rig]:
    data_dir = Path(tmp_path_factory.mktemp("cloud"))
    if request.param == "mosquitto+postgresql":
        url = request.getfixturevalue("postgres").create()
        upgrade(url)
        workdir = Path(tmp_path_factory.mktemp("mosquitto"))
        with MosquittoProcess(workdir, ADMIN, ADMIN_PASSWORD) as mosquitto, \
                DynsecAdmin("127.0.0.1", mosquitto.port, ADMIN, ADMIN_PASSWORD) as dynsec:
            password = f"pw-{uuid.uuid4().hex}"
            dynsec.ensure_service_account("voxfleet-cloud", password)
            config = cloud_config(data_dir, url, broker_port=mosquitto.port, service_password=password)
            rig = Rig(request.param, config, dynsec, url, mosquitto.port)
            yield rig
            rig.close()
    else:
        url = f"sqlite:///{data_dir / 'cloud.db'}"
        upgrade(url)
        port = free_port()
        config = cloud_config(data_dir, url, broker_port=port, embedded=True)
        with EmbeddedBroker(data_dir, port=port, reconcile_interval=0.2) as broker:
            account = service_account(config)
            broker.admin().ensure_service_account(account.username, account.password)
            rig = Rig(request.param, config, broker.admin(), url, port)
            yield rig
            rig.close()


@pytest.fixture(scope="module")
def worker(rig: Rig) -> Iterator[IngestWorker]:
    running = IngestWorker(rig.config, worker_id(0, f"test-{uuid.uuid4().hex[:6]}"), stats_interval_s=0.2)
    running.start()
    assert running.wait_ready(WAIT), "the ingest worker did not subscribe"
    yield running
    running.stop()


def stored_events(rig: Rig, device) -> int:
    return rig.count(SessionEvent, SessionEvent.device_id == device.row_id)


def test_events_land_once_sessions_are_built_and_a_replay_changes_nothing(rig: Rig,
                                                                          worker: IngestWorker) -> None:
    device = rig.device()
    first, second = session_events(device), session_events(device, transcript="set a timer for five minutes")
    link = device.link()
    try:
        payload = batch(first + second)
        link.publish(Channel.EVENTS, payload).wait_for_publish(WAIT)
        wait_for(lambda: stored_events(rig, device) == 14, what="14 events stored")
        sessions = {s.session_key: s for s in rig.rows(VoiceSession, VoiceSession.device_id == device.row_id)}
        assert len(sessions) == 2
        s = sessions[first[0]["session_id"]]
        assert (s.tenant_id, s.project_id) == (device.tenant_id, device.project_id)
        assert s.started_at == datetime.fromisoformat(first[0]["ts"])
        assert s.ended_at == datetime.fromisoformat(first[5]["ts"])
        assert (s.wake_word, s.transcript, s.intent_skill, s.intent_name, s.answer, s.end_state) == (
            "hey_jarvis", "what time is it", "ovos-skill-date-time.openvoiceos", "what.time",
            "It is five past ten.", "answered")
        assert s.timings == {"wake_to_utterance": 1450.0}
        assert sessions[second[0]["session_id"]].transcript == "set a timer for five minutes"
        usage = rig.rows(UsageRecord, UsageRecord.device_id == device.row_id)
        assert sorted(str(u.event_id) for u in usage) == sorted([first[6]["event_id"], second[6]["event_id"]])
        assert {u.tenant_id for u in usage} == {device.tenant_id}

        # The same batch again (a redelivery), then a barrier batch: nothing of the first changes.
        before = {(s.session_key, s.transcript, s.ended_at) for s in sessions.values()}
        duplicates = worker.stats.duplicate_events
        link.publish(Channel.EVENTS, payload).wait_for_publish(WAIT)
        link.publish(Channel.EVENTS, batch(session_events(device))).wait_for_publish(WAIT)
        wait_for(lambda: stored_events(rig, device) == 21, what="the barrier batch")
        assert worker.stats.duplicate_events - duplicates == 14
        assert rig.count(UsageRecord, UsageRecord.device_id == device.row_id) == 3
        after = {(s.session_key, s.transcript, s.ended_at)
                 for s in rig.rows(VoiceSession, VoiceSession.device_id == device.row_id)}
        assert before < after and len(after) == 3
        ids = [e.event_id for e in rig.rows(SessionEvent, SessionEvent.device_id == device.row_id)]
        assert len(ids) == len(set(ids)) == 21
    finally:
        link.close()


def test_the_device_outbox_and_drain_deliver_through_ingest(rig: Rig, worker: IngestWorker,
                                                            tmp_path: Path) -> None:
    """The device's own path: events appended to its SQLite outbox (which assigns seq), sent by drain."""
    device = rig.device()
    store = Store(tmp_path / "outbox.sqlite3")
    for _ in range(30):
        events = session_events(device)
        store.append([{k: v for k, v in e.items() if k != "seq"} for e in events])
    link = device.link()
    try:
        assert drain(store, link, batch_events=100) == 210
        wait_for(lambda: stored_events(rig, device) == 210, what="210 events")
        seqs = sorted(e.seq for e in rig.rows(SessionEvent, SessionEvent.device_id == device.row_id))
        assert seqs == list(range(1, 211))
        assert rig.count(VoiceSession, VoiceSession.device_id == device.row_id,
                         VoiceSession.end_state == "answered") == 30
    finally:
        link.close()
        store.close()


def test_a_session_split_across_batches_arriving_in_reverse_order_is_whole(rig: Rig,
                                                                           worker: IngestWorker) -> None:
    device = rig.device()
    events = session_events(device)
    link = device.link()
    try:
        link.publish(Channel.EVENTS, batch(events[4:])).wait_for_publish(WAIT)  # answer, end, usage first
        wait_for(lambda: stored_events(rig, device) == 3, what="the later half")
        link.publish(Channel.EVENTS, batch(events[:4])).wait_for_publish(WAIT)
        wait_for(lambda: stored_events(rig, device) == 7, what="the earlier half")
        [s] = rig.rows(VoiceSession, VoiceSession.device_id == device.row_id)
        assert s.started_at == datetime.fromisoformat(events[0]["ts"])
        assert (s.wake_word, s.transcript, s.intent_name, s.answer, s.end_state) == (
            "hey_jarvis", "what time is it", "what.time", "It is five past ten.", "answered")
    finally:
        link.close()


def _rejections(worker: IngestWorker) -> dict[str, int]:
    return dict(worker.stats.rejected)


def test_bad_messages_are_rejected_with_counted_reasons_and_the_worker_keeps_going(
        rig: Rig, worker: IngestWorker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    device = rig.device()
    stranger = rig.device(row=False)                # a broker account, but no such device in the cloud
    unpaired = rig.device(status="unpaired")
    secret = f"secret-{uuid.uuid4().hex}"
    good = session_events(device)
    bad = {
        Reason.MALFORMED: b'{"v": 1, "kind": "event_batch", "events": [' + secret.encode(),
        Reason.OVERSIZED: json.dumps({"v": 1, "kind": "event_batch", "pad": secret * 10000}).encode(),
        Reason.WRONG_VERSION: json.dumps({"v": 2, "kind": "event_batch", "events": good[:1]}).encode(),
        Reason.INVALID: json.dumps({"v": 1, "kind": "event_batch",
                                    "events": [{**good[0], "event_id": secret}]}).encode(),
        Reason.UNKNOWN_KIND: json.dumps({"v": 1, "kind": "firmware_update", "image": secret}).encode(),
        Reason.WRONG_CHANNEL: messages.encode(messages.Presence(state="online", ts=datetime.now(UTC))),
    }
    before = _rejections(worker)
    link = device.link()
    others = [stranger.link(), unpaired.link()]
    try:
        for payload in bad.values():
            link.publish(Channel.EVENTS, payload).wait_for_publish(WAIT)
        others[0].publish(Channel.EVENTS, batch(session_events(stranger))).wait_for_publish(WAIT)
        others[1].publish(Channel.EVENTS, batch(session_events(unpaired))).wait_for_publish(WAIT)
        link.publish(Channel.EVENTS, batch(good)).wait_for_publish(WAIT)
        wait_for(lambda: stored_events(rig, device) == 7, what="the good batch after the bad ones")
        # Each of the two refused devices: its "online" presence on connect, and its batch.
        expected = {**{r.value: 1 for r in bad}, Reason.UNKNOWN_DEVICE.value: 2,
                    Reason.UNPAIRED_DEVICE.value: 2}
        wait_for(lambda: all(_rejections(worker).get(r, 0) - before.get(r, 0) >= n
                             for r, n in expected.items()), what=f"rejections {expected}")
        delta = {r: _rejections(worker).get(r, 0) - before.get(r, 0) for r in expected}
        assert delta == expected
        assert stored_events(rig, unpaired) == 0
        assert rig.count(VoiceSession, VoiceSession.device_id == unpaired.row_id) == 0
        assert secret not in caplog.text
        assert "oversized" in caplog.text and unpaired.device_id in caplog.text
    finally:
        link.close()
        for other in others:
            other.close()


def test_a_batch_the_database_refuses_is_rejected_alone(rig: Rig, worker: IngestWorker) -> None:
    """Valid by the schema (seq is unbounded there) but beyond a 64-bit column: refused, counted, and
    neither the batch before nor the one after is lost."""
    device = rig.device()
    before = _rejections(worker).get(Reason.STORAGE_REFUSED.value, 0)
    link = device.link()
    try:
        huge = session_events(device)
        for i, event in enumerate(huge):
            event["seq"] = 2 ** 70 + i
        link.publish(Channel.EVENTS, batch(session_events(device))).wait_for_publish(WAIT)
        link.publish(Channel.EVENTS, batch(huge)).wait_for_publish(WAIT)
        link.publish(Channel.EVENTS, batch(session_events(device))).wait_for_publish(WAIT)
        wait_for(lambda: stored_events(rig, device) == 14, what="the batches around the refused one")
        wait_for(lambda: _rejections(worker).get(Reason.STORAGE_REFUSED.value, 0) == before + 1,
                 what="a storage_refused rejection")
        assert rig.count(VoiceSession, VoiceSession.device_id == device.row_id) == 2
    finally:
        link.close()


def test_a_batch_is_stored_under_the_topics_tenant_whatever_the_payload_claims(
        rig: Rig, worker: IngestWorker) -> None:
    """Fields a reader does not know are ignored (a newer device may send them), so a payload that
    claims another tenant or device is stored as what it is: device A's events, under A's tenant."""
    tenant_a, tenant_b = rig.tenant("A"), rig.tenant("B")
    a = rig.device(tenant_a)
    b = rig.device(tenant_b)
    link = a.link()
    try:
        claims = session_events(a)
        forged = [{**e, "tenant_id": str(tenant_b[0]), "device_id": b.device_id} for e in claims]
        link.publish(Channel.EVENTS, json.dumps({"v": 1, "kind": "event_batch", "events": forged,
                                                 "tenant_id": str(tenant_b[0])}).encode()
                     ).wait_for_publish(WAIT)
        honest = session_events(a)
        link.publish(Channel.EVENTS, batch(honest)).wait_for_publish(WAIT)
        wait_for(lambda: stored_events(rig, a) == 14, what="A's two batches")
        with rig.sessions() as db:
            assert TenantScope(db, tenant_b[0]).count(SessionEvent) == 0
            assert TenantScope(db, tenant_b[0]).count(VoiceSession) == 0
            scope_a = TenantScope(db, tenant_a[0])
            assert {str(e.event_id) for e in scope_a.all(SessionEvent)} == \
                {e["event_id"] for e in honest + claims}
            assert {e.device_id for e in scope_a.all(SessionEvent)} == {a.row_id}
        # Counted as what they are: fields this release does not know, not rejections.
        unknown = worker.stats.unknown_fields
        assert unknown["event_batch.tenant_id"] == 1
        assert unknown["event_batch.events.*.tenant_id"] == unknown["event_batch.events.*.device_id"] == 7
    finally:
        link.close()


def test_session_completed_webhook_is_enqueued_once(rig: Rig, worker: IngestWorker) -> None:
    tenant = rig.tenant()
    with rig.sessions() as db:
        scope = TenantScope(db, tenant[0])
        hook = scope.add(Webhook(url="https://hooks.example.test/voxfleet", events=["session.completed"],
                                 secret="s" * 32))
        scope.commit()
    device = rig.device(tenant)
    events = session_events(device)
    link = device.link()
    try:
        link.publish(Channel.EVENTS, batch(events[:3])).wait_for_publish(WAIT)  # open: no webhook yet
        link.publish(Channel.EVENTS, batch(events[3:])).wait_for_publish(WAIT)
        wait_for(lambda: stored_events(rig, device) == 7, what="the session")
        link.publish(Channel.EVENTS, batch(events[3:])).wait_for_publish(WAIT)  # replayed
        later = batch(session_events(device, end_state="no_speech"))
        link.publish(Channel.EVENTS, later).wait_for_publish(WAIT)
        wait_for(lambda: stored_events(rig, device) == 14, what="the second session")
        deliveries = rig.rows(WebhookDelivery, WebhookDelivery.webhook_id == hook.id)
        assert len(deliveries) == 2
        first = next(d for d in deliveries if d.payload["data"]["session_key"] == events[0]["session_id"])
        assert first.event_type == "session.completed" and first.status == "pending"
        data = first.payload["data"]
        assert (data["device_key"], data["transcript"], data["end_state"]) == (
            device.device_id, "what time is it", "answered")
        assert first.tenant_id == tenant[0]
    finally:
        link.close()


def test_dropped_detail_is_counted_once_per_batch(rig: Rig, worker: IngestWorker) -> None:
    device = rig.device()
    link = device.link()
    try:
        payload = batch(session_events(device), dropped=5)
        link.publish(Channel.EVENTS, payload).wait_for_publish(WAIT)
        link.publish(Channel.EVENTS, payload).wait_for_publish(WAIT)
        link.publish(Channel.EVENTS, batch(session_events(device), dropped=2)).wait_for_publish(WAIT)
        wait_for(lambda: stored_events(rig, device) == 14, what="both batches")
        [row] = rig.rows(DeviceIngest, DeviceIngest.device_id == device.row_id)
        assert (row.events_dropped, row.tenant_id) == (7, device.tenant_id)
    finally:
        link.close()


def test_presence_heartbeat_config_ack_and_command_results_update_the_device(
        rig: Rig, worker: IngestWorker) -> None:
    tenant = rig.tenant()
    with rig.sessions() as db:
        scope = TenantScope(db, tenant[0])
        hook = scope.add(Webhook(url="https://hooks.example.test/presence", events=["device.online",
                                                                                    "device.offline"],
                                 secret="s" * 32))
        scope.commit()
    device = rig.device(tenant)
    other = rig.device(tenant)
    command_id, others_command = uuid.uuid4(), uuid.uuid4()
    with rig.sessions() as db:
        scope = TenantScope(db, tenant[0])
        scope.add(Command(device_id=device.row_id, command_id=command_id, action="speak",
                          args={"text": "hello"}, status="sent", created_by="test"))
        scope.add(Command(device_id=other.row_id, command_id=others_command, action="reload", args={},
                          status="sent", created_by="test"))
        scope.commit()

    def device_row() -> Device:
        return rig.rows(Device, Device.id == device.row_id)[0]

    link = device.link()  # publishes a retained "online"
    wait_for(lambda: device_row().presence == "online", what="online")
    heartbeat = messages.Heartbeat(ts=datetime.now(UTC), uptime_s=12.5, cpu_percent=7.0, memory_percent=40.0,
                                   disk_percent=12.0, outbox_depth=3, services={"listener": "ready"})
    link.publish(Channel.HEARTBEAT, messages.encode(heartbeat), qos=0)
    ack = messages.ConfigAck(version=3, status="rejected", reason="wake word 'hey_bob' is not bundled")
    link.publish(Channel.CONFIG_ACK, messages.encode(ack)).wait_for_publish(WAIT)
    link.publish(Channel.CONFIG_ACK, messages.encode(ack)).wait_for_publish(WAIT)  # again on reconnect
    before = _rejections(worker).get(Reason.UNKNOWN_COMMAND.value, 0)
    for cid, status in ((command_id, "ok"), (uuid.uuid4(), "ok"), (others_command, "error")):
        result = messages.CommandResult(command_id=cid, status=status, detail="spoke in 0.4 s")
        link.publish(Channel.COMMAND_RESULT, messages.encode(result)).wait_for_publish(WAIT)
    wait_for(lambda: rig.rows(Command, Command.command_id == command_id)[0].status == "ok", what="result")
    wait_for(lambda: _rejections(worker).get(Reason.UNKNOWN_COMMAND.value, 0) == before + 2,
             what="two results for commands this device was never sent")
    [done] = rig.rows(Command, Command.command_id == command_id)
    assert done.detail == "spoke in 0.4 s" and done.finished_at is not None
    assert rig.rows(Command, Command.command_id == others_command)[0].status == "sent"
    wait_for(lambda: device_row().last_heartbeat_at is not None, what="heartbeat")
    row = device_row()
    assert row.last_heartbeat_at == heartbeat.ts and row.last_heartbeat["outbox_depth"] == 3
    [history] = rig.rows(Heartbeat, Heartbeat.device_id == device.row_id)
    assert history.metrics["services"] == {"listener": "ready"}
    [stored_ack] = rig.rows(ConfigAck, ConfigAck.device_id == device.row_id)
    assert (stored_ack.acked_version, stored_ack.status, stored_ack.reason) == (
        3, "rejected", "wake word 'hey_bob' is not bundled")

    # An old presence (a replayed retained message) does not turn the clock back.
    stale = messages.Presence(state="offline", ts=datetime.now(UTC) - timedelta(hours=1))
    link.publish(Channel.PRESENCE, messages.encode(stale)).wait_for_publish(WAIT)
    link.close()  # a clean "offline"
    wait_for(lambda: device_row().presence == "offline", what="offline")
    assert device_row().presence_at > utcnow() - timedelta(minutes=5)
    deliveries = rig.rows(WebhookDelivery, WebhookDelivery.webhook_id == hook.id)
    assert sorted(d.event_type for d in deliveries) == ["device.offline", "device.online"]
    assert all(d.payload["data"]["device_key"] == device.device_id for d in deliveries)


def test_worker_statistics_are_persisted(rig: Rig, worker: IngestWorker) -> None:
    device = rig.device()
    link = device.link()
    try:
        link.publish(Channel.EVENTS, batch(session_events(device))).wait_for_publish(WAIT)
        link.publish(Channel.EVENTS, b"not json").wait_for_publish(WAIT)
        wait_for(lambda: stored_events(rig, device) == 7, what="a batch")
    finally:
        link.close()
    received = worker.stats.received

    def row() -> IngestWorkerStats | None:
        found = rig.rows(IngestWorkerStats, IngestWorkerStats.worker_id == worker.worker_id)
        return found[0] if found and found[0].received >= received else None

    stats = wait_for(row, what="persisted statistics")
    assert stats.status == "running" and stats.stored_events >= 7
    assert stats.rejected.get(Reason.MALFORMED.value, 0) >= 1
    assert stats.last_message_at is not None and stats.lag_s is not None
