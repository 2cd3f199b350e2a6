"""A real webhook endpoint for the tests (no tests here): an HTTP server on 127.0.0.1 that records each
request, answers with the status codes queued for it (then 200), and can hold requests unanswered, so
a test can act while a worker has a delivery in hand. And ``queue_event``: an event queued for delivery
the way ingest and billing queue one.

Import ``receiver_fixture`` into a test module to use the ``receiver`` fixture there.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from cloud.scoping import TenantScope
from cloud.webhooks.enqueue import enqueue

WAIT = 10.0


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """``hold``: how many of the next requests wait, unanswered, until ``released`` is set."""

    url: str
    answers: list[int] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    arrived: queue.Queue[Received] = field(default_factory=queue.Queue)    # once answered
    received: queue.Queue[Received] = field(default_factory=queue.Queue)   # on arrival, before any hold
    hold: int = 0
    released: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def keys(self) -> list[str]:
        """The X-VoxFleet-Delivery header of every request so far, in arrival order."""
        with self.lock:
            return [got.headers["X-VoxFleet-Delivery"] for got in self.requests]


@pytest.fixture(name="receiver")
def receiver_fixture() -> Iterator[Receiver]:
    made = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            got = Received({k: v for k, v in self.headers.items()}, body)
            with made.lock:
                made.requests.append(got)
                held = made.hold > 0
                made.hold -= held
                status = made.answers.pop(0) if made.answers else 200
            made.received.put(got)
            if held:
                made.released.wait(6 * WAIT)
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(f"answered {status}".encode())
            made.arrived.put(got)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    made.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/voxfleet?src=test"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield made
    made.released.set()
    server.shutdown()
    server.server_close()


def queue_event(sessions: Callable[[], Any], tenant_id: uuid.UUID, event: str, data: dict) -> uuid.UUID:
    """One pending delivery per matching webhook, committed in the tenant's own scope; returns its key."""
    key = uuid.uuid4()
    with sessions() as db:
        scope = TenantScope(db, tenant_id)
        assert enqueue(scope, event, data, key) >= 1
        scope.commit()
    return key
