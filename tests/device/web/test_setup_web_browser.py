"""The device setup web in headless Chromium, served by waitress as on a device: first boot, sign in,
status, then pairing with a running cloud end to end (the code claimed in the tenant portal, the
device page showing tenant and project), unpairing, and an expired code. Saves the docs' screenshots."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from waitress import create_server

from cloud.db import PairingCode
from cloud.scoping import PlatformScope
from device.paths import DevicePaths
from device.web.app import create_app
from tests.cloud.browser import screenshot, sign_in
from tests.conftest import free_port

PASSWORD = "kitchen setup 42"
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def setup_web(tmp_path):
    """The setup web of a fresh device, on a free port, served by waitress in this process."""
    paths = DevicePaths.at(tmp_path / "device").create()
    server = create_server(create_app(paths), host="127.0.0.1", port=free_port(), threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield paths, f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(10)


def test_first_boot_sign_in_and_pairing_with_a_running_cloud(setup_web, chromium, live_cloud):
    paths, url = setup_web
    device = chromium.new_context(viewport=PHONE)
    page = device.new_page()

    # First boot: every page leads here until a password is chosen.
    page.goto(f"{url}/status")
    assert page.url.endswith("/first-boot")
    page.get_by_label("Setup password").fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    page.get_by_label("Device name").fill("Hotel lobby")
    page.get_by_label("Language").select_option("en-GB")
    page.get_by_label("Time zone").select_option("Europe/London")
    screenshot(page, "setup-first-boot")
    page.get_by_role("button", name="Set up").click()
    page.wait_for_url("**/status")
    assert "The device is set up." in page.inner_text("main")
    assert page.inner_text("[data-fact=name]") == "Hotel lobby"
    assert "Europe/London" in page.inner_text("#system")
    screenshot(page, "setup-status")

    # Sign out, a wrong password, then in.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/sign-in")
    page.get_by_label("Setup password").fill("not it")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "Wrong password."
    screenshot(page, "setup-sign-in")
    page.get_by_label("Setup password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/status")

    for name, label in (("device", "Device"), ("network", "Network"), ("history", "History")):
        page.get_by_role("navigation").get_by_role("link", name=label, exact=True).click()
        page.wait_for_url(f"**/{name}")
        screenshot(page, f"setup-{name}")
    page.goto(f"{url}/password")
    screenshot(page, "setup-password")

    # Cloud: the address, then the code, large.
    page.get_by_role("navigation").get_by_role("link", name="Cloud").click()
    page.get_by_label("Cloud address").fill(live_cloud.url)
    screenshot(page, "setup-cloud")
    page.get_by_role("button", name="Get a pairing code").click()
    code_box = page.locator("[data-code]")
    code_box.wait_for()
    code = code_box.inner_text().strip()
    assert len(code.replace("-", "")) >= 6
    # Readable across a room: the code is far larger than the text around it.
    size = float(code_box.evaluate("e => parseFloat(getComputedStyle(e).fontSize)"))
    body = float(page.evaluate("() => parseFloat(getComputedStyle(document.body).fontSize)"))
    assert size >= 3 * body
    screenshot(page, "setup-cloud-code")

    # The tenant's owner claims it in the cloud's portal, on another browser.
    tenant_slug, owner = live_cloud.tenant("Seaside Hotels")
    portal = chromium.new_context(viewport={"width": 1280, "height": 900})
    admin_page = portal.new_page()
    sign_in(admin_page, live_cloud, owner)
    admin_page.goto(f"{live_cloud.url}/tenant/devices")
    admin_page.get_by_label("Pairing code").fill(code)
    admin_page.get_by_label("Name (optional)").fill("Lobby speaker")
    admin_page.get_by_role("button", name="Pair device").click()
    admin_page.wait_for_load_state()
    portal.close()

    # The device page notices the claim by itself and shows where it belongs.
    page.locator("#paired").wait_for(timeout=60_000)
    assert page.inner_text("[data-fact=tenant]") == "Seaside Hotels"
    assert page.inner_text("[data-fact=project]") == "Default"
    assert page.inner_text("[data-fact=cloud]") == live_cloud.url
    record = json.loads((paths.root / "cloud.json").read_text())
    assert record["tenant"] == "Seaside Hotels" and record["device_name"] == "Lobby speaker"
    assert record["password"] not in page.content()
    screenshot(page, "setup-cloud-paired")
    page.goto(f"{url}/status")
    assert "yes, tenant Seaside Hotels, project Default" in page.inner_text("[data-fact=paired]")

    # Unpair: the credentials are forgotten and the page offers pairing again.
    page.goto(f"{url}/cloud")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Unpair").click()
    page.get_by_role("button", name="Get a pairing code").wait_for()
    assert "Unpaired: the device no longer talks to the cloud." in page.inner_text("main")
    assert not (paths.root / "cloud.json").exists()

    # A code nobody claims in time: a clear message and a way to get a new one.
    page.get_by_label("Cloud address").fill(live_cloud.url)
    page.get_by_role("button", name="Get a pairing code").click()
    code_box.wait_for()
    second = code_box.inner_text().strip().replace("-", "")
    with live_cloud.sessions() as db:
        row = PlatformScope(db).first(PairingCode, PairingCode.code == second)
        row.expires_at = row.expires_at - timedelta(hours=1)
        db.commit()
    alert = page.locator("[data-pairing-error]")
    alert.wait_for(timeout=60_000)
    assert alert.inner_text() == "The code expired before anyone claimed it. Ask for a new code."
    assert page.get_by_role("button", name="New code").is_visible()
    screenshot(page, "setup-cloud-expired")
    assert not (paths.root / "cloud.json").exists()
    device.close()
