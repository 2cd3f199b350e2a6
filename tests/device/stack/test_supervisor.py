"""The supervisor: clear errors when the stack cannot start, restarts after a crash, clean stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import psutil
import pytest

from device.paths import DevicePaths
from device.settings import DeviceSettings
from device.stack.supervisor import SERVICES, ServiceSpec, StackError, Supervisor
from tests.conftest import VOXFLEET, free_port

BUS, VOLUME = SERVICES[0], SERVICES[1]


def small_stack(tmp_path, services, port=None) -> Supervisor:
    paths = DevicePaths.at(tmp_path).create()
    return Supervisor(paths, DeviceSettings(bus_port=port or free_port()), services=services)


def test_port_already_taken_is_named(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StackError, match=f"port {port} .* already taken.*--bus-port"):
            small_stack(tmp_path, (BUS,), port=port).start(timeout=30)


def test_service_that_will_not_start_reports_its_log(tmp_path):
    broken = ServiceSpec("broken", ("-m", "device.no_such_module"), "voxfleet.broken.is_ready")
    supervisor = small_stack(tmp_path, (BUS, broken))
    with pytest.raises(StackError, match=r"broken .* exited with code 1(.|\n)*No module named"):
        supervisor.start(timeout=60)
    assert all(s.state == "stopped" for s in supervisor.services.values())  # nothing left running


def test_crashed_service_is_restarted_and_all_stop_cleanly(tmp_path):
    supervisor = small_stack(tmp_path, (BUS, VOLUME))
    supervisor.start(timeout=60)
    try:
        victim = supervisor.services["volume"].process.pid
        os.kill(victim, signal.SIGKILL)
        deadline = time.time() + 60
        while time.time() < deadline:
            health = supervisor.health()["volume"]
            if health["restarts"] == 1 and health["state"] == "ready" and health["pid"] != victim:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"volume was not restarted: {supervisor.health()}")
        assert health["last_exit"] == -signal.SIGKILL
        pids = [svc.process.pid for svc in supervisor.services.values()]
    finally:
        supervisor.stop()
    assert not [pid for pid in pids if psutil.pid_exists(pid) and
                psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert all(h["state"] == "stopped" for h in supervisor.health().values())


@pytest.mark.voice
def test_device_run_stops_everything_on_sigterm(tmp_path):
    """`voxfleet device run` as a systemd unit or a terminal runs it: SIGTERM takes all of it down."""
    port = free_port()
    proc = subprocess.Popen([VOXFLEET, "device", "run", "--data-dir", str(tmp_path), "--bus-port", str(port)],
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        lines = []
        while time.time() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if "voice stack ready" in line:
                break
            assert proc.poll() is None, "".join(lines)
        else:
            pytest.fail("stack did not become ready:\n" + "".join(lines))
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 7  # messagebus, volume, agent, core, audio, listener, setup-web
        status = subprocess.run([VOXFLEET, "device", "status", "--data-dir", str(tmp_path), "--json"],
                                capture_output=True, text=True)
        assert status.returncode == 0, status.stdout
        report = json.loads(status.stdout)
        assert report["running"] and set(report["services"]) == {"messagebus", "volume", "agent", "core",
                                                                  "audio", "listener", "setup-web"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        gone, alive = psutil.wait_procs(children, timeout=15)
        assert not alive, alive
        after = subprocess.run([VOXFLEET, "device", "status", "--data-dir", str(tmp_path)],
                               capture_output=True, text=True)
        assert after.returncode == 1 and "no voice stack is running" in after.stdout
    finally:
        if proc.poll() is None:
            proc.kill()


def test_health_reports_memory_of_each_service(tmp_path):
    supervisor = small_stack(tmp_path, (BUS, VOLUME))
    supervisor.start(timeout=60)
    try:
        health = supervisor.health()
        assert set(health) == {"messagebus", "volume"}
        assert all(h["state"] == "ready" and h["rss_mb"] > 5 for h in health.values())
        assert supervisor.healthy()
        assert (supervisor.paths.run / "supervisor.json").exists()
    finally:
        supervisor.stop()
    assert not (supervisor.paths.run / "supervisor.json").exists()

