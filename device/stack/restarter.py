"""Answer the bus's restart requests on a device whose services are systemd units.

The agent (a desired configuration from the cloud) and the setup page (a saved setting) ask on the bus
for some services to restart (``voxfleet.services.restart`` with ``{"services": [...]}``) and wait for
``{"ok": ...}``. Under ``voxfleet device run`` the supervisor answers. On a provisioned device each
service is its own unit (ansible/roles/device_services), so this small service answers instead: it
renders ``mycroft.conf`` from the settings now in force, restarts the named units in stack order
with ``systemctl``, waits until each reports ready on the bus, and replies. A service that does not
come back is an ``ok: false`` with the reason, which makes the agent put the previous configuration
back (device/sync/desired.py).

It runs as root (``systemctl restart`` needs it; a polkit rule or sudoers entry would need packages
a minimal image lacks) and renders the configuration as the service user, so the files it writes keep
their owner. Only the known restartable services are accepted: a request cannot name another unit.

    voxfleet-restarter --data-dir /var/lib/voxfleet [--user voxfleet]
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from device.paths import DevicePaths
from device.settings import SettingsError, load_settings
from device.stack.supervisor import RESTART_REQUEST, SERVICES, SETUP_WEB, bus_is_up

log = logging.getLogger("voxfleet.restarter")

# In stack order; the messagebus is not restarted on request (every other service depends on it).
RESTARTABLE = tuple(spec for spec in (*SERVICES, SETUP_WEB) if spec.name != "messagebus")
UNIT = "voxfleet-{name}.service"
READY_TIMEOUT = 180.0
READY_QUERY = "voxfleet.restarter.is_ready"  # answered {"status": true} once it listens for requests

Runner = Callable[[Sequence[str]], subprocess.CompletedProcess]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=120)


class UnitRestarter:
    """Restarts units for bus requests; ``systemctl`` and ``render_as`` are settable for the tests."""

    def __init__(self, data_dir: Path, user: str | None = None, systemctl: str = "systemctl",
                 run: Runner = _run, ready_timeout: float = READY_TIMEOUT) -> None:
        self.paths = DevicePaths.at(data_dir)
        self.user = user
        self.systemctl = systemctl
        self.run = run
        self.ready_timeout = ready_timeout
        self.bus = None
        self._lock = threading.Lock()  # one restart at a time, as the supervisor does

    # -- the work ---------------------------------------------------------------------------------

    def render(self) -> None:
        """Write mycroft.conf from settings.json + managed.json, as the service user."""
        script = ("import sys; from device.stack.config import write_config; "
                  "from device.paths import DevicePaths; from device.settings import load_settings; "
                  "p = DevicePaths.at(sys.argv[1]); write_config(load_settings(p.root), p)")
        argv = [sys.executable, "-c", script, str(self.paths.root)]
        if self.user:
            argv = ["runuser", "-u", self.user, "--", *argv]
        done = self.run(argv)
        if done.returncode != 0:
            reason = (done.stderr or done.stdout or "").strip().splitlines()
            raise SettingsError(reason[-1] if reason else f"rendering mycroft.conf exited {done.returncode}")

    def restart(self, names: list[str]) -> list[str]:
        """Restart ``names`` (validated, in stack order) and wait for each to be ready again."""
        known = {spec.name for spec in RESTARTABLE}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"cannot restart {', '.join(unknown)}: not a restartable service "
                             f"({', '.join(sorted(known))})")
        load_settings(self.paths.root)  # refuse before touching anything when the settings are invalid
        ordered = [spec for spec in RESTARTABLE if spec.name in names]
        with self._lock:
            self.render()
            for spec in ordered:
                unit = UNIT.format(name=spec.name)
                done = self.run([self.systemctl, "restart", unit])
                if done.returncode != 0:
                    reason = (done.stderr or done.stdout or "").strip()
                    raise RuntimeError(f"systemctl restart {unit} failed: {reason or done.returncode}")
                self._wait_ready(spec)
        return [spec.name for spec in ordered]

    def _wait_ready(self, spec) -> None:
        from ovos_bus_client.message import Message

        if spec.ready_query is None or self.bus is None:
            return
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            reply = self.bus.wait_for_response(Message(spec.ready_query), timeout=1.0)
            if reply and reply.data.get("status"):
                return
            time.sleep(0.25)
        raise RuntimeError(f"{spec.name} did not report ready within {self.ready_timeout:.0f}s "
                           "of its restart")

    # -- the bus ----------------------------------------------------------------------------------

    def on_request(self, message) -> None:
        names = [str(n) for n in message.data.get("services") or []]
        try:
            reply = {"ok": True, "restarted": self.restart(names)}
        except Exception as exc:  # the asker must get an answer whatever happened
            log.error("restart of %s refused or failed: %s", ", ".join(names) or "nothing", exc)
            reply = {"ok": False, "restarted": [], "error": str(exc)}
        if self.bus is not None:
            self.bus.emit(message.response(reply))

    def connect(self, host: str, port: int, timeout: float = 60.0) -> None:
        from ovos_bus_client import MessageBusClient

        deadline = time.monotonic() + timeout
        while not bus_is_up(host, port):
            if time.monotonic() > deadline:
                raise SystemExit(f"restarter: no messagebus on {host}:{port}")
            time.sleep(0.5)
        self.bus = MessageBusClient(host=host, port=port)
        self.bus.on(RESTART_REQUEST, self.on_request)
        self.bus.on(READY_QUERY, lambda message: self.bus.emit(message.response({"status": True})))
        self.bus.run_in_thread()
        self.bus.connected_event.wait(10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="voxfleet-restarter", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--user", help="render the configuration as this user (the services' user)")
    parser.add_argument("--systemctl", default="systemctl")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    restarter = UnitRestarter(args.data_dir, user=args.user, systemctl=args.systemctl)
    settings = load_settings(restarter.paths.root)
    restarter.connect(settings.bus_host, settings.bus_port)
    log.info("answering %s for %s", RESTART_REQUEST, ", ".join(s.name for s in RESTARTABLE))
    threading.Event().wait()


if __name__ == "__main__":
    main()
