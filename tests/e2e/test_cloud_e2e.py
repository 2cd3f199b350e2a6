"""End to end, as people run it: a cloud started with `voxfleet cloud serve`, a tenant and a key from
`voxfleet cloud admin`, the voice device paired with `voxfleet device pair`, commands spoken to it,
and the sessions read back through the REST API; a command sent through the API comes back with
its result. Twice: on the embedded defaults (SQLite, embedded broker, ingest in-process) and on
production parts (PostgreSQL, Mosquitto with Dynamic Security, two `voxfleet cloud ingest` workers).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from device.voice import samples
from tests.conftest import VOXFLEET, free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.voice

# Questions that leave no state behind: the voice stack is shared with tests that count timers.
COMMANDS = ["What time is it?", "What day is it today?"]


@dataclass
class Cloud:
    url: str
    env: dict
    key: str = ""
    project_id: str = ""
    processes: list[subprocess.Popen] = field(default_factory=list)

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.url}/api/v1{path}", timeout=10,
                                headers={"Authorization": f"Bearer {self.key}"}, **kwargs)

    def cli(self, *args: str) -> str:
        done = subprocess.run([VOXFLEET, "cloud", *args], env=self.env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout


def healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/api/v1/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(params=["embedded", "mosquitto-postgresql"])
def cloud(request, tmp_path):
    env = {**os.environ, "VOXFLEET_DATA_DIR": str(tmp_path / "cloud")}
    cleanup = []
    if request.param == "mosquitto-postgresql":
        from cloud.broker.mosquitto import MosquittoProcess
        from tests.cloud.conftest import PostgresDatabases, _admin_url

        databases = PostgresDatabases(_admin_url())
        cleanup.append(databases.drop_all)
        admin_password = secrets.token_urlsafe(18)
        broker = MosquittoProcess(tmp_path / "mosquitto", "voxfleet-admin", admin_password).start()
        cleanup.append(broker.stop)
        env.update(VOXFLEET_DATABASE_URL=databases.create(), VOXFLEET_BROKER_URL=broker.url,
                   VOXFLEET_BROKER_ADMIN_PASSWORD=admin_password,
                   VOXFLEET_BROKER_SERVICE_PASSWORD=secrets.token_urlsafe(18))
    http_port = free_port()
    cloud = Cloud(f"http://127.0.0.1:{http_port}", env)
    try:
        if request.param != "embedded":
            cloud.cli("db", "upgrade")
        log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed with the process
        cloud.processes.append(subprocess.Popen(
            [VOXFLEET, "cloud", "serve", "--http-port", str(http_port), "--mqtt-port", str(free_port())],
            env=env, stdout=log, stderr=subprocess.STDOUT))
        wait_until(lambda: healthy(cloud.url), 60, f"the cloud on {cloud.url}; see {tmp_path / 'serve.log'}")
        if request.param != "embedded":
            ingest_log = open(tmp_path / "ingest.log", "w")  # noqa: SIM115
            cloud.processes.append(subprocess.Popen([VOXFLEET, "cloud", "ingest", "--workers", "2"], env=env,
                                                    stdout=ingest_log, stderr=subprocess.STDOUT))
        cloud.cli("admin", "create-tenant", "Acme Hotels", "--owner-email", "owner@acme.test")
        key = cloud.cli("admin", "create-api-key", "--tenant", "acme-hotels", "--scope", "write")
        cloud.key = key.strip()
        cloud.project_id = cloud.call("GET", "/projects").json()["items"][0]["id"]
        yield cloud
    finally:
        for process in cloud.processes:
            process.terminate()
        for process in cloud.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        for step in reversed(cleanup):
            step()


def sync_state(root: Path) -> dict:
    try:
        return json.loads((root / "run" / "sync.json").read_text())
    except (OSError, ValueError):
        return {}


def test_paired_device_sessions_reach_the_api(voice_stack, piper_voice, cloud, tmp_path):
    stack = voice_stack
    pairing_file = stack.paths.root / "cloud.json"
    original = pairing_file.read_text()
    wavs = [samples.synthesize(piper_voice, text, tmp_path / "wav").path for text in COMMANDS]
    try:
        pair = subprocess.Popen([VOXFLEET, "device", "pair", "--cloud", cloud.url, "--data-dir",
                                 str(stack.paths.root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        code = pair.stdout.readline().strip()
        claimed = cloud.call("POST", "/pairing/claim", json={"code": code, "project_id": cloud.project_id,
                                                             "name": "Lobby"})
        assert claimed.status_code == 201, claimed.text
        out, err = pair.communicate(timeout=60)
        assert pair.returncode == 0, err
        device = claimed.json()
        broker_url = json.loads(pairing_file.read_text())["broker_url"]
        wait_until(lambda: sync_state(stack.paths.root).get("broker_url") == broker_url
                   and sync_state(stack.paths.root).get("connected"), 60, "the agent to connect to the cloud")
        wait_until(lambda: cloud.call("GET", f"/devices/{device['id']}").json()["presence"] == "online",
                   30, "the device to show online")

        spoken = stack.listen(wavs)
        assert len(spoken) == len(COMMANDS)
        wanted = {s["session_id"]: s for s in spoken}

        def arrived():
            items = cloud.call("GET", "/sessions", params={"device_id": device["id"]}).json()["items"]
            found = {i["session_key"]: i for i in items if i["session_key"] in wanted}
            complete = len(found) == len(wanted) and all(i["end_state"] for i in found.values())
            return found if complete else None

        stored = wait_until(arrived, 60, "the sessions in the API")
        for session_id, heard in wanted.items():
            row = stored[session_id]
            assert row["transcript"] == heard["transcript"]
            assert f"{row['intent_skill']}:{row['intent_name']}" == heard["intent"]
            assert row["answer"] == heard["answer"] and row["end_state"] == "answered"
        detail = cloud.call("GET", f"/sessions/{stored[spoken[0]['session_id']]['id']}").json()
        assert [e["type"] for e in detail["events"]][0] == "session.started"

        # A command through the API reaches the device and its one result comes back.
        sent = cloud.call("POST", f"/devices/{device['id']}/commands", json={"action": "report_now"})
        assert sent.status_code == 202, sent.text
        command_id = sent.json()["command_id"]
        result = wait_until(lambda: (lambda c: c if c["status"] in ("ok", "error", "rejected") else None)(
            cloud.call("GET", f"/devices/{device['id']}/commands/{command_id}").json()), 60, "the result")
        assert result["status"] == "ok", result
        assert cloud.call("GET", f"/devices/{device['id']}").json()["last_heartbeat_at"]
    finally:
        pairing_file.write_text(original)  # back to this machine's Mosquitto for the other tests
        wait_until(lambda: sync_state(stack.paths.root).get("connected")
                   and sync_state(stack.paths.root).get("broker_url") == json.loads(original)["broker_url"],
                   60, "the agent to reconnect to the original broker")
