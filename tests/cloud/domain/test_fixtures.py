"""Shared set-up for the domain tests (no tests here): the domain's functions called directly, as a CLI
or a worker would call them, on SQLite and PostgreSQL, with no Flask app or request around them.

Tenants are made as operators make them (cloud.admin); each action runs in a session of the app's
database role (row-level security applies on PostgreSQL) with a ``Caller`` for the tenant. Configs,
commands and unpairing go through a real broker (the embedded one on a free port, as
tests/cloud/test_downlink.py does) and a real device client that receives what was sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cloud import admin
from cloud.broker.embedded import EmbeddedBroker
from cloud.broker.mosquitto import free_port
from cloud.broker.runtime import service_account
from cloud.config import CloudConfig, load_config
from cloud.db import Device, DeviceCredential, Project, VoiceSession, utcnow
from cloud.domain.caller import Caller
from cloud.downlink import Downlink
from cloud.scoping import PlatformScope, TenantScope
from tests.cloud.broker.test_contract import WAIT, Probe, secret

ACTOR = "cli:domain-test"


@dataclass
class Org:
    id: uuid.UUID
    slug: str
    project_id: uuid.UUID


@dataclass
class FleetDevice:
    """A device as the broker knows it: its row's id, its topic key and its broker login."""

    id: uuid.UUID
    key: str
    username: str
    password: str

    def connect(self, port: int) -> Probe:
        probe = Probe(port, self.username, self.password, f"voxfleet-{self.key}")
        code = probe.connect()
        assert code is not None and not code.is_failure, code
        return probe


class Rig:
    def __init__(self, database: Any, config: CloudConfig, broker: EmbeddedBroker | None = None) -> None:
        self.database = database
        self.config = config
        self.broker = broker
        self._downlink: Downlink | None = None

    @property
    def port(self) -> int:
        return self.config.mqtt_port

    @property
    def downlink(self) -> Downlink:
        """The cloud's publisher, connected to the rig's broker as the cloud's service account."""
        assert self.broker is not None, "use the broker_rig fixture"
        if self._downlink is None:
            self._downlink = Downlink(self.config, timeout=WAIT)
            assert self._downlink.wait_connected(WAIT)
        return self._downlink

    def close(self) -> None:
        if self._downlink is not None:
            self._downlink.close()

    # --- data ------------------------------------------------------------------------------------------

    def tenant(self, name: str | None = None) -> Org:
        with self.database.sessions() as db:
            made = admin.create_tenant(db, name or f"Org {uuid.uuid4().hex[:6]}",
                                       f"owner-{uuid.uuid4().hex[:8]}@example.com", "secret-key")
            return Org(made.tenant.id, made.tenant.slug, made.project.id)

    @contextmanager
    def caller(self, org: Org, actor: str = ACTOR) -> Iterator[Caller]:
        """A session of its own, as one request or one CLI command has."""
        with self.database.sessions() as db:
            yield Caller(TenantScope(db, org.id), actor, "192.0.2.10")

    def device(self, org: Org, name: str = "Kitchen", project_id: uuid.UUID | None = None,
               on_broker: bool = False) -> FleetDevice:
        """A paired device; ``on_broker``: with a broker account it can connect with (needs a broker)."""
        key = f"dk-{uuid.uuid4().hex[:12]}"
        username, password = f"u-{key}", secret()
        if on_broker:
            assert self.broker is not None, "use the broker_rig fixture"
            self.broker.admin().add_device(key, username, password)
        with self.database.sessions() as db:
            scope = TenantScope(db, org.id)
            row = scope.add(Device(project_id=project_id or org.project_id, device_key=key, name=name,
                                   status="paired", presence="online", paired_at=utcnow()))
            scope.flush()
            scope.add(DeviceCredential(device_id=row.id, username=username, password_hash="argon2-hash"))
            db.commit()
            return FleetDevice(row.id, key, username, password)

    def project(self, org: Org, name: str) -> uuid.UUID:
        with self.database.sessions() as db:
            row = TenantScope(db, org.id).add(Project(name=name))
            db.commit()
            return row.id

    def session(self, org: Org, device: FleetDevice, **values: Any) -> uuid.UUID:
        with self.database.sessions() as db:
            row = TenantScope(db, org.id).add(VoiceSession(
                device_id=device.id, project_id=org.project_id, session_key=f"s-{uuid.uuid4().hex[:10]}",
                **{"started_at": utcnow(), **values}))
            db.commit()
            return row.id

    def rows(self, model: type, *where: Any) -> list[Any]:
        """Rows as the platform sees them, read afresh: what the action left committed."""
        with self.database.sessions() as db:
            return PlatformScope(db).all(model, *where)


def _config(database: Any, data_dir: Path, **overrides: Any) -> CloudConfig:
    return load_config(data_dir, environ={"VOXFLEET_DATABASE_URL": database.url}, **overrides)


@pytest.fixture(name="rig")
def rig_fixture(database, tmp_path) -> Iterator[Rig]:
    """Import ``rig_fixture`` into a test module to use the ``rig`` fixture there (no broker)."""
    made = Rig(database, _config(database, tmp_path))
    yield made
    made.close()


@pytest.fixture(name="broker_rig")
def broker_rig_fixture(database, tmp_path) -> Iterator[Rig]:
    """Import ``broker_rig_fixture`` for a rig with an embedded broker the downlink publishes to."""
    port = free_port()
    broker = EmbeddedBroker(tmp_path, port=port, reconcile_interval=0.2).start()
    config = _config(database, tmp_path, mqtt_port=port)
    account = service_account(config)
    broker.admin().ensure_service_account(account.username, account.password)
    made = Rig(database, config, broker)
    yield made
    made.close()
    broker.stop()
