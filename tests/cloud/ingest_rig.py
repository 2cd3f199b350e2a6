"""What the ingest tests and the ingest benchmark share: a real broker (a test-owned Mosquitto with
Dynamic Security, or the embedded amqtt broker), a migrated database, a cloud configuration that
points at both, and devices provisioned the way pairing does it (a Device row and a broker account).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from cloud.broker.admin import BrokerAdmin
from cloud.config import CloudConfig, load_config
from cloud.db import Device, Project, Tenant
from cloud.db.session import make_engine
from cloud.scoping import PlatformScope, TenantScope, session_factory
from device.sync.link import LinkConfig, MqttLink
from protocol import messages
from protocol.ids import new_event_id
from tests.waiting import wait_until

WAIT = 20.0  # seconds to wait for something that should happen


@dataclass
class FleetDevice:
    device_id: str        # the topic id (Device.device_key)
    row_id: uuid.UUID     # Device.id
    tenant_id: uuid.UUID
    project_id: uuid.UUID
    username: str
    password: str
    broker_url: str
    seq: int = 0

    def link(self, on_down: Callable | None = None) -> MqttLink:
        link = MqttLink(LinkConfig(self.device_id, self.broker_url, self.username, self.password), on_down)
        link.start()
        return link

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


@dataclass
class Rig:
    name: str
    config: CloudConfig
    admin: BrokerAdmin
    database_url: str
    broker_port: int
    sessions: sessionmaker = field(init=False)

    def __post_init__(self) -> None:
        self.engine = make_engine(self.database_url, app_role=self.config.database_role or None) \
            if self.database_url.startswith("postgresql") else make_engine(self.database_url)
        self.sessions = session_factory(self.engine)

    @property
    def broker_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.broker_port}"

    def tenant(self, name: str = "Tenant") -> tuple[uuid.UUID, uuid.UUID]:
        """A new tenant and its default project: (tenant id, project id)."""
        with self.sessions() as db:
            tenant = PlatformScope(db).add(Tenant(name=name, slug=f"t-{uuid.uuid4().hex[:10]}"))
            db.flush()
            scope = TenantScope(db, tenant.id)
            project = scope.add(Project(name="Default", is_default=True))
            scope.commit()
            return tenant.id, project.id

    def device(self, tenant: tuple[uuid.UUID, uuid.UUID] | None = None, *, account: bool = True,
               row: bool = True, status: str = "paired") -> FleetDevice:
        """A device as pairing leaves it: a Device row in its tenant and its own broker account."""
        tenant_id, project_id = tenant or self.tenant()
        device_id = f"dev-{uuid.uuid4().hex[:12]}"
        username, password = f"u-{device_id}", f"pw-{uuid.uuid4().hex}"
        row_id = uuid.uuid4()
        if row:
            with self.sessions() as db:
                scope = TenantScope(db, tenant_id)
                made = scope.add(Device(project_id=project_id, name=f"Kitchen {device_id[-4:]}",
                                        device_key=device_id, status=status))
                scope.commit()
                row_id = made.id
        if account:
            self.admin.add_device(device_id, username, password)
        return FleetDevice(device_id, row_id, tenant_id, project_id, username, password, self.broker_url)

    def count(self, model: type, *where: Any) -> int:
        with self.sessions() as db:
            return int(PlatformScope(db).scalar(select(func.count()).select_from(model).where(*where)))

    def rows(self, model: type, *where: Any) -> list[Any]:
        with self.sessions() as db:
            return PlatformScope(db).all(model, *where)

    def close(self) -> None:
        self.engine.dispose()


def cloud_config(data_dir: Path, database_url: str, *, broker_port: int, service_password: str | None = None,
                 embedded: bool = False) -> CloudConfig:
    environ = {"VOXFLEET_DATABASE_URL": database_url}
    if embedded:
        environ["VOXFLEET_MQTT_PORT"] = str(broker_port)
    else:
        environ["VOXFLEET_BROKER_URL"] = f"mqtt://127.0.0.1:{broker_port}"
        environ["VOXFLEET_BROKER_SERVICE_PASSWORD"] = service_password or ""
    return load_config(data_dir, environ=environ)


def wait_for(check: Callable[[], Any], timeout: float = WAIT, what: str = "condition") -> Any:
    return wait_until(check, timeout, what, every=0.05)


# --- protocol messages, as a device's agent makes them ------------------------------------------------

def session_events(device: FleetDevice, *, session_id: str | None = None, transcript: str = "what time is it",
                   start: datetime | None = None, end_state: str = "answered") -> list[dict[str, Any]]:
    """One complete exchange as device/sync/events.py emits it, with the device's next seq numbers."""
    sid = session_id or f"s-{uuid.uuid4().hex[:12]}"
    t0 = start or datetime.now(UTC)

    def event(offset_s: float, type_: str, **fields: Any) -> dict[str, Any]:
        return {"event_id": str(new_event_id()), "seq": device.next_seq(), "type": type_,
                "ts": (t0 + timedelta(seconds=offset_s)).isoformat(), "session_id": sid, **fields}

    return [
        event(0.0, "session.started"),
        event(0.05, "wake_word", wake_word="hey_jarvis"),
        event(1.5, "utterance", transcript=transcript, stt_seconds=0.3),
        event(2.6, "intent.matched", skill_id="ovos-skill-date-time.openvoiceos", intent="what.time"),
        event(2.7, "answer.spoken", text="It is five past ten.", audio_seconds=1.4),
        event(4.1, "session.ended", end_state=end_state, timings_ms={"wake_to_utterance": 1450.0}),
        event(4.1, "usage", wake_words=1, stt_seconds=0.3, tts_characters=20, tts_seconds=1.4,
              intents_handled=1),
    ]


def batch(events: list[dict[str, Any]], dropped: int = 0) -> bytes:
    return messages.encode(messages.EventBatch(events=events, dropped=dropped))
