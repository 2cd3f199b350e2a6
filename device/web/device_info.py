"""What the status and history pages show, read from the files the running services keep.

Nothing here talks to a service: the supervisor writes ``run/health.json``, the agent
``run/sync.json`` and the store ``store.db``; reading them works whether the stack runs or not.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import psutil

from device import heartbeat, models
from device.listen import running_stack
from device.paths import DevicePaths

OVOS_PACKAGES = ("ovos-core", "ovos-dinkum-listener", "ovos-audio", "ovos-messagebus", "ovos-plugin-manager",
                 "ovos-tts-plugin-piper", "ovos-stt-plugin-fasterwhisper", "faster-whisper", "openwakeword")
HEALTH_STALE_S = 30.0


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def services(paths: DevicePaths) -> dict:
    """{"running": bool, "updated": epoch or None, "services": {name: {state, pid, restarts, rss_mb}}}."""
    record = running_stack(paths)
    health = _read_json(paths.run / "health.json") or {}
    updated = health.get("updated")
    listed = health.get("services") or {}
    stale = not record or updated is None or time.time() - float(updated) > HEALTH_STALE_S
    if stale:
        listed = {name: {**info, "state": "down" if not record else "unknown", "pid": None}
                  for name, info in listed.items()}
    return {"running": bool(record), "updated": updated, "services": listed}


def sync_state(paths: DevicePaths) -> dict | None:
    return _read_json(paths.run / "sync.json")


def pairing(paths: DevicePaths) -> dict | None:
    """The pairing record without its secret (cloud.json holds the broker password)."""
    record = _read_json(paths.root / "cloud.json")
    if record is None:
        return None
    shown = {k: record.get(k) for k in ("cloud", "tenant", "project", "device_name", "device_id",
                                        "broker_url")}
    try:
        shown["paired_at"] = datetime.fromisoformat(str(record.get("paired_at"))).timestamp()
    except ValueError:
        shown["paired_at"] = None
    return shown


def versions() -> dict[str, str]:
    found = dict(heartbeat.versions())
    for name in OVOS_PACKAGES:
        try:
            found.setdefault(name, version(name))
        except PackageNotFoundError:
            continue
    return dict(sorted(found.items()))


def model_packages() -> dict[str, str]:
    """Which bundled models this device has: wake words, STT models, TTS voices."""
    return {"wake words": ", ".join(models.WAKE_WORDS), "speech recognition": ", ".join(models.STT_MODELS),
            "voices": ", ".join(models.TTS_VOICES)}


@dataclass(frozen=True)
class System:
    uptime_s: float
    disk_total_gb: float
    disk_free_gb: float
    disk_percent: float
    temperature_c: float | None
    memory_percent: float


def system(paths: DevicePaths) -> System:
    disk = psutil.disk_usage(str(paths.root))
    return System(uptime_s=time.time() - psutil.boot_time(), disk_total_gb=disk.total / 2**30,
                  disk_free_gb=disk.free / 2**30, disk_percent=disk.percent,
                  temperature_c=heartbeat.temperature_c(), memory_percent=psutil.virtual_memory().percent)


def duration(seconds: float) -> str:
    """``3 d 4 h``, ``5 h 12 min``, ``42 s``: an uptime a person reads at a glance."""
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def history(paths: DevicePaths, page: int, per_page: int = 20) -> tuple[list[dict], int]:
    """One page of recent voice sessions (newest first) and the total count.

    Read through a read-only SQLite connection rather than device.store.Store, which opens for
    writing (it makes its disk reserve and updates counters): a page view must change nothing.
    """
    db_path = paths.root / "store.db"
    if not db_path.exists():
        return [], 0
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    conn.row_factory = sqlite3.Row
    try:
        total = conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
        rows = conn.execute(
            "SELECT session_id, started_at, wake_word, transcript, intent, answer, end_state, timings "
            "FROM sessions ORDER BY started_at DESC LIMIT ? OFFSET ?", [per_page, (page - 1) * per_page])
        sessions = []
        for row in rows:
            item = dict(row)
            try:
                item["timings_ms"] = json.loads(item.pop("timings") or "{}")
            except ValueError:
                item["timings_ms"] = {}
            sessions.append(item)
    except sqlite3.OperationalError:  # a store from before the sessions table: nothing to show yet
        return [], 0
    finally:
        conn.close()
    return sessions, total
