"""Shared fixtures: the real voice stack (started once per test session) and spoken samples."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from device.offline import force_offline

force_offline()

VOXFLEET = str(Path(sys.executable).parent / "voxfleet")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Stack:
    paths: object
    settings: object
    supervisor: object
    device_id: str

    def listen(self, wavs: list[Path], timeout: float = 600) -> list[dict]:
        """Run `voxfleet device listen --json` against this stack, as a person or script would."""
        args = [VOXFLEET, "device", "listen", "--json", "--data-dir", str(self.paths.root)]
        for wav in wavs:
            args += ["--wav", str(wav)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"listen failed ({done.returncode}): {done.stderr[-2000:]}"
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def voice_stack(tmp_path_factory) -> Stack:
    """The whole OVOS stack on bundled models, on a private data folder and a free bus port."""
    from device.paths import DevicePaths
    from device.settings import DeviceSettings, save_settings
    from device.stack.supervisor import Supervisor

    paths = DevicePaths.at(tmp_path_factory.mktemp("device")).create()
    settings = DeviceSettings(bus_port=free_port(), timezone=os.environ.get("TZ_TEST", "UTC"))
    save_settings(paths.root, settings)
    # Paired with the Mosquitto on this machine, as a device is after pairing with a cloud.
    device_id = f"e2e-{uuid.uuid4().hex[:10]}"
    (paths.root / "cloud.json").write_text(json.dumps({
        "device_id": device_id, "broker_url": "mqtt://127.0.0.1:1883", "cloud": "http://127.0.0.1:8080"}))
    supervisor = Supervisor(paths, settings)
    supervisor.start()
    try:
        yield Stack(paths, settings, supervisor, device_id)
    finally:
        supervisor.stop()


@pytest.fixture(scope="session")
def piper_voice():
    from device.voice.samples import PiperVoice

    return PiperVoice()


@pytest.fixture(scope="session")
def espeak_voice():
    from device.voice.samples import EspeakVoice

    return EspeakVoice()


@pytest.fixture(scope="session")
def samples_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("samples")


# The portals' browser fixtures (a live cloud, Debian's Chromium through Playwright), shared by
# tests/cloud/ and the voice tests: one Playwright per test session (its sync API allows no second).
from tests.cloud.browser import browser, chromium, live_cloud  # noqa: E402, F401


@pytest.fixture(scope="session")
def fake_microphone_chromium(request):
    """``launch(wav)``: a Chromium whose microphone plays ``wav`` (looped), for the voice pages' tests.

    Chromium takes the fake microphone's file as a launch flag, so each WAV needs its own browser;
    it is launched from the session's one Playwright (``chromium.browser_type``) and closed at the end.
    """
    from tests.cloud.browser import CHROMIUM, CHROMIUM_ARGS

    browser_type = request.getfixturevalue("chromium").browser_type
    launched = []

    def launch(wav: Path):
        started = browser_type.launch(executable_path=CHROMIUM, args=[
            *CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}"])
        launched.append(started)
        return started

    yield launch
    for started in launched:
        started.close()
