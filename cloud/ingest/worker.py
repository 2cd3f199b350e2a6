"""One ingest worker: an MQTT connection as the cloud's service account, and a thread that stores.

paho's network thread validates what arrives and queues it; the store thread takes whatever has
queued up (a cycle, bounded by ``max_messages``), writes it in one transaction, commits, and only then
acknowledges each message (paho ``manual_ack``), in arrival order. A worker that dies before its
commit acknowledged nothing, so the broker delivers those messages again to the same persistent
session (``clean_session=False``, stable client id) when the worker comes back; storage is
idempotent, so that redelivery stores nothing twice.

Failures are split in two. A database that is down, locked or misconfigured is the system's
fault: the cycle is retried with backoff and nothing is acknowledged (nothing lost). A message the
database refuses (a value out of range for its column) is the message's fault: the cycle is
retried one message at a time, and the refused one is rejected for good, counted and logged.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import sessionmaker

from cloud.broker.runtime import broker_url, service_client
from cloud.config import CloudConfig
from cloud.db import utcnow
from cloud.db.session import make_engine
from cloud.ingest.stats import WorkerStats
from cloud.ingest.store import write_cycle
from cloud.ingest.validate import KINDS, Accepted, Inbound, Reason, Rejected, check
from cloud.scoping import ScopeError, session_factory
from protocol.topics import upstream_filter

log = logging.getLogger("cloud.ingest")

SHARE_GROUP = "ingest"
MAX_BACKOFF_S = 10.0


def message_specific(exc: BaseException) -> bool:
    """Whether the database refused this cycle because of what a message holds (vs. being down)."""
    if isinstance(exc, sa_exc.IntegrityError | sa_exc.DataError | ScopeError):
        return True
    if isinstance(exc, sa_exc.StatementError):
        exc = exc.orig or exc
    return isinstance(exc, ValueError | OverflowError)


# PostgreSQL's "try again" errors: a deadlock it broke by aborting this transaction, a serialization
# failure. Nothing is wrong with the database or the messages; the cycle is retried at once.
RETRY_AT_ONCE = frozenset({"40P01", "40001"})


def transient(exc: BaseException) -> bool:
    """Whether the database aborted the cycle only because of another transaction (retry it now)."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in RETRY_AT_ONCE


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


