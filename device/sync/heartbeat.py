"""What a device says about itself every N seconds: the cloud's view of its health."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import psutil

from protocol import messages

_VERSIONED = ("voxfleet", "ovos-core", "ovos-dinkum-listener", "ovos-audio", "faster-whisper", "openwakeword")


def temperature_c() -> float | None:
    """The board's CPU temperature, where it has a sensor (a Pi, a Jetson); None elsewhere."""
    try:
        sensors = psutil.sensors_temperatures()
    except (AttributeError, OSError):
        return None
    for name in ("cpu_thermal", "coretemp", "k10temp", "thermal-fan-est", "soc_thermal"):
        if sensors.get(name):
            return round(float(sensors[name][0].current), 1)
    readings = [t.current for entries in sensors.values() for t in entries if t.current]
    return round(float(readings[0]), 1) if readings else None


def versions() -> dict[str, str]:
    found = {}
    for name in _VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def service_states(data_dir: Path) -> dict[str, str]:
    """From the supervisor's run/health.json; "unknown" when it is stale (the supervisor is gone)."""
    try:
        health = json.loads((data_dir / "run" / "health.json").read_text())
    except (OSError, ValueError):
        return {}
    stale = time.time() - float(health.get("updated", 0)) > 30
    return {name: "unknown" if stale else info.get("state", "unknown")
            for name, info in health.get("services", {}).items()}


def build(data_dir: Path, store, outbox_full: bool = False,
          unknown_fields_total: int | None = None) -> messages.Heartbeat:
    disk = psutil.disk_usage(str(data_dir))
    return messages.Heartbeat(
        ts=datetime.now(UTC),
        uptime_s=round(time.time() - psutil.boot_time(), 1),
        cpu_percent=psutil.cpu_percent(interval=None),
        memory_percent=psutil.virtual_memory().percent,
        disk_percent=disk.percent,
        temperature_c=temperature_c(),
        outbox_depth=store.depth(),
        oldest_queued_age_s=store.oldest_age(),
        outbox_dropped_total=store.dropped_total(),
        outbox_full=outbox_full,
        versions=versions(),
        services=service_states(data_dir),
        unknown_fields_total=unknown_fields_total,
    )
