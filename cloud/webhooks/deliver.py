"""The webhook delivery worker: sends due deliveries, signed, and retries failures with backoff.

Each attempt POSTs the delivery's JSON body with
    X-VoxFleet-Event       the event type
    X-VoxFleet-Delivery    the delivery key (stable across retries: receivers drop duplicates by it)
    X-VoxFleet-Timestamp   Unix seconds of this attempt
    X-VoxFleet-Signature   sha256=<hex HMAC-SHA256 of "{timestamp}.{body}" with the webhook's secret>
A 2xx answer marks it delivered; anything else (or no answer within 10 s, or no complete answer
within 30 s in all) is retried after 30 s, 2 min, 10 min, 1 h, 6 h, 12 h, then given up as failed.
Redirects are not followed. The 30 s bound holds however the receiver trickles its answer, so one slow
endpoint cannot hold a worker for long, and an attempt always ends within its claim's lease.

Claiming: a worker takes a due delivery by moving its ``next_attempt_at`` forward with a conditional
UPDATE before sending, so several workers (``voxfleet cloud webhooks run`` processes, ``serve``
threads) never send the same attempt twice and a worker that dies mid-send leaves the delivery to be
retried after the lease. The lease runs from the moment of the claim, not from the start of the pass:
a pass that spends minutes on slow receivers must not claim its last deliveries with a lease that has
already run out, which would let another worker send them at the same time.

Stopping: a worker asked to stop finishes the attempt in hand, records it, and claims nothing more.

SSRF: a webhook URL is a request our server makes on a tenant's behalf. Unless private addresses are
allowed (``allow_private``; tests and single-machine set-ups need 127.0.0.1), every address the host
name resolves to must be public, and the connection goes to the address that was checked (no second
DNS lookup for a rebinding trick to exploit). Production keeps them refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, update

from cloud.config import CloudConfig
from cloud.db import Webhook, WebhookDelivery
from cloud.db.base import utcnow
from cloud.scoping import PlatformScope

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0                    # each connect and each read
ATTEMPT_S = 30.0                    # one attempt in all, every address of the host together
BACKOFF_S = (30, 120, 600, 3600, 6 * 3600, 12 * 3600)
MAX_ATTEMPTS = len(BACKOFF_S) + 1
LEASE = timedelta(seconds=60)       # longer than one attempt can take (ATTEMPT_S)
EXCERPT_CHARS = 1000
USER_AGENT = "VoxFleet-Webhooks/1"
BATCH = 50


class UnsafeUrl(ValueError):
    """A webhook URL this server will not call (scheme, host, or a private address)."""


@dataclass(frozen=True)
class Attempt:
    status: int | None        # HTTP status, None when there was no answer
    excerpt: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def allow_private_default(config: CloudConfig | None) -> bool:
    """Off unless the configuration says so (a ``webhooks_allow_private`` setting)."""
    return bool(getattr(config, "webhooks_allow_private", False))


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def body_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, *, allow_private: bool, resolve: bool = False) -> list[str]:
    """Refuse what must never be called; with ``resolve`` also return the addresses to connect to."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("the URL must start with http:// or https://")
    if not parts.hostname:
        raise UnsafeUrl("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("the URL must not carry a user name or password")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeUrl("the URL has an invalid port") from None
    host = parts.hostname
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and not allow_private and not _public(str(literal)):
        raise UnsafeUrl("the URL points at a private, loopback or reserved address")
    if not resolve:
        return []
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnsafeUrl(f"cannot resolve {host}: {exc.strerror}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not allow_private:
        bad = [a for a in addresses if not _public(a)]
        if bad:
            raise UnsafeUrl(f"{host} resolves to a private, loopback or reserved address")
    return addresses


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, address: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, address: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        # The certificate is checked against the host name, while the socket goes to the checked address.
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def _cut(conn: http.client.HTTPConnection, cut: threading.Event) -> None:
    """End a connection that ran past its attempt's time: a blocked read returns at once."""
    cut.set()
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's, under any TLS layer


def post(url: str, body: bytes, headers: dict[str, str], *, allow_private: bool,
         timeout: float = TIMEOUT_S, within: float = ATTEMPT_S) -> Attempt:
    """One POST, with the stdlib's http.client (no extra dependency): never raises for network trouble.

    ``timeout`` bounds each connect and read; ``within`` the whole attempt, which a receiver sending
    its answer a byte at a time would otherwise stretch without end.
    """
    try:
        addresses = check_url(url, allow_private=allow_private, resolve=True)
    except UnsafeUrl as exc:
        return Attempt(None, None, str(exc))
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    kind = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    deadline = time.monotonic() + within
    error = "no address"
    for address in addresses:
        left = deadline - time.monotonic()
        if left <= 0:
            error = f"no complete answer within {within:g} s"
            break
        conn = kind(address, parts.hostname or "", port, min(timeout, left))
        cut = threading.Event()
        cutoff = threading.Timer(left, _cut, (conn, cut))
        cutoff.daemon = True
        cutoff.start()
        try:
            conn.request("POST", path, body=body, headers={**headers, "Content-Type": "application/json",
                                                           "User-Agent": USER_AGENT})
            response = conn.getresponse()
            excerpt = response.read(EXCERPT_CHARS * 4).decode("utf-8", "replace")[:EXCERPT_CHARS]
            if not cut.is_set():
                return Attempt(response.status, excerpt, None)
        except (OSError, http.client.HTTPException) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        finally:
            cutoff.cancel()
            conn.close()
        if cut.is_set():
            error = f"no complete answer within {within:g} s"
    return Attempt(None, None, error)


def send(hook: Webhook, delivery: WebhookDelivery, *, allow_private: bool,
         timeout: float = TIMEOUT_S) -> Attempt:
    body = body_bytes(delivery.payload)
    timestamp = str(int(time.time()))
    headers = {
        "X-VoxFleet-Event": delivery.event_type,
        "X-VoxFleet-Delivery": str(delivery.delivery_key),
        "X-VoxFleet-Timestamp": timestamp,
        "X-VoxFleet-Signature": signature(hook.secret, timestamp, body),
    }
    return post(hook.url, body, headers, allow_private=allow_private, timeout=timeout)


def next_attempt(attempts: int, now: datetime) -> datetime | None:
    """When to try again after ``attempts`` failed ones; None once they are used up."""
    if attempts >= MAX_ATTEMPTS:
        return None
    return now + timedelta(seconds=BACKOFF_S[min(attempts - 1, len(BACKOFF_S) - 1)])


def record(scope: Any, delivery: WebhookDelivery, attempt: Attempt, *,
           max_attempts: int = MAX_ATTEMPTS) -> None:
    """Write an attempt's outcome onto its delivery (``scope``: any scope allowed to change it)."""
    now = utcnow()
    attempts = delivery.attempts + 1
    retry_at = None if attempt.ok or attempts >= max_attempts else next_attempt(attempts, now)
    status = "delivered" if attempt.ok else ("pending" if retry_at is not None else "failed")
    scope.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery.id).values(
        attempts=attempts, last_attempt_at=now, response_code=attempt.status,
        response_excerpt=attempt.excerpt, error=attempt.error, status=status, next_attempt_at=retry_at))
    scope.commit()
    delivery.attempts, delivery.status, delivery.response_code = attempts, status, attempt.status


