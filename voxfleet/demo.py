"""``voxfleet demo``: a cloud and a device on one machine, paired, talked to, and read back.

What a person would do by hand, in order, with the same commands: ``voxfleet cloud serve`` on
embedded defaults, ``voxfleet cloud admin create-tenant`` and ``create-api-key``, ``voxfleet device
pair`` (claimed through the REST API with that key), ``voxfleet device demo`` (the voice stack
answering the spoken sample commands), then the sessions as the cloud's API returns them. The
demo's folders are kept, so a second run reuses the tenant, the key and the pairing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
import requests

VOXFLEET = str(Path(sys.executable).parent / "voxfleet")


def _port(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]


def _say(text: str) -> None:
    click.echo(f"{time.strftime('%H:%M:%S')} {text}", err=True)


def _run(args: list[str], env: dict) -> str:
    done = subprocess.run([VOXFLEET, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise click.ClickException(f"voxfleet {' '.join(args[:3])} failed:\n{done.stderr[-2000:]}")
    return done.stdout


class Api:
    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key

    def __call__(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.url}/api/v1{path}", timeout=10,
                                headers={"Authorization": f"Bearer {self.key}"}, **kwargs)


def _wait_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.time() + 90
    while time.time() < deadline:
        if process.poll() is not None:
            raise click.ClickException(f"the cloud stopped while starting; its log ({log}):\n"
                                       + log.read_text()[-2000:])
        try:
            if requests.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise click.ClickException(f"the cloud did not answer on {url}; see {log}")


def _tenant_key(cloud_dir: Path, env: dict) -> str:
    """The demo tenant's write key, made once and kept beside the cloud's data (0600)."""
    keep = cloud_dir / "demo-api-key"
    if keep.exists():
        return keep.read_text().strip()
    _run(["cloud", "admin", "create-tenant", "Demo Hotels", "--owner-email", "owner@demo.invalid"], env)
    key = _run(["cloud", "admin", "create-api-key", "--tenant", "demo-hotels", "--scope", "write",
                "--name", "demo"], env).strip()
    fd = os.open(keep, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return key


def _pair(device_dir: Path, cloud_url: str, api: Api, env: dict) -> dict:
    record = device_dir / "cloud.json"
    if record.exists():
        paired = json.loads(record.read_text())
        if paired.get("cloud") == cloud_url and any(
                d["device_key"] == paired["device_id"] for d in api("GET", "/devices").json()["items"]):
            return paired
    pair = subprocess.Popen([VOXFLEET, "device", "pair", "--cloud", cloud_url, "--data-dir", str(device_dir)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    code = pair.stdout.readline().strip()
    project = api("GET", "/projects").json()["items"][0]["id"]
    claimed = api("POST", "/pairing/claim", json={"code": code, "project_id": project, "name": "Demo device"})
    if claimed.status_code != 201:
        pair.kill()
        raise click.ClickException(f"claiming the pairing code failed: {claimed.text}")
    _, err = pair.communicate(timeout=120)
    if pair.returncode != 0:
        raise click.ClickException(f"pairing failed: {err[-1000:]}")
    _say(f"device paired as {claimed.json()['device_key']} (code {code}, claimed through the API)")
    return json.loads(record.read_text())


def _sessions_table(api: Api, device_key: str, since: str) -> list[dict]:
    devices = {d["device_key"]: d for d in api("GET", "/devices").json()["items"]}
    device = devices[device_key]
    query = {"device_id": device["id"], "from": since, "limit": 200}
    return api("GET", "/sessions", params=query).json()["items"]


def _short(skill_id: str | None) -> str:
    """ovos-skill-date-time.openvoiceos -> date-time"""
    name = (skill_id or "?").split(".")[0]
    for prefix in ("ovos-skill-", "voxfleet-skill-"):
        name = name.removeprefix(prefix)
    return name


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("var/demo"),
              show_default=True, help="Where the demo's cloud and device keep their data.")
@click.option("--keep-running", is_flag=True, help="Leave the cloud running afterwards, until Ctrl-C.")
def demo(data_dir: Path, keep_running: bool) -> None:
    """A cloud and a device on this machine: pair, speak the sample commands, read the sessions back."""
    data_dir = data_dir.resolve()
    cloud_dir, device_dir = data_dir / "cloud", data_dir / "device"
    cloud_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "VOXFLEET_DATA_DIR": str(cloud_dir)}
    http_port, mqtt_port = _port(8080), _port(1884)
    url = f"http://127.0.0.1:{http_port}"
    log = cloud_dir / "serve.log"
    _say(f"starting the cloud on {url} (embedded broker on port {mqtt_port}; log {log})")
    with open(log, "ab") as out:
        serve = subprocess.Popen([VOXFLEET, "cloud", "serve", "--http-port", str(http_port), "--mqtt-port",
                                  str(mqtt_port)], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(url, serve, log)
        api = Api(url, _tenant_key(cloud_dir, env))
        paired = _pair(device_dir, url, api, {**os.environ})
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        _say("starting the voice stack and speaking the sample commands to it")
        spoken = subprocess.run([VOXFLEET, "device", "demo", "--json", "--data-dir", str(device_dir)],
                                stdout=subprocess.PIPE, text=True)
        if spoken.returncode != 0:
            raise click.ClickException("the device demo failed (its messages are above)")
        heard = [json.loads(line) for line in spoken.stdout.splitlines() if line.strip()]
        wanted = {s["session_id"] for s in heard}
        deadline = time.time() + 60
        rows: list[dict] = []
        while time.time() < deadline:
            rows = _sessions_table(api, paired["device_id"], since)
            if wanted <= {r["session_key"] for r in rows}:
                break
            time.sleep(1)
        mine = [r for r in rows if r["session_key"] in wanted]
        click.echo(f"\n{len(mine)} of {len(heard)} voice sessions are in the cloud "
                   f"(GET {url}/api/v1/sessions):\n")
        click.echo(f"{'transcript':40} {'skill: intent':40} {'end':14} answer")
        for row in sorted(mine, key=lambda r: r["started_at"]):
            intent = f"{_short(row['intent_skill'])}: {row['intent_name']}" if row["intent_name"] else "-"
            click.echo(f"{(row['transcript'] or '-')[:39]:40} {intent[:39]:40} {row['end_state'] or '-':14} "
                       f"{(row['answer'] or '')[:60]}")
        key_file = cloud_dir / "demo-api-key"
        click.echo(f"""
Where to look:
  cloud API     {url}/api/v1   (OpenAPI: {url}/api/v1/openapi.json)
  API key       {key_file}
                curl -H "Authorization: Bearer $(cat {key_file})" {url}/api/v1/sessions
  cloud data    {cloud_dir}   (SQLite, embedded broker accounts, logs in serve.log)
  device data   {device_dir}   (settings, outbox store.db, answers/, logs/)
""")
        if len(mine) < len(heard):
            raise click.ClickException("some sessions did not reach the cloud; see the logs above")
        if keep_running:
            _say("the cloud keeps running; Ctrl-C stops it")
            serve.wait()
    except KeyboardInterrupt:
        pass
    finally:
        serve.terminate()
        try:
            serve.wait(20)
        except subprocess.TimeoutExpired:
            serve.kill()
