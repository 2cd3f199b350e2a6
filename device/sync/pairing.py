"""The device's half of pairing: ask a cloud for a code, show it, wait for the claim, keep the credentials.

The device makes a random secret that never leaves it except to poll, so nobody who only saw the
code on its screen can collect its credentials. Once claimed, the credentials arrive once and are
written to ``DATA_DIR/cloud.json`` (0600); the agent notices the file and connects, no restart.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import requests

from device.files import write_atomic

TIMEOUT = 10.0


class PairingFailed(RuntimeError):
    """Pairing cannot go on; the message says why in words a person installing a device understands."""


@dataclass(frozen=True)
class Code:
    code: str
    device_key: str
    expires_at: datetime
    poll_interval_s: float


def _url(cloud: str, path: str) -> str:
    return cloud.rstrip("/") + "/api/v1" + path


def _error(response: requests.Response) -> str:
    try:
        return response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"


def check_cloud(cloud: str, session: requests.Session | None = None) -> None:
    """Is there a VoxFleet cloud at this URL? Clear words for the usual mistakes."""
    not_url = PairingFailed(f"{cloud!r} is not a web address; it looks like https://cloud.example.com")
    try:  # urlparse raises ValueError on some malformed addresses, such as an unclosed "[" (IPv6)
        parsed = urlparse(cloud)
        hostname = parsed.hostname
    except ValueError:
        raise not_url from None
    if parsed.scheme not in ("http", "https") or not hostname:
        raise not_url
    http = session or requests.Session()
    try:
        response = http.get(_url(cloud, "/health"), timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise PairingFailed(f"cannot reach {cloud}: {type(exc).__name__}") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("status") != "ok" or "database" not in body:
        raise PairingFailed(f"{cloud} answered, but it is not a VoxFleet cloud (no /api/v1/health)")


def request_code(cloud: str, secret: str, session: requests.Session | None = None) -> Code:
    http = session or requests.Session()
    try:
        response = http.post(_url(cloud, "/pairing/codes"), json={"secret": secret}, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise PairingFailed(f"cannot reach {cloud}: {type(exc).__name__}") from None
    if response.status_code != 201:
        raise PairingFailed(f"the cloud refused to give a pairing code: {_error(response)}")
    data = response.json()
    return Code(data["code"], data["device_key"], datetime.fromisoformat(data["expires_at"]),
                float(data.get("poll_interval_s", 3)))


def wait_for_claim(cloud: str, code: Code, secret: str, session: requests.Session | None = None,
                   sleep: Callable[[float], None] = time.sleep) -> dict:
    """Poll until the code is claimed (returns the credentials) or expires (PairingFailed)."""
    http = session or requests.Session()
    while True:
        try:
            response = http.post(_url(cloud, "/pairing/collect"), json={"code": code.code, "secret": secret},
                                 timeout=TIMEOUT)
        except requests.RequestException:
            response = None  # a blip on the network: keep waiting until the code expires
        if response is not None:
            if response.status_code == 200:
                return response.json()
            if response.status_code not in (202, 429, 502, 503, 504):
                raise PairingFailed(_error(response))
        if datetime.now(UTC) >= code.expires_at:
            raise PairingFailed(f"the code {code.code} expired before anyone claimed it; run pairing again")
        sleep(code.poll_interval_s)


def save_pairing(data_dir: Path, cloud: str, credentials: dict) -> Path:
    """Write cloud.json atomically, readable by the device's user only (it holds a password)."""
    record = {
        "device_id": credentials["device_key"], "broker_url": credentials["broker_url"],
        "username": credentials["username"], "password": credentials["password"], "cloud": cloud.rstrip("/"),
        "tenant": credentials.get("tenant"), "project": credentials.get("project"),
        "device_name": credentials.get("device_name"), "paired_at": datetime.now(UTC).isoformat(),
    }
    return write_atomic(data_dir / "cloud.json", json.dumps(record, indent=2), mode=0o600)


def new_secret() -> str:
    return secrets.token_urlsafe(32)
