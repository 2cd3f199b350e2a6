"""``voxfleet cloud webhooks run`` as production runs it: its own process, on SQLite and PostgreSQL
(as the app role, so row-level security applies), sending to a real HTTP receiver, stopped by SIGTERM.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from click.testing import CliRunner

from cloud.cli import cloud
from cloud.db import WebhookDelivery
from tests.cloud.api.test_fixtures import Api, api_fixture  # noqa: F401
from tests.cloud.webhooks.receiver import WAIT, Received, Receiver, queue_event, receiver_fixture  # noqa: F401
from tests.cloud.webhooks.test_webhooks import _verify
from tests.conftest import VOXFLEET

START = 60.0      # a process's start on a busy 2-core machine: imports, database checks
STOPPING = "webhooks: stopping after the delivery in hand"


class Worker:
    """One ``voxfleet cloud webhooks run`` process; its stderr lines are kept and can be waited for."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen([VOXFLEET, "cloud", "webhooks", "run"], env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = START) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if text in self.lines.get(timeout=0.2):
                    return
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
        raise AssertionError(f"the worker never said {text!r}; it said:\n{''.join(self.stderr)}")

    def terminate(self) -> int:
        """SIGTERM, then its exit status (it must come within WAIT of the attempt in hand ending)."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=3 * WAIT)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT)


def arrival(requests: queue.Queue[Received], running: list[Worker]) -> Received:
    """The next request the receiver gets; a worker that exits meanwhile fails the test with its stderr."""
    deadline = time.monotonic() + START
    while time.monotonic() < deadline:
        try:
            return requests.get(timeout=0.2)
        except queue.Empty:
            for worker in running:
                if worker.process.poll() is not None:
                    raise AssertionError(f"the worker exited with {worker.process.returncode}:\n"
                                         f"{''.join(worker.stderr)}") from None
    raise AssertionError("no delivery reached the receiver")


@contextmanager
def workers(env: dict[str, str], count: int = 1) -> Iterator[list[Worker]]:
    started = [Worker(env) for _ in range(count)]
    try:
        yield started
    finally:
        for worker in started:
            worker.kill()


def environment(database_url: str, data_dir: Path) -> dict[str, str]:
    # The receiver listens on 127.0.0.1, which production refuses (SSRF): allowed here on purpose.
    return {**os.environ, "VOXFLEET_DATA_DIR": str(data_dir), "VOXFLEET_DATABASE_URL": database_url,
            "VOXFLEET_WEBHOOKS_ALLOW_PRIVATE": "true"}


def wait_until_settled(api: Api, count: int) -> list[WebhookDelivery]:
    """The deliveries once ``count`` of them are no longer pending (the worker records the answer
    just after the receiver has seen it)."""
    deadline = time.monotonic() + 3 * WAIT
    while True:
        rows = api.rows(WebhookDelivery)
        if sum(row.status != "pending" for row in rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_the_command_delivers_a_queued_webhook_and_stops_on_sigterm(api: Api, receiver: Receiver, database,
                                                                     tmp_path: Path) -> None:
    t = api.tenant()
    hook = api.post("/webhooks", t.write_key, json={"url": receiver.url, "events": ["session.completed"]})
    key = queue_event(api.sessions, t.id, "session.completed", {"session_id": "s-1", "transcript": "hi"})
    with workers(environment(database.url, tmp_path / "cloud")) as running:
        got = arrival(receiver.arrived, running)
        [worker] = running
        [row] = wait_until_settled(api, 1)
        assert worker.terminate() == 0, "".join(worker.stderr)
    _verify(hook.get_json()["secret"], got)
    assert got.headers["X-VoxFleet-Delivery"] == str(key)
    assert got.headers["X-VoxFleet-Event"] == "session.completed"
    assert json.loads(got.body)["data"] == {"session_id": "s-1", "transcript": "hi"}
    assert (row.status, row.attempts, row.response_code) == ("delivered", 1, 200)
    assert receiver.keys() == [str(key)]
    stderr = "".join(worker.stderr)
    assert STOPPING in stderr and "Traceback" not in stderr
    assert "whsec_" not in stderr and hook.get_json()["secret"] not in stderr


def test_sigterm_finishes_the_delivery_in_hand_and_claims_no_more(api: Api, receiver: Receiver, database,
                                                                  tmp_path: Path) -> None:
    t = api.tenant()
    api.post("/webhooks", t.write_key, json={"url": receiver.url, "events": ["device.offline"]})
    keys = {queue_event(api.sessions, t.id, "device.offline", {"device_id": f"d-{n}"}) for n in range(2)}
    receiver.hold = 1
    with workers(environment(database.url, tmp_path / "cloud")) as running:
        first = arrival(receiver.received, running)  # the worker now waits for this answer
        [worker] = running
        worker.process.send_signal(signal.SIGTERM)
        worker.wait_for(STOPPING)  # it has taken the signal while the attempt is still in hand
        receiver.released.set()
        assert worker.process.wait(timeout=3 * WAIT) == 0, "".join(worker.stderr)
    sent = first.headers["X-VoxFleet-Delivery"]
    assert receiver.keys() == [sent] and sent in {str(k) for k in keys}
    rows = {str(row.delivery_key): row for row in api.rows(WebhookDelivery)}
    assert (rows[sent].status, rows[sent].attempts, rows[sent].response_code) == ("delivered", 1, 200)
    [left] = [row for key, row in rows.items() if key != sent]
    assert (left.status, left.attempts, left.last_attempt_at) == ("pending", 0, None)


def test_two_workers_at_once_never_deliver_one_delivery_twice(api: Api, receiver: Receiver, database,
                                                              tmp_path: Path) -> None:
    """The receiver holds the first request until a second arrives: the worker that sent the first waits
    for its answer, so the second comes from the other worker, and both are then working through the
    same due deliveries at the same time."""
    t = api.tenant()
    api.post("/webhooks", t.write_key, json={"url": receiver.url, "events": ["device.online"]})
    keys = {str(queue_event(api.sessions, t.id, "device.online", {"device_id": f"d-{n}"})) for n in range(30)}
    receiver.hold = 1
    with workers(environment(database.url, tmp_path / "cloud"), count=2) as both:
        arrival(receiver.received, both)
        arrival(receiver.received, both)
        receiver.released.set()
        rows = wait_until_settled(api, len(keys))
        for worker in both:
            assert worker.terminate() == 0, "".join(worker.stderr)
    sent = receiver.keys()  # complete: both have exited, so nothing is still on its way
    assert sorted(sent) == sorted(keys), "a delivery went out twice, or not at all"
    assert {(row.status, row.attempts, row.response_code) for row in rows} == {("delivered", 1, 200)}


def test_once_sends_what_is_due_and_exits(api: Api, receiver: Receiver, database, tmp_path: Path) -> None:
    t = api.tenant()
    api.post("/webhooks", t.write_key, json={"url": receiver.url, "events": ["device.online"]})
    keys = {str(queue_event(api.sessions, t.id, "device.online", {"device_id": f"d-{n}"})) for n in range(3)}
    receiver.answers.append(503)  # the first attempt fails: retried later, not within this run
    env = {"VOXFLEET_DATA_DIR": str(tmp_path / "cloud"), "VOXFLEET_DATABASE_URL": database.url,
           "VOXFLEET_WEBHOOKS_ALLOW_PRIVATE": "true"}
    result = CliRunner().invoke(cloud, ["webhooks", "run", "--once"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "3 delivery attempt(s) made"
    assert sorted(receiver.keys()) == sorted(keys)
    rows = api.rows(WebhookDelivery)
    assert sorted((row.status, row.response_code) for row in rows) == [
        ("delivered", 200), ("delivered", 200), ("pending", 503)]
    again = CliRunner().invoke(cloud, ["webhooks", "run", "--once"], env=env, catch_exceptions=False)
    assert again.stdout.strip() == "0 delivery attempt(s) made" and len(receiver.keys()) == 3


def test_an_unmigrated_database_is_a_clear_error(tmp_path: Path) -> None:
    env = {"VOXFLEET_DATA_DIR": str(tmp_path / "cloud"),
           "VOXFLEET_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    result = CliRunner().invoke(cloud, ["webhooks", "run"], env=env)
    assert result.exit_code == 1
    assert "is not up to date: run `voxfleet cloud db upgrade" in result.stderr
