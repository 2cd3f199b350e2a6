"""The whole path a person sees, with real speech: the real OVOS voice stack is paired with a live cloud
by typing the code `voxfleet device pair` prints into the tenant portal, a command is spoken to it
(Piper voice through the listener: wake word, VAD, Whisper, intent, answer), and the session appears on
the portal's sessions page in Chromium, transcript and all. The stack's own cloud.json is put back
afterwards, as tests/e2e/test_cloud_e2e.py does, so the other voice tests keep their broker."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from device.voice import samples
from tests.cloud.browser import screenshot, sign_in
from tests.conftest import VOXFLEET
from tests.e2e.test_cloud_e2e import sync_state
from tests.waiting import wait_until

pytestmark = pytest.mark.voice

COMMAND = "What time is it?"


def _reload_until(page, predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page.reload()
        page.wait_for_load_state()
        if predicate():
            return
        time.sleep(1.0)
    pytest.fail(f"timed out waiting for {what}")


def test_spoken_session_appears_in_the_portal(voice_stack, piper_voice, live_cloud, browser,
                                              tmp_path):
    stack = voice_stack
    pairing_file = stack.paths.root / "cloud.json"
    original = pairing_file.read_text()
    wav = samples.synthesize(piper_voice, COMMAND, tmp_path / "wav").path
    slug, owner = live_cloud.tenant("Acme Hotels")
    page = browser.new_page()
    sign_in(page, live_cloud, owner)
    pair = subprocess.Popen([VOXFLEET, "device", "pair", "--cloud", live_cloud.url, "--data-dir",
                             str(stack.paths.root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        code = pair.stdout.readline().strip()
        assert code, pair.stderr.read()
        page.goto(f"{live_cloud.url}/tenant/devices")
        page.get_by_label("Pairing code").fill(code)
        page.get_by_label("Name (optional)").fill("Reception")
        page.get_by_role("button", name="Pair device").click()
        page.wait_for_url("**/tenant/devices/*")
        _, err = pair.communicate(timeout=60)
        assert pair.returncode == 0, err
        device_page = page.url
        broker_url = json.loads(pairing_file.read_text())["broker_url"]
        wait_until(lambda: sync_state(stack.paths.root).get("broker_url") == broker_url
                   and sync_state(stack.paths.root).get("connected"), 60, "the agent to connect to the cloud")
        _reload_until(page, lambda: page.locator("h1 + div .badge").inner_text() == "online", 60,
                      "the device to show online in the portal")

        spoken = stack.listen([wav])
        assert len(spoken) == 1
        heard = spoken[0]
        assert heard["transcript"]

        page.goto(f"{live_cloud.url}/tenant/sessions")
        _reload_until(page, lambda: heard["transcript"] in page.inner_text("main")
                      and "answered" in page.inner_text("main"), 90,
                      "the spoken session on the sessions page")
        screenshot(page, "tenant-sessions-live")
        page.locator("table a").first.click()
        page.wait_for_load_state()
        main = page.inner_text("main")
        assert heard["transcript"] in main and heard["answer"] in main
        assert heard["intent"] in main and "Wake word heard" in main and "Session ended" in main
        screenshot(page, "tenant-session-live")
        page.goto(device_page)
        assert "Reception" in page.inner_text("main") and heard["transcript"] in page.inner_text("main")
    finally:
        if pair.poll() is None:
            pair.kill()
        pairing_file.write_text(original)  # back to this machine's Mosquitto for the other tests
        wait_until(lambda: sync_state(stack.paths.root).get("connected")
                   and sync_state(stack.paths.root).get("broker_url") == json.loads(original)["broker_url"],
                   60, "the agent to reconnect to the original broker")
