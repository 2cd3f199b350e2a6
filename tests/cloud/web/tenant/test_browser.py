"""The tenant and member portals in Debian's Chromium against a live cloud (web app, embedded broker,
ingest, webhook deliveries): an owner pairs a device with the code `voxfleet device pair` prints,
manages keys, reads usage charts and downloads the CSV, tests a webhook against a receiver on this
machine; a member sees the read-only portal. Every page is saved to docs/screenshots/."""

from __future__ import annotations

import csv
import io
import subprocess
import threading
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from cloud import admin
from cloud.db import Device, Project, SessionEvent, UsageRecord, VoiceSession, utcnow
from cloud.scoping import PlatformScope
from tests.cloud.browser import screenshot, sign_in
from tests.conftest import VOXFLEET

PHONE = {"width": 390, "height": 844}


class _Receiver(BaseHTTPRequestHandler):
    events: list[str] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.events.append(self.headers.get("X-VoxFleet-Event", ""))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/voxfleet"
    server.shutdown()


def _recorded_sessions(cloud, slug: str) -> None:
    """Sessions with their events and usage, as ingest stores them from a device's batches."""
    with cloud.sessions() as db:
        tenant = admin.find_tenant(db, slug)
        scope = PlatformScope(db).for_tenant(tenant.id)
        device = scope.first(Device)
        spoken = [
            ("what time is it", "date-time", "what-time", "answered", "It is twelve thirty."),
            (
                "set a timer for five minutes",
                "timer",
                "start-timer",
                "answered",
                "Timer set for five minutes.",
            ),
            ("blorp the flanges", None, None, "not_understood", None),
        ]
        for n, (transcript, skill, intent, state, answer) in enumerate(spoken):
            start = utcnow() - timedelta(hours=n * 5, minutes=3)
            row = scope.add(
                VoiceSession(
                    device_id=device.id,
                    project_id=device.project_id,
                    session_key=f"sess-{uuid.uuid4().hex[:8]}",
                    started_at=start,
                    ended_at=start + timedelta(seconds=3),
                    wake_word="hey_jarvis",
                    transcript=transcript,
                    intent_skill=skill,
                    intent_name=intent,
                    answer=answer,
                    end_state=state,
                    timings={
                        "wake_to_utterance_ms": 1480.0,
                        "stt_ms": 310.0,
                        "intent_ms": 1120.0,
                        "total_ms": 3010.0,
                    },
                )
            )
            scope.flush()
            events = [
                ("session.started", {}),
                ("wake_word", {"wake_word": "hey_jarvis"}),
                ("utterance", {"transcript": transcript, "stt_seconds": 0.31}),
            ]
            events += (
                [
                    ("intent.matched", {"skill_id": skill, "intent": intent}),
                    ("answer.spoken", {"text": answer}),
                ]
                if skill
                else [("intent.failed", {"utterance": transcript})]
            )
            events.append(("session.ended", {"end_state": state}))
            for seq, (kind, payload) in enumerate(events):
                scope.add(
                    SessionEvent(
                        device_id=device.id,
                        session_id=row.id,
                        event_id=uuid.uuid4(),
                        seq=n * 10 + seq,
                        type=kind,
                        ts=start + timedelta(milliseconds=600 * seq),
                        payload=payload,
                    )
                )
            scope.add(
                UsageRecord(
                    device_id=device.id,
                    project_id=device.project_id,
                    event_id=uuid.uuid4(),
                    ts=start,
                    wake_words=1,
                    stt_seconds=1.9 + n,
                    tts_characters=len(answer or ""),
                    intents_handled=1 if skill else 0,
                )
            )
        db.commit()


def _nav(page, label: str) -> None:
    page.locator("header nav").get_by_role("link", name=label, exact=True).click()
    page.wait_for_load_state()


def _accept_dialogs(page) -> None:
    page.on("dialog", lambda dialog: dialog.accept())


