"""`voxfleet cloud ingest --workers 2` on a shared subscription (test-owned Mosquitto + PostgreSQL):
one worker process is SIGKILLed in the middle of a 20,000-event backlog and its supervisor starts it
again; every event is stored exactly once. And the command stops cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cloud.broker.dynsec import DynsecAdmin
from cloud.broker.mosquitto import MosquittoProcess
from cloud.db import IngestWorkerStats, SessionEvent, UsageRecord, VoiceSession
from cloud.migrations import upgrade
from cloud.scoping import PlatformScope
from protocol.topics import Channel
from tests.cloud.ingest_rig import WAIT, FleetDevice, Rig, batch, cloud_config, session_events, wait_for

ADMIN, ADMIN_PASSWORD = "dynsec-admin", f"pw-{uuid.uuid4().hex}"
DEVICES, EVENTS_PER_DEVICE, BATCH = 8, 2500, 100


@pytest.fixture
def rig(postgres, tmp_path: Path) -> Iterator[tuple[Rig, dict[str, str]]]:
    url = postgres.create()
    upgrade(url)
    with MosquittoProcess(tmp_path / "mosquitto", ADMIN, ADMIN_PASSWORD) as mosquitto, \
            DynsecAdmin("127.0.0.1", mosquitto.port, ADMIN, ADMIN_PASSWORD) as dynsec:
        password = f"pw-{uuid.uuid4().hex}"
        dynsec.ensure_service_account("voxfleet-cloud", password)
        env = {"VOXFLEET_DATABASE_URL": url, "VOXFLEET_BROKER_URL": f"mqtt://127.0.0.1:{mosquitto.port}",
               "VOXFLEET_BROKER_SERVICE_PASSWORD": password}
        config = cloud_config(tmp_path / "cloud", url, broker_port=mosquitto.port, service_password=password)
        rig = Rig("mosquitto+postgresql", config, dynsec, url, mosquitto.port)
        yield rig, env
        rig.close()


class Command:
    """The ingest command in a subprocess, its log collected as it runs."""

    def __init__(self, data_dir: Path, env: dict[str, str], workers: int, name: str) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "voxfleet"), "cloud", "ingest", "--data-dir", str(data_dir),
             "--workers", str(workers), "--name", name],
            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def log(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


def publish_backlog(device: FleetDevice) -> list[str]:
    events: list[dict] = []
    while len(events) < EVENTS_PER_DEVICE:
        events.extend(session_events(device))
    events = events[:EVENTS_PER_DEVICE]
    link = device.link()
    try:
        for start in range(0, len(events), BATCH):
            info = link.publish(Channel.EVENTS, batch(events[start:start + BATCH]))
            info.wait_for_publish(WAIT)
            assert info.is_published()
    finally:
        link.close()
    return [e["event_id"] for e in events]


def test_two_workers_one_killed_mid_stream_store_every_event_exactly_once(rig, tmp_path: Path) -> None:
    rig, env = rig
    tenant = rig.tenant()
    devices = [rig.device(tenant) for _ in range(DEVICES)]
    name = f"t{uuid.uuid4().hex[:6]}"
    command = Command(rig.config.data_dir, env, 2, name)
    try:
        wait_for(lambda: command.log().count("subscribed (shared)") >= 2, timeout=60,
                 what=f"two subscribed workers; log:\n{command.log()}")
        sent: list[list[str]] = []
        publishers = [threading.Thread(target=lambda d=d: sent.append(publish_backlog(d))) for d in devices]
        for thread in publishers:
            thread.start()

        def stored() -> int:
            return rig.count(SessionEvent, SessionEvent.tenant_id == tenant[0])

        wait_for(lambda: stored() >= 4000, timeout=120, what="a quarter of the backlog stored")
        [victim] = rig.rows(IngestWorkerStats, IngestWorkerStats.worker_id.like(f"%-{name}-0"))
        os.kill(victim.pid, signal.SIGKILL)
        for thread in publishers:
            thread.join(120)
        sent_ids = [event_id for ids in sent for event_id in ids]
        assert len(sent_ids) == len(set(sent_ids)) == DEVICES * EVENTS_PER_DEVICE
        wait_for(lambda: stored() >= len(sent_ids), timeout=180,
                 what=f"all {len(sent_ids)} events stored; log:\n{command.log()[-3000:]}")
        with rig.sessions() as db:
            scope = PlatformScope(db)
            rows, distinct = scope.execute(
                select(func.count(), func.count(func.distinct(SessionEvent.event_id)))
                .where(SessionEvent.tenant_id == tenant[0])).one()
            stored_ids = set(scope.scalars(select(SessionEvent.event_id)
                                           .where(SessionEvent.tenant_id == tenant[0])))
        assert rows == distinct == len(sent_ids)
        assert {str(i) for i in stored_ids} == set(sent_ids)
        usage_sent = DEVICES * (EVENTS_PER_DEVICE // 7)
        assert rig.count(UsageRecord, UsageRecord.tenant_id == tenant[0]) == usage_sent
        sessions_sent = DEVICES * -(-EVENTS_PER_DEVICE // 7)  # the last one of each device cut short
        assert rig.count(VoiceSession, VoiceSession.tenant_id == tenant[0]) == sessions_sent
        assert "exited with -9; restarting it" in command.log()
        wait_for(lambda: rig.rows(IngestWorkerStats, IngestWorkerStats.worker_id == victim.worker_id)[0].pid
                 != victim.pid, what="the killed worker started again")
    finally:
        code = command.stop()
    assert code == 0, command.log()[-3000:]
    workers = rig.rows(IngestWorkerStats, IngestWorkerStats.worker_id.like(f"%-{name}-%"))
    assert sorted(w.status for w in workers) == ["stopped", "stopped"]


def test_the_embedded_broker_runs_one_worker_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    upgrade(url)
    done = subprocess.run([str(Path(sys.executable).parent / "voxfleet"), "cloud", "ingest", "--data-dir",
                           str(tmp_path), "--workers", "2"],
                          env={**os.environ, "VOXFLEET_DATABASE_URL": url}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "no shared subscriptions" in done.stderr