class IngestWorker:
    """Use ``start()`` / ``stop()``; ``stats`` holds the live counters."""

    def __init__(self, config: CloudConfig, worker_id: str, *, sessions: sessionmaker | None = None,
                 shared: bool | None = None, max_messages: int = 200, linger_s: float = 0.005,
                 stats_interval_s: float = 5.0) -> None:
        self.config = config
        self.worker_id = worker_id
        # The embedded broker (amqtt) has no shared subscriptions: it runs a single worker.
        self.shared = (not config.embedded_broker) if shared is None else shared
        self._engine = None
        if sessions is None:
            self._engine = make_engine(config.database_url, app_role=config.database_role or None,
                                       pool_size=2, max_overflow=2) \
                if not config.database_url.startswith("sqlite") else make_engine(config.database_url)
            sessions = session_factory(self._engine)
        self.sessions = sessions
        self.max_messages = max_messages
        self.linger_s = linger_s
        self.stats_interval_s = stats_interval_s
        self.stats = WorkerStats(worker_id, socket.gethostname())
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._queue: queue.Queue[tuple[Inbound, Accepted | Rejected]] = queue.Queue()
        self._stop = threading.Event()
        self._generation = 0
        self._ack_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        client = service_client(config, worker_id, clean_session=False, manual_ack=True)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self.client = client

    @property
    def filters(self) -> list[tuple[str, int]]:
        group = SHARE_GROUP if self.shared else None
        return [(upstream_filter(channel, group), 1) for channel in KINDS]

    # --- MQTT (paho's network thread) ------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        if reason_code.is_failure:
            log.error("ingest %s: the broker refused the service account: %s", self.worker_id, reason_code)
            return
        with self._ack_lock:
            self._generation += 1
        self.connected.set()
        # The persistent session keeps the subscription; asking again covers a broker that lost it.
        client.subscribe(self.filters)
        log.info("ingest %s: connected (%s)", self.worker_id,
                 "resumed session" if getattr(flags, "session_present", False) else "new session")

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any,
                      properties: Any) -> None:
        refused = [f for (f, _), code in zip(self.filters, reason_codes, strict=False) if code.is_failure]
        if refused:
            log.error("ingest %s: the broker refused the subscriptions %s", self.worker_id,
                      ", ".join(refused))
        else:
            log.info("ingest %s: subscribed (%s)", self.worker_id, "shared" if self.shared else "plain")
            self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        with self._ack_lock:
            # Packet ids are per connection: what arrived before this must not be acknowledged on the
            # next one (the broker sends it again; storing it again changes nothing).
            self._generation += 1
        self.connected.clear()
        self.subscribed.clear()
        if not self._stop.is_set():
            log.warning("ingest %s: disconnected from the broker (%s); reconnecting", self.worker_id,
                        reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = utcnow()
        self.stats.message_received(now)
        inbound = Inbound(message.topic, bytes(message.payload), message.mid, message.qos, now,
                          self._generation)
        # Validated here, in paho's network thread: decoding then overlaps the store thread's waits
        # on the database instead of adding to each cycle.
        verdict: Accepted | Rejected
        try:
            verdict = check(inbound)
        except Rejected as rejected:
            verdict = rejected
        self._queue.put((inbound, verdict))

    # --- life cycle ---------------------------------------------------------------------------------

    def start(self) -> IngestWorker:
        self.stats.persist(self.sessions)
        self._thread = threading.Thread(target=self._run, name=f"ingest-{self.worker_id}", daemon=True)
        self._thread.start()
        # connect_async: paho keeps retrying in the background if the broker is not up yet.
        self.client.connect_async(*_host_port(self.config), keepalive=30)
        self.client.loop_start()
        return self

    def wait_ready(self, timeout: float = 15.0) -> bool:
        """Whether the worker is connected and subscribed (for tests and start-up logs)."""
        return self.subscribed.wait(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the cycle in hand (commit and acknowledge it), then disconnect. Messages still queued
        here are not acknowledged: the broker keeps them in this worker's session for its return."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.stats.persist(self.sessions, status="stopped")
        except Exception as exc:  # the database may be what is failing; stopping must still work
            log.warning("ingest %s: could not record its final statistics: %s", self.worker_id,
                        _first_line(exc))
        self.client.disconnect()
        self.client.loop_stop()
        if self._engine is not None:
            self._engine.dispose()
        log.info("ingest %s: stopped (%d received, %d events stored, %d rejected)", self.worker_id,
                 self.stats.received, self.stats.stored_events, sum(self.stats.rejected.values()))

    def run_until(self, stop: threading.Event) -> None:
        """Run in the calling thread's process until ``stop`` is set (a worker process's main)."""
        self.start()
        stop.wait()
        self.stop()

    # --- the store thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        next_stats = time.monotonic() + self.stats_interval_s
        while not self._stop.is_set():
            items = self._take(0.25)
            if items:
                self._handle(items)
            if time.monotonic() >= next_stats:
                next_stats = time.monotonic() + self.stats_interval_s
                try:
                    self.stats.persist(self.sessions)
                except Exception as exc:
                    log.warning("ingest %s: could not record statistics: %s", self.worker_id,
                                _first_line(exc))

    def _take(self, timeout: float) -> list[tuple[Inbound, Accepted | Rejected]]:
        try:
            items = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.linger_s
        while len(items) < self.max_messages:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    items.append(self._queue.get(timeout=remaining))
                except queue.Empty:
                    break
        return items

    def _handle(self, items: list[tuple[Inbound, Accepted | Rejected]]) -> None:
        accepted: list[Accepted] = []
        for inbound, verdict in items:
            if isinstance(verdict, Rejected):
                self.stats.rejected_verdict(verdict, inbound.topic)
            else:
                self.stats.unknown(verdict.unknown)
                accepted.append(verdict)
        if accepted and not self._store(accepted):
            return  # stopping before the database came back: nothing acknowledged, nothing lost
        self._ack([inbound for inbound, _ in items])

    def _store(self, accepted: list[Accepted]) -> bool:
        """Commit the cycle; True once it is committed or its refused messages rejected for good."""
        delay = 0.5
        at_once = 3  # immediate retries left for deadlocks and serialization failures
        while True:
            try:
                self._commit(accepted)
                return True
            except Exception as exc:
                if message_specific(exc):
                    refused = exc
                    break
                if self._stop.is_set():
                    return False
                if transient(exc) and at_once > 0:
                    at_once -= 1
                    log.info("ingest %s: a cycle of %d messages met another worker's transaction (%s); "
                             "retrying it now", self.worker_id, len(accepted), _first_line(exc))
                    continue
                log.warning("ingest %s: cannot store a cycle of %d messages (%s); retrying in %.1fs",
                            self.worker_id, len(accepted), _first_line(exc), delay,
                            exc_info=not isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError))
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
        if len(accepted) == 1:
            verdict = Rejected(Reason.STORAGE_REFUSED, _first_line(refused))
            self.stats.rejected_verdict(verdict, accepted[0].inbound.topic)
            return True
        # One message spoils the cycle: store them one by one, so only that one is refused.
        return all(self._store([one]) for one in accepted)

    def _commit(self, accepted: list[Accepted]) -> None:
        db = self.sessions()
        try:
            report = write_cycle(db, accepted, utcnow())
            db.commit()
        except BaseException:
            db.rollback()
            raise
        finally:
            db.close()
        for index, verdict in report.rejected.items():
            self.stats.rejected_verdict(verdict, accepted[index].inbound.topic)
        self.stats.committed(report, len(accepted) - len(report.rejected))

    def _ack(self, items: list[Inbound]) -> None:
        with self._ack_lock:
            for inbound in items:
                if inbound.qos and inbound.generation == self._generation:
                    self.client.ack(inbound.mid, inbound.qos)


def _host_port(config: CloudConfig) -> tuple[str, int]:
    url = urlparse(broker_url(config))
    return url.hostname or "127.0.0.1", url.port or (8883 if url.scheme == "mqtts" else 1883)

