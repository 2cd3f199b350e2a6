"""The demo's cloud, ``voxfleet cloud serve`` in the background: started by ``voxfleet demo``, left
running when the demo ends so the portal can be looked at, found and reused by the next run, and
stopped by ``voxfleet demo --stop``.

``CLOUD_DIR/demo-cloud.json`` keeps its ports across runs (the paired device stores the cloud's and
the broker's addresses, so a restarted cloud comes back on the same ones when they are free) and,
while it runs, its process id. A process is taken for the demo's cloud only if it is alive and its
command line is ``voxfleet cloud serve`` on this data folder, so a reused process id is never
mistaken for it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import click
import psutil
import requests

from device.files import write_atomic
from voxfleet.demo.shell import VOXFLEET

STATE = "demo-cloud.json"
HTTP_PORT, MQTT_PORT = 8080, 1884
STOP_WAIT_S = 20


@dataclass
class DemoCloud:
    url: str
    mqtt_port: int
    pid: int
    log: Path
    started: bool  # by this run: a run that fails stops what it started, and only that


def _free(preferred: int) -> int:
    """``preferred`` if a server could listen there now, else a free port. SO_REUSEADDR as the servers
    use it: connections the last cloud closed (TIME_WAIT) do not make its port look taken."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]


def _read_state(cloud_dir: Path) -> dict:
    path = cloud_dir / STATE
    if not path.exists():
        return {}
    try:
        state = json.loads(path.read_text())
        if not isinstance(state, dict):
            raise ValueError("not a JSON object")
        return state
    except ValueError as exc:
        raise click.ClickException(f"{path} is not readable ({exc}); it only records the demo cloud's "
                                   "ports and process: delete it and run the demo again") from None


def _write_state(cloud_dir: Path, **state: object) -> None:
    write_atomic(cloud_dir / STATE, json.dumps(state, indent=2) + "\n")


def _process(cloud_dir: Path, pid: object) -> psutil.Process | None:
    """The demo's cloud process, if ``pid`` is still it."""
    if not isinstance(pid, int):
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        command = process.cmdline()
    except psutil.Error:
        return None
    ours = "cloud" in command and "serve" in command and str(cloud_dir) in command
    return process if ours else None


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/api/v1/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def running(cloud_dir: Path) -> DemoCloud | None:
    """The demo's cloud for this folder, if one is running and answers."""
    state = _read_state(cloud_dir)
    process = _process(cloud_dir, state.get("pid"))
    url = f"http://127.0.0.1:{state.get('http_port')}"
    if process is None or not _healthy(url):
        return None
    return DemoCloud(url, int(state["mqtt_port"]), process.pid, cloud_dir / "serve.log", started=False)


def _wait_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise click.ClickException(f"the cloud stopped while starting; its log ({log}):\n"
                                       + log.read_text()[-2000:])
        if _healthy(url):
            return
        time.sleep(0.5)
    raise click.ClickException(f"the cloud did not answer on {url}; see {log}")


def start(cloud_dir: Path, env: dict[str, str]) -> DemoCloud:
    """The running demo cloud, or a new one in the background (its own session, so a Ctrl-C in the
    demo's terminal does not reach it; the demo decides what to stop)."""
    found = running(cloud_dir)
    if found is not None:
        return found
    state = _read_state(cloud_dir)
    http_port = _free(int(state.get("http_port") or HTTP_PORT))
    mqtt_port = _free(int(state.get("mqtt_port") or MQTT_PORT))
    log = cloud_dir / "serve.log"
    with open(log, "ab") as out:
        process = subprocess.Popen([VOXFLEET, "cloud", "serve", "--data-dir", str(cloud_dir), "--http-port",
                                    str(http_port), "--mqtt-port", str(mqtt_port)], env=env,
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    _write_state(cloud_dir, http_port=http_port, mqtt_port=mqtt_port, pid=process.pid)
    url = f"http://127.0.0.1:{http_port}"
    try:
        _wait_healthy(url, process, log)
    except BaseException:
        stop(cloud_dir)
        raise
    return DemoCloud(url, mqtt_port, process.pid, log, started=True)


def stop(cloud_dir: Path) -> int | None:
    """Stop the demo's cloud for this folder (SIGTERM, then SIGKILL after 20 s); its pid, or None
    when none was running. The ports stay recorded for the next start."""
    state = _read_state(cloud_dir)
    process = _process(cloud_dir, state.get("pid"))
    if process is not None:
        process.terminate()
        try:
            process.wait(STOP_WAIT_S)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait(STOP_WAIT_S)
    if "pid" in state:
        _write_state(cloud_dir, **{k: v for k, v in state.items() if k != "pid"})
    return process.pid if process is not None else None