def _claim(platform: PlatformScope, delivery: WebhookDelivery, now: datetime) -> bool:
    """Take ``delivery`` for one attempt if no other worker has since it was read (compare-and-set on
    ``next_attempt_at``); the lease starts now, or at the pass's ``now`` when that is later."""
    leased_until = max(now, utcnow()) + LEASE
    won = platform.execute(update(WebhookDelivery).where(
        WebhookDelivery.id == delivery.id, WebhookDelivery.status == "pending",
        WebhookDelivery.next_attempt_at == delivery.next_attempt_at,
    ).values(next_attempt_at=leased_until).execution_options(synchronize_session=False)).rowcount
    platform.commit()
    return won == 1


def deliver_due(sessions: Callable[[], Any], *, allow_private: bool, now: datetime | None = None,
                limit: int = BATCH, timeout: float = TIMEOUT_S,
                stopping: Callable[[], bool] | None = None) -> int:
    """Send every due delivery (up to ``limit``); returns how many attempts were made.

    ``stopping`` is asked before each claim: once it answers true the pass ends after the attempt in
    hand, so a worker told to stop does not work through the rest of a batch first.
    """
    made = 0
    with sessions() as db:
        platform = PlatformScope(db)
        now = now or utcnow()
        due = platform.execute(
            select(WebhookDelivery, Webhook).join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now,
                   Webhook.active.is_(True))
            .order_by(WebhookDelivery.next_attempt_at).limit(limit)).all()
        for delivery, hook in due:
            if stopping is not None and stopping():
                break
            if not _claim(platform, delivery, now):
                continue  # another worker took it
            attempt = send(hook, delivery, allow_private=allow_private, timeout=timeout)
            record(platform, delivery, attempt)
            made += 1
            if not attempt.ok:
                log.info("webhook delivery %s to webhook %s: attempt %d failed (%s)", delivery.id, hook.id,
                         delivery.attempts, attempt.status or attempt.error)
    return made


class DeliveryWorker:
    """``deliver_due`` every ``interval`` seconds on a daemon thread until ``stop``."""

    def __init__(self, sessions: Callable[[], Any], *, allow_private: bool, interval: float = 2.0) -> None:
        self.sessions, self.allow_private, self.interval = sessions, allow_private, interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="voxfleet-webhooks", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                while (deliver_due(self.sessions, allow_private=self.allow_private,
                                   stopping=self._stop.is_set)
                       and not self._stop.is_set()):
                    pass
            except Exception:  # a database hiccup must not end deliveries for good
                log.exception("webhook delivery pass failed; retrying")
            self._wake.wait(self.interval)
            self._wake.clear()

    def start(self) -> DeliveryWorker:
        self.thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def request_stop(self) -> None:
        """Claim nothing more; the attempt in hand is still finished and recorded."""
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float | None = 15.0) -> None:
        """``request_stop``, then wait for the thread (``timeout`` None: however long the attempt takes)."""
        self.request_stop()
        self.thread.join(timeout)


def start_delivery_thread(config: CloudConfig, *, allow_private: bool | None = None,
                          interval: float = 2.0) -> DeliveryWorker:
    """The worker ``voxfleet cloud serve`` and ``voxfleet cloud webhooks run`` run: its own engine (the
    app's role, so RLS applies)."""
    from cloud.db.session import make_engine
    from cloud.scoping import session_factory

    engine = make_engine(config.database_url, app_role=config.database_role or None)
    private = allow_private_default(config) if allow_private is None else allow_private
    return DeliveryWorker(session_factory(engine), allow_private=private, interval=interval).start()
