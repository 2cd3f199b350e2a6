"""Start, watch and stop the OVOS services of one device.

On a device these are systemd units (ansible/); on a laptop, in tests and in the README's demo this
supervisor plays that part: one command brings the messagebus, ovos-core, ovos-audio and the dinkum
listener up in order, waits until each reports ready on the bus, restarts a service that dies
(with backoff, giving up after repeated crashes), reports health, and takes everything down on
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from device.files import write_atomic
from device.paths import DevicePaths
from device.settings import DeviceSettings, SettingsError, load_settings
from device.stack.config import service_env, write_config

STOP_GRACE_SECONDS = 10.0
MAX_RESTARTS = 5  # within RESTART_WINDOW; then the service is marked failed
RESTART_WINDOW = 300.0
LOG_ROTATE_BYTES = 20 * 2**20
# Asked on the bus by the agent after it changed the configuration (desired config, reload):
# {"services": [...]} -> the supervisor re-renders mycroft.conf and restarts only those services.
RESTART_REQUEST = "voxfleet.services.restart"


class StackError(RuntimeError):
    """The stack cannot start or keep running; the message names the cause and a remedy."""


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    command: tuple[str, ...]  # first item: a console script beside this Python, or "-m" and a module
    ready_query: str | None  # bus message answered with {"status": true} once ready

    @property
    def argv(self) -> list[str]:
        if self.command[0] == "-m":
            return [sys.executable, *self.command]
        return [_bin(self.command[0]), *self.command[1:]]

    @property
    def log_file(self) -> str:
        return f"{self.name}.log"


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("messagebus", ("ovos-messagebus",), None),
    ServiceSpec("volume", ("voxfleet-volume",), "voxfleet.volume.is_ready"),
    # Before the voice services, so it hears every exchange from the first one.
    ServiceSpec("agent", ("voxfleet-agent",), "voxfleet.agent.is_ready"),
    ServiceSpec("core", ("ovos-core",), "mycroft.skills.is_ready"),
    ServiceSpec("audio", ("ovos-audio",), "mycroft.audio.is_ready"),
    ServiceSpec("listener", ("ovos-dinkum-listener",), "mycroft.voice.is_ready"),
)
# The local setup web (device/web). It is not on the bus, so it has no ready query: it counts as
# ready once the bus is up, and a taken port makes it wait rather than exit (device/web/serve.py).
SETUP_WEB = ServiceSpec("setup-web", ("voxfleet-setup-web",), None)


def services_for(settings: DeviceSettings) -> tuple[ServiceSpec, ...]:
    """What ``voxfleet device run`` supervises: the voice stack, plus the setup web unless settings turn
    it off (one-shot stacks, such as ``device listen``'s, keep to the voice stack)."""
    return SERVICES + (SETUP_WEB,) if settings.setup_web else SERVICES


def _bin(executable: str) -> str:
    return str(Path(sys.executable).parent / executable)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def bus_is_up(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 15) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 16384))
            return "\n".join(handle.read().decode("utf-8", "replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class ServiceState:
    spec: ServiceSpec
    process: subprocess.Popen | None = None
    state: str = "stopped"  # starting, ready, restarting, failed, stopped
    restarts: list[float] = field(default_factory=list)
    last_exit: int | None = None


class Supervisor:
    def __init__(self, paths: DevicePaths, settings: DeviceSettings,
                 services: tuple[ServiceSpec, ...] = SERVICES,
                 on_event: Callable[[str], None] | None = None,
                 overrides: dict | None = None) -> None:
        self.paths = paths
        self.settings = settings
        self.overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        self._restart_lock = threading.Lock()
        self.services = {spec.name: ServiceState(spec) for spec in services}
        self.on_event = on_event or (lambda text: None)
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None
        self._bus = None
        self._env: dict[str, str] = {}

    # -- start ------------------------------------------------------------------------------------

    def start(self, timeout: float = 180.0) -> None:
        """Bring every service up and wait until each says it is ready."""
        s = self.settings
        if port_in_use(s.bus_host, s.bus_port):
            raise StackError(
                f"port {s.bus_port} on {s.bus_host} is already taken (another OVOS messagebus or "
                f"program). Stop it, or choose another port with --bus-port."
            )
        write_config(s, self.paths)
        self._env = service_env(self.paths)
        self._env["VOXFLEET_DEVICE_NAME"] = s.name
        deadline = time.monotonic() + timeout
        try:
            for name, svc in self.services.items():
                self._spawn(svc)
                if name == "messagebus":
                    self._wait_for_bus(deadline)
            for svc in self.services.values():
                self._wait_ready(svc, deadline)
        except BaseException:
            self.stop()
            raise
        self._write_pidfile()
        self._monitor = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._monitor.start()

    def _spawn(self, svc: ServiceState) -> None:
        log_path = self.paths.logs / svc.spec.log_file
        if log_path.exists() and log_path.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(log_path, log_path.with_suffix(".log.1"))
        out = open(log_path, "ab")  # noqa: SIM115 - the child keeps it; we close our copy below
        try:
            svc.process = subprocess.Popen(
                svc.spec.argv, env=self._env, cwd=str(self.paths.root),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches the supervisor, which stops them in order
            )
        except FileNotFoundError as exc:
            raise StackError(
                f"{svc.spec.command[0]} is not installed in {Path(sys.executable).parent}; "
                f"install the device extra: pip install -e '.[device]'"
            ) from exc
        finally:
            out.close()
        svc.state = "starting"
        self.on_event(f"started {svc.spec.name} (pid {svc.process.pid})")

    def _died(self, svc: ServiceState) -> StackError:
        code = svc.process.poll() if svc.process else None
        log = tail(self.paths.logs / svc.spec.log_file)
        return StackError(
            f"{svc.spec.name} ({' '.join(svc.spec.command)}) exited with code {code} while starting. "
            f"Last lines of its log ({self.paths.logs}):\n{log}"
        )

    def _wait_for_bus(self, deadline: float) -> None:
        svc = self.services["messagebus"]
        while time.monotonic() < deadline:
            if svc.process and svc.process.poll() is not None:
                raise self._died(svc)
            if bus_is_up(self.settings.bus_host, self.settings.bus_port):
                svc.state = "ready"
                self._connect_bus()
                return
            time.sleep(0.1)
        raise StackError("the messagebus did not open its port in time")

    def _connect_bus(self) -> None:
        from ovos_bus_client import MessageBusClient

        self._bus = MessageBusClient(host=self.settings.bus_host, port=self.settings.bus_port)
        self._bus.on(RESTART_REQUEST, self._on_restart_request)
        self._bus.run_in_thread()
        self._bus.connected_event.wait(10)

    def _ask_ready(self, spec: ServiceSpec, timeout: float = 1.0) -> bool:
        from ovos_bus_client.message import Message

        if spec.ready_query is None:
            return bus_is_up(self.settings.bus_host, self.settings.bus_port)
        reply = self._bus.wait_for_response(Message(spec.ready_query), timeout=timeout)
        return bool(reply and reply.data.get("status"))

    def _wait_ready(self, svc: ServiceState, deadline: float) -> None:
        while time.monotonic() < deadline:
            if svc.process and svc.process.poll() is not None:
                raise self._died(svc)
            if self._ask_ready(svc.spec):
                svc.state = "ready"
                self.on_event(f"{svc.spec.name} ready")
                return
            time.sleep(0.25)
        raise StackError(
            f"{svc.spec.name} did not report ready within the start timeout. Last lines of its log:\n"
            + tail(self.paths.logs / svc.spec.log_file)
        )

    # -- watch ------------------------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            for svc in self.services.values():
                # A restart asked for on the bus holds this lock: its exits are not crashes.
                with self._restart_lock:
                    delay = self._note_exit(svc)
                if delay is None:
                    continue
                if self._stopping.wait(delay):
                    return
                with self._restart_lock:
                    if svc.state != "restarting":  # restarted on request meanwhile
                        continue
                    self._spawn(svc)
                threading.Thread(target=self._mark_ready_when_ready, args=(svc,), daemon=True).start()
            self._write_health()

    def _note_exit(self, svc: ServiceState) -> float | None:
        """Seconds to wait before restarting a service that exited; None when it runs (or gave up)."""
        if svc.state in ("failed", "stopped", "restarting") or svc.process is None:
            return None
        code = svc.process.poll()
        if code is None:
            return None
        svc.last_exit = code
        now = time.monotonic()
        svc.restarts = [t for t in svc.restarts if now - t < RESTART_WINDOW]
        if len(svc.restarts) >= MAX_RESTARTS:
            svc.state = "failed"
            self.on_event(f"{svc.spec.name} keeps crashing (exit {code}); giving up. See "
                          f"{self.paths.logs / svc.spec.log_file}")
            return None
        delay = min(30.0, 2.0 ** len(svc.restarts))
        svc.state = "restarting"
        self.on_event(f"{svc.spec.name} exited with code {code}; restarting in {delay:.0f}s")
        svc.restarts.append(now)
        return delay

    def _mark_ready_when_ready(self, svc: ServiceState) -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not self._stopping.is_set():
            if svc.process and svc.process.poll() is not None:
                return
            try:
                if self._ask_ready(svc.spec):
                    svc.state = "ready"
                    self.on_event(f"{svc.spec.name} ready again")
                    return
            except Exception:  # the bus itself may be restarting
                pass
            time.sleep(0.5)

    # -- restart on request --------------------------------------------------------------------------

    def _on_restart_request(self, message) -> None:
        names = [str(n) for n in message.data.get("services") or []]
        try:
            self.restart(names)
            reply = {"ok": True, "restarted": names}
        except (StackError, SettingsError) as exc:
            reply = {"ok": False, "restarted": [], "error": str(exc)}
        except Exception as exc:  # the agent must get an answer whatever happened
            reply = {"ok": False, "restarted": [], "error": f"{type(exc).__name__}: {exc}"}
        if self._bus is not None:
            self._bus.emit(message.response(reply))

    def restart(self, names: list[str], timeout: float = 180.0) -> None:
        """Re-render the configuration and restart only ``names`` (in stack order), waiting for each.

        The settings are read again first (a changed ``managed.json``, say), with this run's
        command-line overrides still on top; a setting that does not validate restarts nothing.
        """
        unknown = [n for n in names if n not in self.services or n == "messagebus"]
        if unknown:
            raise StackError(f"cannot restart {', '.join(unknown)}: not a restartable service "
                             f"({', '.join(n for n in self.services if n != 'messagebus')})")
        with self._restart_lock:
            self.settings = load_settings(self.paths.root, **self.overrides)
            write_config(self.settings, self.paths)
            deadline = time.monotonic() + timeout
            for name, svc in self.services.items():
                if name not in names:
                    continue
                svc.state = "stopped"  # the watcher leaves it alone: this exit is ours
                self._terminate(svc)
                self.on_event(f"restarting {name} for a configuration change")
                self._spawn(svc)
                self._wait_ready(svc, deadline)
            self._write_health()

    def _terminate(self, svc: ServiceState) -> None:
        proc = svc.process
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def health(self) -> dict[str, dict]:
        """Each service's state, pid, restarts in the last window and resident memory."""
        import psutil

        report = {}
        for name, svc in self.services.items():
            rss = None
            pid = svc.process.pid if svc.process and svc.process.poll() is None else None
            if pid:
                with contextlib.suppress(psutil.Error):
                    rss = round(psutil.Process(pid).memory_info().rss / 2**20, 1)
            report[name] = {"state": svc.state, "pid": pid, "restarts": len(svc.restarts),
                            "last_exit": svc.last_exit, "rss_mb": rss}
        return report

    def healthy(self) -> bool:
        return all(svc.state == "ready" for svc in self.services.values())

    def _write_health(self) -> None:
        write_atomic(self.paths.run / "health.json",
                     json.dumps({"updated": time.time(), "services": self.health()}))

    def _write_pidfile(self) -> None:
        write_atomic(self.paths.run / "supervisor.json", json.dumps({
            "pid": os.getpid(), "bus_host": self.settings.bus_host, "bus_port": self.settings.bus_port,
        }))
        self._write_health()

    # -- stop -------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop services in reverse order: SIGTERM, then SIGKILL after a grace period."""
        self._stopping.set()
        if self._bus is not None:
            with contextlib.suppress(Exception):
                self._bus.close()
            self._bus = None
        for svc in reversed(list(self.services.values())):
            proc = svc.process
            if proc is None or proc.poll() is not None:
                svc.state = "stopped"
                continue
            self._terminate(svc)
            svc.state = "stopped"
            self.on_event(f"stopped {svc.spec.name}")
        for name in ("supervisor.json",):
            (self.paths.run / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self._write_health()

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self) -> None:
        """Block until SIGINT/SIGTERM, then stop everything."""
        def _handler(signum, frame):  # noqa: ARG001
            self._stopping.set()

        signal.signal(signal.SIGINT, _handler)
        signal.signal(signal.SIGTERM, _handler)
        while not self._stopping.wait(0.5):
            pass
        self.stop()