def test_owner_runs_the_fleet_from_the_portal(live_cloud, browser, receiver, tmp_path):
    slug, owner = live_cloud.tenant("Acme Hotels")
    page = browser.new_page()
    _accept_dialogs(page)
    sign_in(page, live_cloud, owner)
    assert page.url.endswith("/tenant/")
    screenshot(page, "tenant-dashboard-empty")

    # Pair: the device prints its code; a person types it into the form.
    pair = subprocess.Popen(
        [VOXFLEET, "device", "pair", "--cloud", live_cloud.url, "--data-dir", str(tmp_path / "device")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        code = pair.stdout.readline().strip()
        assert len(code) == 6, code or pair.stderr.read()
        _nav(page, "Devices")
        page.get_by_label("Pairing code").fill("WRONG1")
        page.get_by_role("button", name="Pair device").click()
        assert "No device shows this code" in page.inner_text("#code-error")
        screenshot(page, "tenant-devices-pair-error")
        page.get_by_label("Pairing code").fill(code.lower())
        page.get_by_label("Name (optional)").fill("Lobby")
        page.get_by_role("button", name="Pair device").click()
        page.wait_for_url("**/tenant/devices/*")
        assert "Paired “Lobby”" in page.inner_text("main")
        out, err = pair.communicate(timeout=60)
        assert pair.returncode == 0, err
        assert "paired with Acme Hotels" in err
    finally:
        if pair.poll() is None:
            pair.kill()
    screenshot(page, "tenant-device")
    _nav(page, "Devices")
    assert "Lobby" in page.inner_text("main")
    screenshot(page, "tenant-devices")

    # Sessions, as ingest stores them.
    _recorded_sessions(live_cloud, slug)
    _nav(page, "Sessions")
    assert "set a timer for five minutes" in page.inner_text("main")
    screenshot(page, "tenant-sessions")
    page.get_by_label("Outcome").select_option("not_understood")
    page.get_by_role("button", name="Filter").click()
    assert "blorp the flanges" in page.inner_text("main") and "set a timer" not in page.inner_text("main")
    page.get_by_role("link", name="Clear").click()
    page.locator("table a").first.click()
    assert "Wake word heard" in page.inner_text("main") and "Stage timings" in page.inner_text("main")
    screenshot(page, "tenant-session")
    _nav(page, "Dashboard")
    assert "what-time" in page.inner_text("main")
    screenshot(page, "tenant-dashboard")

    # Projects.
    _nav(page, "Projects")
    page.get_by_label("Name", exact=True).fill("Default")
    page.get_by_role("button", name="Create project").click()
    assert "already exists" in page.inner_text("#name-error")
    page.get_by_label("Name", exact=True).fill("Hotel Berlin")
    page.get_by_role("button", name="Create project").click()
    page.wait_for_url("**/tenant/projects/*")
    screenshot(page, "tenant-project")
    _nav(page, "Projects")
    screenshot(page, "tenant-projects")

    # API keys: the key is shown once, with a copy button; rotate; revoke.
    _nav(page, "API keys")
    page.get_by_label("Name").fill("CRM sync")
    page.get_by_label("Scope").select_option("write")
    page.get_by_role("button", name="Create key").click()
    key = page.inner_text("#secret-value").strip()
    assert key.startswith("vfk_") and page.get_by_role("button", name="Copy to clipboard").is_visible()
    screenshot(page, "tenant-keys-created")
    _nav(page, "API keys")
    assert key not in page.content()
    prefix = page.locator("td.mono").first.inner_text()
    page.get_by_role("button", name=f"Rotate key {prefix}").click()
    rotated = page.inner_text("#secret-value").strip()
    assert rotated.startswith("vfk_") and rotated != key
    _nav(page, "API keys")
    page.get_by_role("button", name=f"Revoke key {prefix}").click()
    assert "is revoked" in page.inner_text("main")
    screenshot(page, "tenant-keys")

    # Usage: the charts render (uPlot draws canvases) and the CSV downloads.
    _nav(page, "Usage")
    page.get_by_label("Breakdown").select_option("device")
    page.get_by_role("button", name="Show").click()
    page.wait_for_selector("#chart-sessions canvas")
    assert page.locator(".chart canvas").count() >= 4
    assert "Lobby" in page.inner_text("main")
    screenshot(page, "tenant-usage")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download CSV").click()
    with open(info.value.path()) as downloaded:
        rows = list(csv.DictReader(io.StringIO(downloaded.read())))
    assert rows and {r["device_name"] for r in rows} == {"Lobby"}
    assert sum(int(r["sessions"]) for r in rows) == 3
    page.get_by_label("Period", exact=True).select_option("24h")
    page.get_by_role("button", name="Show").click()
    page.wait_for_selector("#chart-sessions canvas")

    # Webhooks: created with the secret shown once; a test delivery shows the receiver's answer.
    _nav(page, "Settings")
    page.get_by_label("URL").fill(receiver)
    page.get_by_label("A session completed").check()
    page.get_by_role("button", name="Add webhook").click()
    assert page.inner_text("#secret-value").startswith("whsec_")
    page.get_by_role("link", name="Send a test delivery").click()
    page.get_by_role("button", name="Send test delivery").click()
    assert "The receiver answered HTTP 204" in page.inner_text("#test-result")
    assert _Receiver.events[-1] == "webhook.test"
    assert "HTTP 204" in page.inner_text("table")
    screenshot(page, "tenant-webhook")
    page.get_by_role("link", name="← Settings").click()
    screenshot(page, "tenant-settings")

    # Team.
    live_cloud.member(slug)
    _nav(page, "Team")
    assert "tenant member" in page.inner_text("main")
    screenshot(page, "tenant-team")

    # Readable on a phone: nothing wider than the screen but the scrolling tables.
    phone = browser.new_page()
    phone.set_viewport_size(PHONE)
    phone.goto(f"{live_cloud.url}/tenant/devices")
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(phone, "tenant-devices-phone")
    phone.goto(f"{live_cloud.url}/tenant/")
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(phone, "tenant-dashboard-phone")


def test_member_sees_the_read_only_portal(live_cloud, browser):
    slug, owner = live_cloud.tenant("Acme Hotels")
    with live_cloud.sessions() as db:
        tenant = admin.find_tenant(db, slug)
        scope = PlatformScope(db).for_tenant(tenant.id)
        project = scope.all(Project)[0]
        scope.add(Device(project_id=project.id, name="Lobby", device_key=f"dk-{uuid.uuid4().hex[:10]}"))
        db.commit()
    _recorded_sessions(live_cloud, slug)
    with live_cloud.sessions() as db:
        _, key = admin.create_api_key(db, slug, "read", name="Dashboard feed")
    member = live_cloud.member(slug)
    page = browser.new_page()
    sign_in(page, live_cloud, member)
    assert page.url.endswith("/member/")
    nav = page.inner_text("header nav")
    assert "Devices" not in nav and "Settings" not in nav.replace("Personal settings", "")
    screenshot(page, "member-dashboard")
    _nav(page, "Sessions")
    assert "what time is it" in page.inner_text("main")
    screenshot(page, "member-sessions")
    page.locator("table a").first.click()
    assert page.get_by_role("button", name="End this session").count() == 0
    screenshot(page, "member-session")
    _nav(page, "API keys")
    assert "Dashboard feed" in page.inner_text("main") and key not in page.content()
    screenshot(page, "member-keys")
    refused = page.goto(f"{live_cloud.url}/tenant/devices")
    assert refused.status == 403
