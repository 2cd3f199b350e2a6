"""The device's output volume on the messagebus (``mycroft.volume.*``), as OVOS skills expect.

OVOS normally gets this from a PHAL plugin (ovos-PHAL-plugin-alsa), which needs a sound card and
a running PHAL service. A VoxFleet device answers those messages from this small service instead:
on a device with ALSA it drives the mixer with ``amixer``; headless, the level is kept in
``run/volume.json`` and the headless player applies it to every WAV it keeps, so "turn it down"
has an effect you can measure either way.

Run as a supervised service: ``voxfleet-volume``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

from device.files import write_atomic

DEFAULT_PERCENT = 0.7


def volume_file(data_dir: str | Path) -> Path:
    return Path(data_dir) / "run" / "volume.json"


def read_volume(data_dir: str | Path) -> tuple[float, bool]:
    """(level 0..1, muted) as last set; the default when never set or unreadable."""
    try:
        state = json.loads(volume_file(data_dir).read_text(encoding="utf-8"))
        return min(1.0, max(0.0, float(state["percent"]))), bool(state.get("muted", False))
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_PERCENT, False


def write_volume(data_dir: str | Path, percent: float, muted: bool) -> None:
    """Keep the level for the headless player, which reads it for every WAV (replaced whole)."""
    write_atomic(volume_file(data_dir), json.dumps({"percent": round(percent, 3), "muted": muted}))


class VolumeService:
    def __init__(self, bus, data_dir: str | Path, use_alsa: bool | None = None) -> None:
        self.bus = bus
        self.data_dir = Path(data_dir)
        self.use_alsa = shutil.which("amixer") is not None if use_alsa is None else use_alsa
        self.percent, self.muted = read_volume(self.data_dir)
        self._lock = threading.Lock()
        for event, handler in {
            "mycroft.volume.get": self.handle_get,
            "mycroft.volume.set": self.handle_set,
            "mycroft.volume.increase": self.handle_increase,
            "mycroft.volume.decrease": self.handle_decrease,
            "mycroft.volume.mute": self.handle_mute,
            "mycroft.volume.unmute": self.handle_unmute,
            "mycroft.volume.mute.toggle": self.handle_toggle,
        }.items():
            bus.on(event, handler)

    def _apply(self, percent: float | None = None, muted: bool | None = None) -> None:
        with self._lock:
            if percent is not None:
                self.percent = min(1.0, max(0.0, float(percent)))
            if muted is not None:
                self.muted = muted
            write_volume(self.data_dir, self.percent, self.muted)
            if self.use_alsa:
                level = 0 if self.muted else round(self.percent * 100)
                subprocess.run(["amixer", "-q", "sset", "Master", f"{level}%"], check=False,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @staticmethod
    def _percent(message) -> float | None:
        try:
            return float(message.data.get("percent"))
        except (TypeError, ValueError):
            return None

    def handle_get(self, message) -> None:
        self.bus.emit(message.response({"percent": self.percent, "muted": self.muted}))

    def handle_set(self, message) -> None:
        value = self._percent(message)
        if value is not None:
            self._apply(percent=value, muted=False)

    def handle_increase(self, message) -> None:
        self._apply(percent=self.percent + (self._percent(message) or 0.1), muted=False)

    def handle_decrease(self, message) -> None:
        self._apply(percent=self.percent - (self._percent(message) or 0.1))

    def handle_mute(self, message) -> None:
        self._apply(muted=True)

    def handle_unmute(self, message) -> None:
        self._apply(muted=False)

    def handle_toggle(self, message) -> None:
        self._apply(muted=not self.muted)


def main() -> None:
    from ovos_bus_client import MessageBusClient
    from ovos_utils.process_utils import ProcessStatus

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    bus = MessageBusClient()  # host and port from the device's mycroft.conf
    bus.run_in_thread()
    bus.connected_event.wait()
    VolumeService(bus, os.environ["VOXFLEET_DATA_DIR"])
    status = ProcessStatus("volume", bus, namespace="voxfleet")
    status.set_started()
    status.set_ready()
    stop.wait()
    bus.close()


if __name__ == "__main__":
    main()
