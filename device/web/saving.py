"""The one way the setup web changes a setting: validate, refuse cloud-managed fields, write, restart.

Precedence (DESIGN: settings.json < managed.json < command line): the cloud's desired config wins
for every field it sets. Rather than writing a local value the cloud would override anyway, a save
touching a managed field is refused with a message saying so, and nothing is written.

After writing ``settings.json`` atomically, only the services the changed fields affect are
restarted, by asking on the bus (``voxfleet.services.restart``, the same request the agent uses for
the cloud's config), with device.sync.desired's field → service map. Who answers depends on how the stack
runs: ``voxfleet device run``'s supervisor (which leaves ``run/supervisor.json`` with its bus), or on
a provisioned device the ``voxfleet-restarter`` unit (device/stack/restarter.py) on the bus that the
settings name: systemd units leave no supervisor record, so the settings are the only way to find it.

Read-merge-write of settings.json happens under one lock: the setup web is multi-threaded, and two
saves at once must not lose each other's fields.
"""

from __future__ import annotations

import json
import threading
from typing import NamedTuple

from device.files import write_atomic
from device.paths import DevicePaths
from device.settings import (
    SettingsError,
    build_settings,
    load_settings,
    local_settings,
    managed_settings,
    settings_path,
)
from device.stack.restarter import READY_QUERY as RESTARTER_READY_QUERY
from device.stack.supervisor import RESTART_REQUEST, bus_is_up
from device.sync.desired import AFFECTS, STACK_ORDER

SUPERVISOR = "supervisor"  # voxfleet device run: run/supervisor.json names the bus
RESTARTER = "restarter"  # systemd units: the settings name the bus, voxfleet-restarter answers
RESTARTER_READY_TIMEOUT = 5.0

# Fields the setup web saves that device.sync.desired does not list: who reads them.
EXTRA_AFFECTS: dict[str, tuple[str, ...]] = {
    "timezone": ("core",),  # the date and time skill
    "name": ("agent",),  # reported in the heartbeat
}
RESTART_TIMEOUT = 200.0
_SETTINGS_LOCK = threading.Lock()


class StackBus(NamedTuple):
    """The running stack's messagebus and who answers restart requests on it."""

    host: str
    port: int
    via: str  # SUPERVISOR or RESTARTER


def affected(fields: set[str]) -> list[str]:
    wanted = {svc for name in fields for svc in (*AFFECTS.get(name, ()), *EXTRA_AFFECTS.get(name, ()))}
    return [name for name in STACK_ORDER if name in wanted]


def _write(paths: DevicePaths, stored: dict) -> None:
    """settings.json, atomically and keeping its mode (device/files.py)."""
    write_atomic(settings_path(paths.root), json.dumps(stored, indent=2))


def _supervisor_bus(paths: DevicePaths) -> tuple[str, int] | None:
    try:
        info = json.loads((paths.run / "supervisor.json").read_text(encoding="utf-8"))
        return str(info["bus_host"]), int(info["bus_port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def stack_running(paths: DevicePaths) -> StackBus | None:
    """The running stack's bus, or None when no bus answers.

    First the dev supervisor's record (it may run on a bus given on its command line); otherwise
    the bus the settings name, which is where the systemd units and ``voxfleet-restarter`` are.
    """
    found = _supervisor_bus(paths)
    if found is not None and bus_is_up(*found):
        return StackBus(found[0], found[1], SUPERVISOR)
    try:
        settings = load_settings(paths.root)
    except SettingsError:
        return None
    if bus_is_up(settings.bus_host, settings.bus_port):
        return StackBus(settings.bus_host, settings.bus_port, RESTARTER)
    return None


def request_restart(bus: StackBus | tuple[str, int], services: list[str],
                    timeout: float = RESTART_TIMEOUT) -> None:
    """Ask the supervisor or restarter to restart ``services``; RuntimeError with its reason on failure.

    On a bus found from the settings, the restarter is asked first whether it listens (a few
    seconds), so a missing ``voxfleet-restarter`` is said at once instead of after the full timeout.
    """
    from ovos_bus_client import MessageBusClient
    from ovos_bus_client.message import Message

    via = bus.via if isinstance(bus, StackBus) else SUPERVISOR
    answerer = "the supervisor" if via == SUPERVISOR else "voxfleet-restarter"
    client = MessageBusClient(host=bus[0], port=bus[1])
    client.run_in_thread()
    try:
        if not client.connected_event.wait(10):
            raise RuntimeError("cannot connect to the device's messagebus")
        if via == RESTARTER:
            ready = client.wait_for_response(Message(RESTARTER_READY_QUERY), timeout=RESTARTER_READY_TIMEOUT)
            if ready is None or not ready.data.get("status"):
                raise RuntimeError("nothing on the device's messagebus answers restart requests "
                                   "(is the voxfleet-restarter service running?)")
        reply = client.wait_for_response(Message(RESTART_REQUEST, {"services": services}), timeout=timeout)
    finally:
        client.close()
    if reply is None:
        raise RuntimeError(f"{answerer} did not answer within {timeout:.0f} s")
    if not reply.data.get("ok"):
        raise RuntimeError(str(reply.data.get("error") or "the supervisor gave no reason"))


def save_fields(paths: DevicePaths, **fields: object) -> str:
    """Save ``fields`` to settings.json; returns what happened in words for the page.

    Raises SettingsError (nothing written) for a field the cloud manages or a value that does not
    validate.
    """
    root = paths.root
    with _SETTINGS_LOCK:  # read, merge and write as one step: a concurrent save must not be lost
        managed = managed_settings(root)[1]
        clash = sorted(set(fields) & set(managed))
        if clash:
            raise SettingsError(f"{', '.join(clash)} {'is' if len(clash) == 1 else 'are'} managed by the "
                                "cloud; change it in the cloud portal (nothing was saved)")
        stored = local_settings(root)
        candidate = {**stored, **fields}
        build_settings({**candidate, **managed}, "the form")  # raises SettingsError, nothing written
        before = load_settings(root)
        _write(paths, candidate)
        after = load_settings(root)
    changed = {name for name in fields if getattr(before, name) != getattr(after, name)}
    if not changed:
        return "Saved (nothing changed)."
    services = affected(changed)
    if not services:
        return "Saved."
    bus = stack_running(paths)
    if bus is None:
        return "Saved. The voice services are not running; it will apply on next start."
    try:
        request_restart(bus, services)
    except RuntimeError as exc:
        return f"Saved, but restarting {', '.join(services)} failed: {exc}"
    return f"Saved; restarted {', '.join(services)}."
