"""Shared set-up for the API tests (no tests here): an app on each database, tenants with keys, rows.

Tenants and keys are made the way operators make them (cloud.admin); devices and sessions through the
scoping layer, as pairing and ingest write them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cloud import admin
from cloud.app import create_app
from cloud.config import load_config
from cloud.db import Device, DeviceCredential, Project, UsageRecord, VoiceSession, utcnow
from cloud.scoping import PlatformScope, TenantScope


@dataclass
class Tenant:
    id: uuid.UUID
    slug: str
    project_id: uuid.UUID
    write_key: str
    read_key: str
    devices: list[uuid.UUID] = field(default_factory=list)


class Api:
    """The app, its test client, and helpers that call it with a key."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.client: FlaskClient = app.test_client()
        self.sessions = app.extensions["voxfleet.db"][1]

    def call(self, method: str, path: str, key: str | None = None, json: Any = None,
             headers: dict[str, str] | None = None, **kwargs: Any):
        sent = dict(headers or {})
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        return self.client.open(f"/api/v1{path}", method=method, json=json, headers=sent, **kwargs)

    def get(self, path: str, key: str | None = None, **kwargs: Any):
        return self.call("GET", path, key, **kwargs)

    def post(self, path: str, key: str | None = None, json: Any = None, **kwargs: Any):
        return self.call("POST", path, key, json=json, **kwargs)

    def patch(self, path: str, key: str | None = None, json: Any = None, **kwargs: Any):
        return self.call("PATCH", path, key, json=json, **kwargs)

    def put(self, path: str, key: str | None = None, json: Any = None, **kwargs: Any):
        return self.call("PUT", path, key, json=json, **kwargs)

    def delete(self, path: str, key: str | None = None, **kwargs: Any):
        return self.call("DELETE", path, key, **kwargs)

    # --- data ------------------------------------------------------------------------------------------

    def tenant(self, name: str | None = None) -> Tenant:
        name = name or f"Tenant {uuid.uuid4().hex[:6]}"
        with self.sessions() as db:
            made = admin.create_tenant(db, name, f"owner-{uuid.uuid4().hex[:8]}@example.com", "secret-key")
            tenant_id, slug, project_id = made.tenant.id, made.tenant.slug, made.project.id
            _, write_key = admin.create_api_key(db, slug, "write", name="writer")
            _, read_key = admin.create_api_key(db, slug, "read", name="reader")
        return Tenant(tenant_id, slug, project_id, write_key, read_key)

    def device(self, tenant: Tenant, *, project_id: uuid.UUID | None = None, presence: str = "offline",
               device_key: str | None = None, username: str | None = None) -> Device:
        with self.sessions() as db:
            scope = TenantScope(db, tenant.id)
            device = scope.add(Device(project_id=project_id or tenant.project_id,
                                      device_key=device_key or f"dev-{uuid.uuid4().hex[:12]}",
                                      name="kitchen", presence=presence, presence_at=utcnow()))
            scope.flush()
            if username:
                scope.add(DeviceCredential(device_id=device.id, username=username,
                                           password_hash="argon2-hash"))
            scope.commit()
        tenant.devices.append(device.id)
        return device

    def session(self, tenant: Tenant, device: Device, started_at: datetime, **values: Any) -> VoiceSession:
        with self.sessions() as db:
            scope = TenantScope(db, tenant.id)
            row = scope.add(VoiceSession(device_id=device.id, project_id=device.project_id,
                                         session_key=f"s-{uuid.uuid4().hex[:10]}", started_at=started_at,
                                         **values))
            scope.commit()
        return row

    def usage(self, tenant: Tenant, device: Device, ts: datetime, **meters: Any) -> None:
        with self.sessions() as db:
            scope = TenantScope(db, tenant.id)
            scope.add(UsageRecord(device_id=device.id, project_id=device.project_id, event_id=uuid.uuid4(),
                                  ts=ts, **meters))
            scope.commit()

    def project(self, tenant: Tenant, name: str) -> uuid.UUID:
        with self.sessions() as db:
            scope = TenantScope(db, tenant.id)
            row = scope.add(Project(name=name))
            scope.commit()
        return row.id

    def rows(self, model: type, *where: Any) -> list[Any]:
        """Rows as the platform sees them: for checking what changed, whoever's they are."""
        with self.sessions() as db:
            return PlatformScope(db).all(model, *where)


def make_app(database_url: str, data_dir, **overrides: Any) -> Flask:
    config = load_config(data_dir, environ={"VOXFLEET_DATABASE_URL": database_url}, **overrides)
    app = create_app(config)
    app.config.update(DOWNLINK_PUBACK_TIMEOUT=1.0, WEBHOOKS_ALLOW_PRIVATE=True)
    return app


def close_app(app: Flask) -> None:
    downlink = app.extensions.get("voxfleet.downlink")
    if downlink is not None:
        downlink.close()
    app.extensions["voxfleet.db"][0].dispose()


@pytest.fixture(name="api")
def api_fixture(database, tmp_path) -> Iterator[Api]:
    """Import ``api_fixture`` into a test module to use the ``api`` fixture there."""
    app = make_app(database.url, tmp_path)
    yield Api(app)
    close_app(app)


def ago(**delta: float) -> datetime:
    return utcnow() - timedelta(**delta)
