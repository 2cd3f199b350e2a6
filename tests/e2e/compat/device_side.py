"""A voice device of one release, driven only through that release's own ``voxfleet device`` commands.

Its data folder gets a plain ``settings.json`` (a free bus port, no setup web), then ``device pair``,
``device run`` (the whole OVOS stack on the bundled models), ``device status`` and ``device listen``,
exactly as a person at the device would type them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port
from tests.e2e.compat.install import Code
from tests.waiting import wait_until

STACK_START_SECONDS = 400  # the supervisor's own start timeout is 180 s; two cores shared by several runs


@dataclass
class Device:
    code: Code
    root: Path

    def voxfleet(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(self.code.command("device", *args, "--data-dir", str(self.root)),
                              env=self.code.env, capture_output=True, text=True, timeout=timeout)

    def configure(self) -> None:
        """The settings a person would write: only keys every release knows."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "settings.json").write_text(json.dumps(
            {"name": f"compat-{self.code.label}", "bus_port": free_port(), "setup_web": False,
             "timezone": "UTC"}))

    def pair(self, cloud_url: str, claim: Callable[[str], dict]) -> dict:
        """``voxfleet device pair``, its code claimed with ``claim`` (the cloud's API): the claimed device."""
        pair = subprocess.Popen(self.code.command("device", "pair", "--cloud", cloud_url, "--data-dir",
                                                  str(self.root)),
                                env=self.code.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            code = pair.stdout.readline().strip()
            assert code, f"device pair ({self.code.label}) printed no code: {pair.stderr.read()[-2000:]}"
            claimed = claim(code)
            _, err = pair.communicate(timeout=120)
        finally:
            if pair.poll() is None:
                pair.kill()
        assert pair.returncode == 0, f"device pair ({self.code.label}) failed: {err[-2000:]}"
        return claimed

    def status(self) -> tuple[bool, dict]:
        """``voxfleet device status --json``: (every service ready, its report)."""
        done = self.voxfleet("status", "--json")
        try:
            report = json.loads(done.stdout)
        except ValueError:
            report = {}
        return done.returncode == 0, report

    def ready(self) -> dict | None:
        ok, report = self.status()
        return report if ok else None

    def service_pids(self) -> dict[str, int]:
        _, report = self.status()
        return {name: info["pid"] for name, info in report.get("services", {}).items() if info.get("pid")}

    def listen(self, wavs: list[Path]) -> list[dict]:
        args = ["listen", "--json"]
        for wav in wavs:
            args += ["--wav", str(wav)]
        done = self.voxfleet(*args, timeout=600)
        assert done.returncode == 0, f"device listen ({self.code.label}) failed: {done.stderr[-3000:]}"
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def mycroft_conf(self) -> dict:
        """The OVOS configuration the release rendered (DevicePaths.mycroft_conf in every release so far)."""
        return json.loads((self.root / "xdg" / "config" / "mycroft" / "mycroft.conf").read_text())

    def log_tail(self, name: str, size: int = 3000) -> str:
        path = self.root / "logs" / name
        return path.read_text(errors="replace")[-size:] if path.exists() else f"({path} missing)"


@contextmanager
def running(device: Device) -> Iterator[subprocess.Popen]:
    """``voxfleet device run`` until every service is ready; stopped (SIGTERM, as systemd does) on exit."""
    log = device.root / "run.log"
    with open(log, "w") as out:
        process = subprocess.Popen(device.code.command("device", "run", "--data-dir", str(device.root)),
                                   env=device.code.env, stdout=out, stderr=subprocess.STDOUT)

    def up() -> dict | None:
        if process.poll() is not None:
            raise AssertionError(f"device run ({device.code.label}) exited ({process.returncode}):\n"
                                 + log.read_text(errors="replace")[-3000:])
        return device.ready()

    pids: dict[str, int] = {}
    try:
        wait_until(up, STACK_START_SECONDS, f"the {device.code.label} voice stack (log: {log})", every=2)
        yield process
    finally:
        with contextlib.suppress(Exception):
            pids = device.service_pids()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            for pid in pids.values():  # each service leads its own process group
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
