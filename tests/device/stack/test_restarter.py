"""The restart answerer of systemd devices (device/stack/restarter.py), on a real messagebus.

systemd cannot run as init in this container, so ``systemctl`` is a stand-in script that records what
it was asked (and can fail like a unit that does not start); everything else is real: the OVOS
messagebus, the volume service that must report ready again, the request the agent and the setup page
send, and the mycroft.conf rendered from the cloud's managed fields.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from device.paths import DevicePaths
from device.settings import DeviceSettings, load_settings, save_managed, save_settings
from device.stack.config import service_env, write_config
from device.stack.restarter import READY_QUERY
from device.stack.supervisor import RESTART_REQUEST, SERVICES, bus_is_up
from tests.conftest import free_port

BUS, VOLUME = SERVICES[0], SERVICES[1]

SYSTEMCTL = """#!/bin/sh
# systemctl stand-in: records the call; fails when the unit is listed in FAIL_UNITS.
echo "$@" >> "{log}"
case " $(cat "{fail}" 2>/dev/null) " in
  *" $2 "*) echo "Job for $2 failed because the control process exited" >&2; exit 1;;
esac
"""


@pytest.fixture
def device(tmp_path):
    paths = DevicePaths.at(tmp_path / "data").create()
    port = free_port()
    save_settings(paths.root, DeviceSettings(bus_port=port))
    write_config(load_settings(paths.root), paths)
    env = service_env(paths)
    logs = tmp_path / "logs.txt"
    systemctl = tmp_path / "systemctl"
    systemctl.write_text(SYSTEMCTL.format(log=tmp_path / "systemctl.log", fail=tmp_path / "fail"))
    systemctl.chmod(0o755)
    procs = []
    with logs.open("ab") as out:
        procs.append(subprocess.Popen(BUS.argv, env=env, stdout=out, stderr=out))
        deadline = time.monotonic() + 60
        while not bus_is_up("127.0.0.1", port):
            assert time.monotonic() < deadline, logs.read_text()
            time.sleep(0.2)
        procs.append(subprocess.Popen(VOLUME.argv, env=env, stdout=out, stderr=out))
        restarter = [sys.executable, "-m", "device.stack.restarter", "--data-dir", str(paths.root),
                     "--systemctl", str(systemctl)]
        procs.append(subprocess.Popen(restarter, env=env, stdout=out, stderr=out))
    from ovos_bus_client import MessageBusClient

    bus = MessageBusClient(host="127.0.0.1", port=port)
    bus.run_in_thread()
    bus.connected_event.wait(10)
    from ovos_bus_client.message import Message

    deadline = time.monotonic() + 60
    while not (bus.wait_for_response(Message(READY_QUERY), timeout=1.0) or None):
        assert time.monotonic() < deadline, "the restarter never came up: " + logs.read_text()[-2000:]
    try:
        yield paths, bus, tmp_path
    finally:
        bus.close()
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(30)


def ask(bus, services, timeout=120):
    from ovos_bus_client.message import Message

    reply = bus.wait_for_response(Message(RESTART_REQUEST, {"services": services}), timeout=timeout)
    assert reply is not None, "no answer to the restart request"
    return reply


def calls(tmp_path) -> list[str]:
    log = tmp_path / "systemctl.log"
    return log.read_text().splitlines() if log.exists() else []


def test_restart_renders_the_clouds_config_then_restarts_units_in_stack_order(device):
    paths, bus, tmp_path = device
    save_managed(paths.root, 3, {"wake_word": "alexa"})           # what the agent does before asking

    # The volume service is really running here and must report ready again; the setup web has no
    # ready query. Asked in the wrong order, restarted in stack order.
    reply = ask(bus, ["setup-web", "volume"])

    assert reply is not None and reply.data == {"ok": True, "restarted": ["volume", "setup-web"]}
    assert calls(tmp_path) == ["restart voxfleet-volume.service", "restart voxfleet-setup-web.service"]
    conf = json.loads(paths.mycroft_conf.read_text())
    assert "alexa" in json.dumps(conf["listener"]), "mycroft.conf was not rendered from managed.json"


def test_a_unit_that_fails_to_restart_is_an_answer_with_the_reason(device):
    paths, bus, tmp_path = device
    (tmp_path / "fail").write_text("voxfleet-core.service")

    reply = ask(bus, ["core", "audio"])

    assert reply.data["ok"] is False
    assert "systemctl restart voxfleet-core.service failed" in reply.data["error"]
    assert calls(tmp_path) == ["restart voxfleet-core.service"]   # audio was not touched after it


@pytest.mark.parametrize("services, message", [
    (["messagebus"], "not a restartable service"),
    (["sshd"], "not a restartable service"),
])
def test_requests_for_other_units_are_refused_and_run_nothing(device, services, message):
    paths, bus, tmp_path = device
    reply = ask(bus, services)
    assert reply.data["ok"] is False and message in reply.data["error"]
    assert calls(tmp_path) == []


def test_invalid_settings_restart_nothing(device):
    paths, bus, tmp_path = device
    (paths.root / "settings.json").write_text('{"wake_threshold": 7}')
    reply = ask(bus, ["listener"])
    assert reply.data["ok"] is False and "wake_threshold" in reply.data["error"]
    assert calls(tmp_path) == []
