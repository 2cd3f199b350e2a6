"""``voxfleet demo``: what a person would do by hand, in order, with the same commands.

``voxfleet cloud serve`` on embedded defaults (left running in the background afterwards, see
cloud.py), ``voxfleet cloud admin create-tenant``, ``create-operator`` and ``create-api-key`` (see
signins.py), ``voxfleet device pair`` (claimed through the REST API with that key), ``voxfleet device
demo`` (the voice stack answering the spoken sample commands), then the sessions as the cloud's API
returns them, and where to see them in the portal. The demo's folder is kept, so a second run reuses
the cloud's ports, the accounts, the key and the pairing.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import click
import requests

from voxfleet.demo import cloud, signins
from voxfleet.demo.shell import VOXFLEET, say, typed


class Api:
    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key

    def __call__(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.url}/api/v1{path}", timeout=10,
                                headers={"Authorization": f"Bearer {self.key}"}, **kwargs)


def _pair(device_dir: Path, cloud_url: str, mqtt_port: int, api: Api, env: dict) -> dict:
    """The device's pairing with this cloud: kept from an earlier run while it still holds, else made."""
    record = device_dir / "cloud.json"
    if record.exists():
        paired = json.loads(record.read_text())
        same_cloud = (paired.get("cloud") == cloud_url
                      and paired.get("broker_url", "").endswith(f":{mqtt_port}"))
        if same_cloud and any(d["device_key"] == paired["device_id"]
                              for d in api("GET", "/devices").json()["items"]):
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
    say(f"device paired as {claimed.json()['device_key']} (code {code}, claimed through the API)")
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


def _speak(device_dir: Path) -> list[dict]:
    say("starting the voice stack and speaking the sample commands to it")
    spoken = subprocess.run([VOXFLEET, "device", "demo", "--json", "--data-dir", str(device_dir)],
                            stdout=subprocess.PIPE, text=True)
    if spoken.returncode != 0:
        raise click.ClickException("the device demo failed (its messages are above)")
    return [json.loads(line) for line in spoken.stdout.splitlines() if line.strip()]


def _wait_for_sessions(api: Api, device_key: str, since: str, wanted: set[str]) -> list[dict]:
    deadline = time.monotonic() + 60
    rows: list[dict] = []
    while time.monotonic() < deadline:
        rows = _sessions_table(api, device_key, since)
        if wanted <= {r["session_key"] for r in rows}:
            break
        time.sleep(1)
    return [r for r in rows if r["session_key"] in wanted]


def _print_sessions(url: str, mine: list[dict], heard: int) -> None:
    click.echo(f"\n{len(mine)} of {heard} voice sessions are in the cloud "
               f"(GET {url}/api/v1/sessions):\n")
    click.echo(f"{'transcript':40} {'skill: intent':40} {'end':14} answer")
    for row in sorted(mine, key=lambda r: r["started_at"]):
        intent = f"{_short(row['intent_skill'])}: {row['intent_name']}" if row["intent_name"] else "-"
        click.echo(f"{(row['transcript'] or '-')[:39]:40} {intent[:39]:40} {row['end_state'] or '-':14} "
                   f"{(row['answer'] or '')[:60]}")


def _print_portal(url: str, people: signins.SignIns, kept: Path, show: bool) -> None:
    def password(secret: str) -> str:
        return f"password {secret}" if show else f"password in {typed(kept)}"

    click.echo(f"""
The portal: {url}/login
  operator      {people.operator_email:24} {password(people.operator_password)}
                every tenant, device, invoice and the audit log ({url}/operator)
  tenant owner  {people.owner_email:24} {password(people.owner_password)}
                {signins.TENANT_NAME}: these sessions ({url}/tenant/sessions), the device, team, keys""")
    if show:
        click.echo(f"  The passwords are shown this once and kept in {typed(kept)} (readable by you only).")


def _print_where(url: str, cloud_dir: Path, device_dir: Path) -> None:
    key_file = typed(cloud_dir / signins.KEY_FILE)
    click.echo(f"""
Where to look:
  cloud API     {url}/api/v1   (OpenAPI: {url}/api/v1/openapi.json)
  API key       {key_file}
                curl -H "Authorization: Bearer $(cat {key_file})" {url}/api/v1/sessions
  cloud data    {typed(cloud_dir)}   (SQLite, embedded broker accounts, log in serve.log)
  device data   {typed(device_dir)}   (settings, outbox store.db, answers/, logs/)
""")


def _stop_command(data_dir: Path) -> str:
    return f"{typed(Path(VOXFLEET))} demo --stop --data-dir {typed(data_dir)}"


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("var/demo"),
              show_default=True, help="Where the demo's cloud and device keep their data.")
@click.option("--stop", "stop_only", is_flag=True,
              help="Stop the demo's cloud, left running by an earlier run, and exit.")
def demo(data_dir: Path, stop_only: bool) -> None:
    """A cloud and a device on this machine: pair, speak the sample commands, read the sessions back,
    and leave the cloud running with its portal (`--stop` stops it)."""
    data_dir = data_dir.resolve()
    cloud_dir, device_dir = data_dir / "cloud", data_dir / "device"
    if stop_only:
        pid = cloud.stop(cloud_dir)
        say(f"stopped the demo's cloud (pid {pid})" if pid else f"no demo cloud is running for {data_dir}")
        return
    people = signins.prepare(data_dir, cloud_dir)
    cloud_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "VOXFLEET_DATA_DIR": str(cloud_dir)}
    running = cloud.start(cloud_dir, env)
    url = running.url
    say(f"{'started' if running.started else 'using the running'} cloud on {url} (pid {running.pid}, "
        f"embedded broker on port {running.mqtt_port}; log {running.log})")
    finished = False
    try:
        api = Api(url, signins.ensure_accounts(data_dir, people, env))
        paired = _pair(device_dir, url, running.mqtt_port, api, {**os.environ})
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        heard = _speak(device_dir)
        mine = _wait_for_sessions(api, paired["device_id"], since, {s["session_id"] for s in heard})
        _print_sessions(url, mine, len(heard))
        _print_portal(url, people, data_dir / signins.FILE, show=not people.shown)
        if not people.shown:
            signins.mark_shown(data_dir, people)
        _print_where(url, cloud_dir, device_dir)
        if len(mine) < len(heard):
            raise click.ClickException("some sessions did not reach the cloud; see the logs above")
        finished = True
    finally:
        if not finished and running.started:
            cloud.stop(cloud_dir)
            say("stopped the cloud it had started")
    click.echo(f"The cloud keeps running in the background (pid {running.pid}). Stop it with:\n"
               f"  {_stop_command(data_dir)}")
