"""The operator portal in headless Chromium on a live cloud (web app, embedded broker, ingest thread):
a device connects to the broker with its own account and reports presence, a heartbeat and two voice
sessions through real ingest; the operator sees them on the dashboard, finds the tenant, suspends it
and watches the device drop off the broker and show offline, finds the suspension in the audit log,
reactivates (the device reconnects with the same credentials), and disables and enables an account.
Every operator page is saved to docs/screenshots/, and the dashboard is also checked at phone size.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import paho.mqtt.client as mqtt

from cloud.db import Device, DeviceCredential, Project, Tenant, User
from cloud.scoping import PlatformScope
from cloud.security import hash_password
from protocol import messages
from protocol.ids import new_event_id
from protocol.topics import Channel, topic
from tests.cloud.browser import LiveCloud, screenshot, sign_in


def wait_for(check: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    """Poll until ``check`` holds; a timeout fails with what was awaited (a wait, never a timing claim)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


class LinkedDevice:
    """A device on the broker as device/sync/link.py connects: its own account and client id, a retained
    presence with a Last Will, then a heartbeat and an event batch."""

    def __init__(self, cloud: LiveCloud, key: str, password: str) -> None:
        self.key = key
        self.connected, self.dropped = threading.Event(), threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"voxfleet-{key}",
                                  protocol=mqtt.MQTTv311)
        self.client.username_pw_set(key, password)
        offline = messages.encode(messages.Presence(state="offline", ts=datetime.now(UTC)))
        self.client.will_set(topic(key, Channel.PRESENCE), offline, qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.dropped.set()
        self.client.connect("127.0.0.1", cloud.config.mqtt_port)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            self.connected.set()

    def publish(self, channel: Channel, message, retain: bool = False) -> None:
        info = self.client.publish(topic(self.key, channel), messages.encode(message), qos=1, retain=retain)
        info.wait_for_publish(10)

    def report(self) -> None:
        now = datetime.now(UTC)
        self.publish(Channel.PRESENCE, messages.Presence(state="online", ts=now), retain=True)
        self.publish(Channel.HEARTBEAT, messages.Heartbeat(
            ts=now, uptime_s=120, cpu_percent=12, memory_percent=40, disk_percent=30, outbox_depth=0,
            services={"messagebus": "ready", "listener": "ready", "core": "ready", "audio": "restarting"}))
        events, seq = [], 0
        for n, end_state in enumerate(("answered", "not_understood")):
            for kind in (messages.SessionStarted, messages.SessionEnded):
                extra = {"end_state": end_state} if kind is messages.SessionEnded else {}
                events.append(kind(event_id=new_event_id(), seq=seq, ts=now, session_id=f"s-{n}", **extra))
                seq += 1
        self.publish(Channel.EVENTS, messages.EventBatch(events=events))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def provision(cloud: LiveCloud, slug: str) -> tuple[str, str]:
    """A paired device of the tenant with a broker account, as pairing leaves it."""
    key, password = f"dev-{secrets.token_hex(5)}", secrets.token_urlsafe(18)
    cloud.running.broker.admin().add_device(key, key, password)
    with cloud.sessions() as db:
        platform = PlatformScope(db)
        tenant = platform.first(Tenant, Tenant.slug == slug)
        scope = platform.for_tenant(tenant.id)
        project = scope.first(Project, Project.is_default.is_(True))
        device = scope.add(Device(project_id=project.id, device_key=key, name="Lobby speaker"))
        scope.flush()
        scope.add(DeviceCredential(device_id=device.id, username=key, password_hash=hash_password(password)))
        db.commit()
    return key, password


def device_row(cloud: LiveCloud, key: str) -> Device:
    with cloud.sessions() as db:
        return PlatformScope(db).first(Device, Device.device_key == key)


def stat(page, name: str) -> str:
    return page.locator(f'[data-stat="{name}"] .value').inner_text().strip()


def test_operator_suspends_a_tenant_and_its_connected_device_goes_offline(live_cloud, browser):
    slug, _owner = live_cloud.tenant("Harbour Hotels")
    live_cloud.tenant("Quiet Quarry")
    key, password = provision(live_cloud, slug)
    device = LinkedDevice(live_cloud, key, password)
    try:
        assert device.connected.wait(10), "the device could not connect to the embedded broker"
        device.report()
        wait_for(lambda: device_row(live_cloud, key).presence == "online", "ingest to store the presence")
        wait_for(lambda: device_row(live_cloud, key).last_heartbeat_at is not None, "the heartbeat")

        operator = live_cloud.operator()
        page = browser.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        sign_in(page, live_cloud, operator)
        assert page.url.endswith("/operator/")
        # The sessions arrive through ingest too: reload until both are counted.
        def counted() -> bool:
            page.reload()
            return stat(page, "sessions-today") == "2"

        wait_for(counted, "the dashboard to count the sessions")
        assert stat(page, "tenants-active") == "2" and stat(page, "tenants-suspended") == "0"
        assert stat(page, "devices-online") == "1" and stat(page, "devices-offline") == "0"
        assert stat(page, "sessions-month") == "2" and stat(page, "failed-intent-rate") == "50.0%"
        assert stat(page, "ingest-workers") == "1"  # the live cloud's ingest thread reports itself
        screenshot(page, "operator-dashboard")

        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, "the dashboard overflows a phone"
        screenshot(page, "operator-dashboard-phone")
        page.set_viewport_size({"width": 1280, "height": 900})

        page.get_by_role("link", name="Tenants", exact=True).click()
        page.get_by_label("Name or slug").fill("harb")
        page.get_by_label("Name or slug").press("Enter")  # the search works from the keyboard
        page.wait_for_load_state()
        rows = page.locator("tbody tr")
        assert rows.count() == 1 and "Harbour Hotels" in rows.inner_text() and "1 / 1" in rows.inner_text()
        screenshot(page, "operator-tenants")

        page.get_by_role("link", name="Harbour Hotels").click()
        presence = page.locator(f'tr[data-device="{key}"] [data-presence]')
        assert presence.inner_text() == "online"
        assert page.locator('[data-stat="usage-sessions"] .value').inner_text() == "2"
        screenshot(page, "operator-tenant")

        # A forgotten reason is shown beside its field, and what was typed stays.
        page.get_by_label(re.compile("to confirm")).fill(slug)
        page.get_by_role("button", name="Suspend Harbour Hotels").click()
        page.wait_for_load_state()
        assert page.locator("#reason-error").is_visible()
        assert page.get_by_label(re.compile("to confirm")).input_value() == slug
        screenshot(page, "operator-tenant-suspend-error")
        page.get_by_label("Reason").fill("unpaid for three months")
        page.get_by_role("button", name="Suspend Harbour Hotels").click()
        page.wait_for_load_state()
        assert "Harbour Hotels is suspended: 1 device account(s) disabled" in page.inner_text("main")
        assert device.dropped.wait(10), "the suspended tenant's device stayed connected"
        assert page.locator("[data-tenant-status]").inner_text() == "suspended"
        assert page.locator(f'tr[data-device="{key}"] [data-presence]').inner_text() == "offline"
        screenshot(page, "operator-tenant-suspended")

        page.get_by_role("link", name="Audit log", exact=True).click()
        page.get_by_label("Tenant (slug or id)").fill(slug)
        page.get_by_label(re.compile("^Action")).fill("tenant.")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_load_state()
        audit = page.locator('table[data-table="audit"] tbody tr')
        assert audit.count() == 2  # its creation and its suspension, nothing of the other tenant
        first = audit.first.inner_text()
        assert "tenant.suspended" in first and operator.email in first and "unpaid for three months" in first
        screenshot(page, "operator-audit")

        page.goto(f"{live_cloud.url}/operator/tenants?q={slug}")
        page.get_by_role("link", name="Harbour Hotels").click()
        page.get_by_role("button", name="Reactivate Harbour Hotels").click()
        page.wait_for_load_state()
        assert "Harbour Hotels is active again" in page.inner_text("main")
        assert page.locator("[data-tenant-status]").inner_text() == "active"
    finally:
        device.close()
    again = LinkedDevice(live_cloud, key, password)  # the same credentials: no re-pairing
    try:
        assert again.connected.wait(10), "the device was not let back in after reactivation"
    finally:
        again.close()


def test_system_page_shows_voice_services_from_heartbeats(live_cloud, browser):
    slug, _owner = live_cloud.tenant("Sound Labs")
    key, password = provision(live_cloud, slug)
    silent, _ = provision(live_cloud, slug)  # paired, never connected: stale
    device = LinkedDevice(live_cloud, key, password)
    try:
        assert device.connected.wait(10)
        device.report()
        wait_for(lambda: device_row(live_cloud, key).last_heartbeat_at is not None, "the heartbeat")
    finally:
        device.close()
    operator = live_cloud.operator()
    page = browser.new_page()
    sign_in(page, live_cloud, operator)
    page.get_by_role("link", name="System", exact=True).click()
    page.wait_for_load_state()
    assert "embedded broker: running" in page.locator('[data-check="broker"]').inner_text()
    assert "answering" in page.locator('[data-check="database"]').inner_text()
    worker = page.locator('table[data-table="workers"] tbody tr').first.inner_text()
    assert "running" in worker
    row = page.locator(f'tr[data-device="{key}"]')
    cells = row.locator("td").all_inner_texts()
    assert cells[3:] == ["ready", "ready", "restarting", "ready"]  # wake word, STT, TTS, skills
    assert row.locator("[data-stale]").count() == 0
    assert page.locator(f'tr[data-device="{silent}"] [data-stale]').count() == 1
    screenshot(page, "operator-system")
    page.get_by_label("Show").select_option("stale")
    page.get_by_role("button", name="Show", exact=True).click()
    page.wait_for_load_state()
    assert page.locator(f'tr[data-device="{key}"]').count() == 0
    assert page.locator(f'tr[data-device="{silent}"]').count() == 1


def test_operator_disables_and_enables_an_account(live_cloud, browser, chromium):
    slug, _owner = live_cloud.tenant("Crew Co")
    member = live_cloud.member(slug, "tenant_admin")
    operator = live_cloud.operator()
    theirs = chromium.new_context()
    try:
        their_page = theirs.new_page()
        sign_in(their_page, live_cloud, member)
        assert "/login" not in their_page.url

        page = browser.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        sign_in(page, live_cloud, operator)
        page.get_by_role("link", name="Users", exact=True).click()
        page.get_by_label("Email or name").fill(member.email)
        page.get_by_role("button", name="Search").click()
        page.wait_for_load_state()
        own = page.locator(f'tr[data-user="{operator.email}"]')
        assert own.count() == 0  # filtered out by the search; checked unfiltered below
        page.get_by_role("button", name=f"Disable {member.email}").click()
        page.wait_for_load_state()
        assert f"{member.email} is disabled" in page.inner_text("main")
        assert "disabled" in page.locator(f'tr[data-user="{member.email}"]').inner_text()
        assert page.get_by_label("Email or name").input_value() == member.email  # back to the same list

        their_page.reload()
        assert "/login" in their_page.url, "a disabled account's session went on"
        sign_in(their_page, live_cloud, member)
        assert "/login" in their_page.url

        page.get_by_role("button", name=f"Enable {member.email}").click()
        page.wait_for_load_state()
        assert f"{member.email} is enabled" in page.inner_text("main")
        sign_in(their_page, live_cloud, member)
        assert "/login" not in their_page.url

        page.goto(f"{live_cloud.url}/operator/users")
        mine = page.locator(f'tr[data-user="{operator.email}"]')
        assert "you" in mine.inner_text() and mine.get_by_role("button").count() == 0
        screenshot(page, "operator-users")
        with live_cloud.sessions() as db:
            assert not PlatformScope(db).first(User, User.email == member.email).disabled
    finally:
        theirs.close()
