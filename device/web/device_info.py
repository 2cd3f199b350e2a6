"""What the status and history pages show, read from the files the running services keep.

Nothing here talks to a service: the supervisor writes ``run/health.json``, the agent
``run/sync.json`` and the store ``store.db``; reading them works whether the stack runs or not.
On a provisioned device the services are systemd units and no supervisor writes ``health.json``:
whether the stack runs is then whether its bus answers (device.web.saving.stack_running), and each
service's state is what ``systemctl show`` says of its unit.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import psutil

from device import models
from device.paths import DevicePaths
from device.stack.supervisor import SERVICES, SETUP_WEB
from device.sync import heartbeat
from device.web.saving import SUPERVISOR, stack_running

OVOS_PACKAGES = ("ovos-core", "ovos-dinkum-listener", "ovos-audio", "ovos-messagebus", "ovos-plugin-manager",
                 "ovos-tts-plugin-piper", "ovos-stt-plugin-fasterwhisper", "faster-whisper", "openwakeword")
HEALTH_STALE_S = 30.0
MAX_PAGE = 100_000  # far past any store's end; keeps the SQL OFFSET a small integer
UNIT_PROPERTIES = "Id,ActiveState,MainPID,NRestarts,MemoryCurrent"
UNIT_STATES = {"active": "ready", "activating": "starting", "reloading": "restarting", "failed": "failed",
               "inactive": "stopped", "deactivating": "stopping"}


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def services(paths: DevicePaths) -> dict:
    """{"running": bool, "updated": epoch or None, "services": {name: {state, pid, restarts, rss_mb}}}."""
    bus = stack_running(paths)
    if bus is not None and bus.via != SUPERVISOR:
        return {"running": True, "updated": time.time(), "services": unit_states()}
    health = _read_json(paths.run / "health.json") or {}
    updated = health.get("updated")
    listed = health.get("services") or {}
    stale = not bus or updated is None or time.time() - float(updated) > HEALTH_STALE_S
    if stale:
        listed = {name: {**info, "state": "down" if not bus else "unknown", "pid": None}
                  for name, info in listed.items()}
    return {"running": bool(bus), "updated": updated, "services": listed}


def parse_unit_states(output: str) -> dict[str, dict]:
    """``systemctl show -p Id,ActiveState,MainPID,NRestarts,MemoryCurrent voxfleet-*.service`` per service.

    systemctl prints one ``Key=value`` block per unit, blocks split by an empty line.
    """
    found: dict[str, dict] = {}
    for block in output.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        unit = props.get("Id", "")
        if not unit.startswith("voxfleet-") or not unit.endswith(".service"):
            continue
        name = unit.removeprefix("voxfleet-").removesuffix(".service")
        memory = props.get("MemoryCurrent", "")
        pid = props.get("MainPID", "0")
        active = props.get("ActiveState", "")
        found[name] = {"state": UNIT_STATES.get(active, active or "unknown"),
                       "pid": int(pid) if pid.isdigit() and pid != "0" else None,
                       "restarts": int(props["NRestarts"]) if props.get("NRestarts", "").isdigit() else 0,
                       "rss_mb": int(memory) / 2**20 if memory.isdigit() else None}
    return found


def unit_states() -> dict[str, dict]:
    """The voxfleet units' states from systemd; empty where systemctl is missing or does not answer."""
    if shutil.which("systemctl") is None:
        return {}
    names = [spec.name for spec in (*SERVICES, SETUP_WEB)] + ["restarter"]
    units = [f"voxfleet-{name}.service" for name in names]
    try:
        done = subprocess.run(["systemctl", "show", f"--property={UNIT_PROPERTIES}", *units],
                              capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse_unit_states(done.stdout) if done.returncode == 0 else {}


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

    Read through a read-only SQLite connection rather than device.sync.store.Store, which opens for
    writing (it makes its disk reserve and updates counters): a page view must change nothing.
    """
    page = min(max(1, page), MAX_PAGE)
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
