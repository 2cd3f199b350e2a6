"""The voice pages in headless Chromium, with the browser's microphone fed from a WAV file.

Chromium's fake media stream plays Piper speech into ``getUserMedia``; the page records it, encodes
WAV in JavaScript, sends it to the running setup web and shows what the device's models made of it.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from device.voice.samples import compose
from tests.cloud.browser import screenshot

PASSWORD = "correct horse battery"
RESULT_TIMEOUT_MS = 120_000  # recording plus a first model load on a busy 2-core machine


@pytest.fixture(scope="module")
def spoken_command(tmp_path_factory, piper_voice) -> Path:
    """ "Hey Jarvis. What time is it?" with silence around it (the fake microphone loops the file)."""
    pcm, _, _ = compose(piper_voice, "What time is it?")
    path = tmp_path_factory.mktemp("fake-mic") / "hey-jarvis-what-time.wav"
    path.write_bytes(pcm.padded(before=1.0, after=3.0).to_wav())
    return path


@contextmanager
def serving(app, host: str) -> Iterator[str]:
    server = make_server(host, 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def setup_app(tmp_path_factory):
    """The setup web of a fresh device, with a password already chosen."""
    from device.paths import DevicePaths
    from device.web import credentials
    from device.web.app import create_app

    paths = DevicePaths.at(tmp_path_factory.mktemp("device"))
    app = create_app(paths)
    credentials.set_password(paths.root, PASSWORD)
    return app


@pytest.fixture(scope="module")
def setup_web(setup_app):
    with serving(setup_app, "127.0.0.1") as url:
        yield url


def lan_address() -> str | None:
    """A private, non-loopback IPv4 address of this machine: how a phone on the LAN reaches a device."""
    import psutil

    from device.web.lan import is_local

    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127.") \
                    and is_local(address.address):
                return address.address
    return None


@pytest.fixture(scope="module")
def microphone_browser(fake_microphone_chromium, spoken_command):
    return fake_microphone_chromium(spoken_command)


def signed_in_page(browser, url: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{url}/sign-in")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    return page


def record_in_browser(page, seconds: int = 5) -> None:
    page.get_by_label("Recording length").select_option(str(seconds))
    page.get_by_role("button", name="Record with this browser").click()
    page.wait_for_selector("[data-result]:not([hidden]), [data-status].error", timeout=RESULT_TIMEOUT_MS)
    error = page.locator("[data-status].error")
    assert not error.count(), error.inner_text()


def test_wake_word_test_with_the_browser_microphone(microphone_browser, setup_web):
    page = signed_in_page(microphone_browser, setup_web)
    page.goto(f"{setup_web}/wake-word")
    assert page.get_by_label("Wake word").input_value() == "hey_jarvis"
    record_in_browser(page)
    result = page.locator("[data-result]")
    score = float(result.locator("[data-score]").inner_text())
    threshold = float(result.locator("[data-threshold]").inner_text())
    assert threshold == 0.5 and score > threshold
    assert "Detected" in result.locator("[data-verdict]").inner_text()
    assert "pass" in (result.locator("[data-score-bar]").get_attribute("class") or "")
    screenshot(page, "setup-wake-word")

    # The same speech against another wake word: the page says it would not wake.
    page.get_by_label("Wake word").select_option("alexa")
    record_in_browser(page)
    assert float(result.locator("[data-score]").inner_text()) < 0.5
    assert "Not detected" in result.locator("[data-verdict]").inner_text()
    page.context.close()


def test_speech_test_with_the_browser_microphone(microphone_browser, setup_web):
    page = signed_in_page(microphone_browser, setup_web)
    page.goto(f"{setup_web}/speech")
    record_in_browser(page)
    result = page.locator("[data-result]")
    transcript = result.locator("[data-transcript]").inner_text().lower()
    assert "what time is it" in transcript
    assert result.locator("[data-model]").inner_text() == "tiny.en"
    assert re.fullmatch(r"\d+ ms", result.locator("[data-decode-ms]").inner_text())
    assert float(result.locator("[data-rtf]").inner_text()) > 0
    screenshot(page, "setup-speech")
    page.context.close()


def test_uploading_a_file_that_is_not_audio(microphone_browser, setup_web, tmp_path):
    page = signed_in_page(microphone_browser, setup_web)
    page.goto(f"{setup_web}/speech")
    notes = tmp_path / "notes.wav"
    notes.write_text("these are my notes, not a recording")
    page.get_by_label("Or test a WAV file").set_input_files(str(notes))
    page.get_by_role("button", name="Test this file").click()
    status = page.locator("[data-status].error")
    status.wait_for(timeout=RESULT_TIMEOUT_MS)
    assert "not a WAV file" in status.inner_text()
    page.context.close()


def test_voice_preview_plays(browser, setup_web):
    page = signed_in_page(browser.browser, setup_web)
    page.goto(f"{setup_web}/voice")
    page.evaluate("""() => {
        const player = document.querySelector('audio');
        window.previewPlaying = new Promise((resolve) => player.addEventListener('playing', resolve));
    }""")
    page.get_by_label("Text to speak").fill("The voice preview works.")
    page.get_by_role("button", name="Play preview").click()
    page.evaluate("() => window.previewPlaying")
    player = page.locator("audio")
    assert player.evaluate("a => a.duration") > 1.0
    started = player.evaluate("a => a.currentTime")
    page.wait_for_function("t => document.querySelector('audio').currentTime > t + 0.2", arg=started)
    assert "kB of speech" in page.locator("[data-voice-preview] [data-status]").inner_text()
    screenshot(page, "setup-voice")
    page.context.close()


def test_plain_http_on_the_lan_offers_upload_instead(chromium, setup_app, spoken_command):
    """Browsers give the microphone only to HTTPS pages and localhost: on http://<LAN address> the
    page says so, and uploading a recording still works."""
    address = lan_address()
    if address is None:
        pytest.skip("this machine has no private LAN address to serve on")
    with serving(setup_app, address) as url:
        page = signed_in_page(chromium, url)
        page.goto(f"{url}/wake-word")
        assert page.get_by_role("button", name="Record with this browser").is_disabled()
        note = page.locator("[data-browser-unavailable]").inner_text()
        assert "only on HTTPS pages or on localhost" in note
        page.get_by_label("Or test a WAV file").set_input_files(str(spoken_command))
        page.get_by_role("button", name="Test this file").click()
        page.wait_for_selector("[data-result]:not([hidden])", timeout=RESULT_TIMEOUT_MS)
        assert "Detected" in page.locator("[data-verdict]").inner_text()
        page.context.close()
