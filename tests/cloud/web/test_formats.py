"""How long ago, as every portal writes it (cloud/web/formats.py): one style, so an operator and a
tenant looking at the same device read the same words."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from cloud import admin
from cloud.db import Device, utcnow
from cloud.scoping import TenantScope
from cloud.web.formats import ago
from tests.cloud.web.tenant.test_fixtures import Portal, portal_fixture, text  # noqa: F401

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_the_largest_unit_that_fits() -> None:
    cases = {
        None: "never",
        NOW + timedelta(seconds=30): "just now",          # a clock a little ahead
        NOW - timedelta(milliseconds=400): "just now",
        NOW - timedelta(seconds=45): "45 s ago",
        NOW - timedelta(seconds=60): "1 min ago",
        NOW - timedelta(minutes=59, seconds=59): "59 min ago",
        NOW - timedelta(hours=3, minutes=10): "3 h ago",
        NOW - timedelta(days=1, hours=23): "1 day ago",
        NOW - timedelta(days=2): "2 days ago",
        NOW - timedelta(days=400): "400 days ago",
    }
    for value, words in cases.items():
        assert ago(value, now=NOW) == words, value


def test_the_operator_and_the_tenant_read_the_same_words(portal: Portal) -> None:
    org = portal.tenant()
    with portal.sessions() as db:
        TenantScope(db, org.id).add(Device(project_id=org.project_id, name="Lobby",
                                           device_key=f"dk-{uuid.uuid4().hex[:12]}", presence="offline",
                                           last_heartbeat_at=utcnow() - timedelta(days=2, hours=1)))
        operator_id = admin.create_operator(db, f"op-{uuid.uuid4().hex[:6]}@example.com",
                                            "a long operator password").id
    tenant_page = portal.client(org.owner_id).get("/tenant/devices")
    operator_page = portal.client(operator_id).get(f"/operator/tenants/{org.id}")
    assert tenant_page.status_code == 200 and operator_page.status_code == 200
    assert "2 days ago" in text(tenant_page) and "2 days ago" in text(operator_page)
    assert "2 d ago" not in text(operator_page)
