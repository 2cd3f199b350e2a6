"""The one way the setup web changes a setting: validate, refuse cloud-managed fields, write, restart.

Precedence (DESIGN: settings.json < managed.json < command line): the cloud's desired config wins
for every field it sets. Rather than writing a local value the cloud would override anyway, a save
touching a managed field is refused with a message saying so, and nothing is written.

After writing ``settings.json`` atomically, only the services the changed fields affect are
restarted, by asking the supervisor on the bus (``voxfleet.services.restart``, the same request the
agent uses for the cloud's config), with device.desired's field → service map.
"""

from __future__ import annotations

import json
import os

from device.desired import AFFECTS, STACK_ORDER
from device.paths import DevicePaths
from device.settings import (
    SettingsError,
    build_settings,
    load_settings,
    local_settings,
    managed_settings,
    settings_path,
)
from device.supervisor import RESTART_REQUEST, bus_is_up

# Fields the setup web saves that device.desired does not list: who reads them.
EXTRA_AFFECTS: dict[str, tuple[str, ...]] = {
    "timezone": ("core",),  # the date and time skill
    "name": ("agent",),  # reported in the heartbeat
}
RESTART_TIMEOUT = 200.0


def affected(fields: set[str]) -> list[str]:
    wanted = {svc for name in fields for svc in (*AFFECTS.get(name, ()), *EXTRA_AFFECTS.get(name, ()))}
    return [name for name in STACK_ORDER if name in wanted]


def _write(paths: DevicePaths, stored: dict) -> None:
    target = settings_path(paths.root)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(stored, indent=2), encoding="utf-8")
    os.replace(tmp, target)


def stack_running(paths: DevicePaths) -> tuple[str, int] | None:
    """The bus of the running supervisor (from run/supervisor.json), or None when the stack is down."""
    try:
        info = json.loads((paths.run / "supervisor.json").read_text(encoding="utf-8"))
        host, port = str(info["bus_host"]), int(info["bus_port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (host, port) if bus_is_up(host, port) else None


def request_restart(bus: tuple[str, int], services: list[str], timeout: float = RESTART_TIMEOUT) -> None:
    """Ask the supervisor to restart ``services``; raises RuntimeError with its reason when it fails."""
    from ovos_bus_client import MessageBusClient
    from ovos_bus_client.message import Message

    client = MessageBusClient(host=bus[0], port=bus[1])
    client.run_in_thread()
    try:
        if not client.connected_event.wait(10):
            raise RuntimeError("cannot connect to the device's messagebus")
        reply = client.wait_for_response(Message(RESTART_REQUEST, {"services": services}), timeout=timeout)
    finally:
        client.close()
    if reply is None:
        raise RuntimeError(f"the supervisor did not answer within {timeout:.0f} s")
    if not reply.data.get("ok"):
        raise RuntimeError(str(reply.data.get("error") or "the supervisor gave no reason"))


def save_fields(paths: DevicePaths, **fields: object) -> str:
    """Save ``fields`` to settings.json; returns what happened in words for the page.

    Raises SettingsError (nothing written) for a field the cloud manages or a value that does not
    validate.
    """
    root = paths.root
    managed = managed_settings(root)[1]
    clash = sorted(set(fields) & set(managed))
    if clash:
        raise SettingsError(f"{', '.join(clash)} {'is' if len(clash) == 1 else 'are'} managed by the cloud; "
                            "change it in the cloud portal (nothing was saved)")
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
