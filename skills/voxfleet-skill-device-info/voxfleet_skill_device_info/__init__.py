"""Answers "what is your name", "what is your IP address" and "are you paired / synced".

The skill runs inside ovos-core, apart from the VoxFleet code, so it reads the device's state
from files in the data folder (``VOXFLEET_DATA_DIR``), which the supervisor sets:
``settings.json`` (the device's name; ``VOXFLEET_DEVICE_NAME`` when none was saved),
``cloud.json`` (written at pairing: ``{"cloud": URL, ...}``) and ``run/sync.json`` (written by
the sync agent: ``{"outbox_depth": N, "last_sync": TS}``).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from ovos_bus_client.message import Message
from ovos_utils import classproperty
from ovos_utils.process_utils import RuntimeRequirements
from ovos_workshop.decorators import intent_handler
from ovos_workshop.skills import OVOSSkill


def data_dir() -> Path | None:
    value = os.environ.get("VOXFLEET_DATA_DIR")
    return Path(value) if value else None


def read_json(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def lan_address() -> str | None:
    """The address other machines on the LAN reach this device at.

    Connecting a UDP socket sends nothing; it only asks the kernel which interface would route
    to that (documentation-range) address.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))
            address = sock.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("0.") else address


def spoken_address(address: str) -> str:
    return " dot ".join(address.split("."))


class DeviceInfoSkill(OVOSSkill):
    @classproperty
    def runtime_requirements(self):
        return RuntimeRequirements(internet_before_load=False, network_before_load=False,
                                   gui_before_load=False, requires_internet=False,
                                   requires_network=False, requires_gui=False,
                                   no_internet_fallback=True, no_network_fallback=True,
                                   no_gui_fallback=True)

    @intent_handler("device.name.intent")
    def handle_name(self, message: Message) -> None:
        base = data_dir()
        name = (read_json(base / "settings.json" if base else None).get("name")
                or os.environ.get("VOXFLEET_DEVICE_NAME") or socket.gethostname())
        self.speak_dialog("name", {"name": name})

    @intent_handler("device.address.intent")
    def handle_address(self, message: Message) -> None:
        address = lan_address()
        if address is None:
            self.speak_dialog("address.none")
        else:
            self.speak_dialog("address", {"address": spoken_address(address)})

    @intent_handler("device.cloud.intent")
    def handle_cloud(self, message: Message) -> None:
        base = data_dir()
        cloud = read_json(base / "cloud.json" if base else None)
        if not cloud.get("cloud"):
            self.speak_dialog("cloud.unpaired")
            return
        host = urlparse(cloud["cloud"]).hostname or cloud["cloud"]
        depth = int(read_json(base / "run" / "sync.json").get("outbox_depth") or 0)
        if depth:
            self.speak_dialog("cloud.pending", {"cloud": host, "count": depth})
        else:
            self.speak_dialog("cloud.synced", {"cloud": host})
