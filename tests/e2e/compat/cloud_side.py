"""A cloud of one release, started as an operator starts one and then used only through its REST API.

``voxfleet cloud serve`` on the embedded defaults (SQLite, its own MQTT broker, ingest in-process) on
free ports; a tenant and a write key from that release's ``voxfleet cloud admin`` commands.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.conftest import free_port
from tests.e2e.compat.install import Code
from tests.waiting import wait_until


@dataclass
class Cloud:
    code: Code
    url: str
    env: dict[str, str]
    process: subprocess.Popen
    log: Path
    key: str = ""
    project_id: str = ""

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.url}/api/v1{path}", timeout=10,
                                headers={"Authorization": f"Bearer {self.key}"}, **kwargs)

    def cli(self, *args: str) -> str:
        done = subprocess.run(self.code.command("cloud", *args), env=self.env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, f"voxfleet cloud {' '.join(args)} ({self.code.label}): {done.stderr}"
        return done.stdout

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"the {self.code.label} cloud exited ({self.process.returncode}):\n{tail}")
        try:
            return requests.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False


@contextmanager
def running_cloud(code: Code, folder: Path) -> Iterator[Cloud]:
    """A cloud of ``code`` with its data in ``folder``, a tenant and an API key; stopped on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {**code.env, "VOXFLEET_DATA_DIR": str(folder / "data")}
    http_port = free_port()
    log = folder / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen(code.command("cloud", "serve", "--http-port", str(http_port),
                                                "--mqtt-port", str(free_port())),
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    cloud = Cloud(code, f"http://127.0.0.1:{http_port}", env, process, log)
    try:
        wait_until(cloud.healthy, 120, f"the {code.label} cloud on {cloud.url} (log: {log})")
        cloud.cli("admin", "create-tenant", "Acme Hotels", "--owner-email", "owner@acme.test")
        key = cloud.cli("admin", "create-api-key", "--tenant", "acme-hotels", "--scope", "write")
        cloud.key = key.strip()
        projects = cloud.call("GET", "/projects")
        assert projects.status_code == 200, projects.text
        cloud.project_id = projects.json()["items"][0]["id"]
        yield cloud
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
