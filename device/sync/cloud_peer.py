"""Which release the device's cloud runs, so the device sends it only what it reads.

A 0.1.0 cloud refuses a whole message over one field it does not know; later clouds ignore such
fields. The device cannot tell them apart on MQTT, so it asks the cloud's health endpoint, which
from 0.2.0 on names the cloud's release and wire versions: no answer of that shape means a 0.1.0
cloud (``protocol.versions.LEGACY``), and the device writes what 0.1.0 reads. It asks again after
every reconnection to the broker (an upgrade or a rollback of the cloud restarts it) and every
``REFRESH_S`` seconds; until it knows, it assumes the strict reader.
"""

from __future__ import annotations

import logging

import requests

from protocol.versions import LEGACY, Peer

log = logging.getLogger(__name__)

TIMEOUT_S = 5.0
REFRESH_S = 3600.0


def parse_health(body: object) -> Peer | None:
    """The peer a ``/api/v1/health`` body describes; None when it is not a VoxFleet cloud's."""
    if not isinstance(body, dict) or body.get("status") != "ok":
        return None
    protocol = body.get("protocol")
    if not isinstance(protocol, dict):
        return LEGACY  # a cloud that answers health but says nothing of its protocol: 0.1.0
    release = body.get("release")
    reads = protocol.get("reads")
    if not isinstance(release, str) or not isinstance(reads, list) or \
            not all(isinstance(v, int) and not isinstance(v, bool) for v in reads) or not reads:
        log.warning("the cloud's health names a protocol this device cannot read: %r", protocol)
        return LEGACY
    return Peer(release=release[:64], reads=frozenset(reads))


def probe(cloud_url: str, session: requests.Session | None = None, timeout: float = TIMEOUT_S) -> Peer | None:
    """Ask the cloud; None when it cannot be asked now (keep what was known)."""
    http = session or requests.Session()
    try:
        response = http.get(cloud_url.rstrip("/") + "/api/v1/health", timeout=timeout)
        body = response.json()
    except (requests.RequestException, ValueError) as exc:
        log.info("cannot ask %s which release it runs (%s); keeping what was known", cloud_url,
                 type(exc).__name__)
        return None
    return parse_health(body)
