"""NetworkManager through ``nmcli``: scan Wi-Fi, join a network, show the current connections.

``nmcli -t`` (terse) prints one record a line, fields split by ``:``, with ``:`` and ``\\`` inside a
value escaped by a backslash (nmcli(1), "--terse"); ``split_terse`` undoes exactly that. On a device
without nmcli, or where NetworkManager is not running (a container, a laptop whose network someone
else manages), ``unavailable_reason`` says so and the setup page shows the host's addresses instead.

A Wi-Fi password goes to nmcli as an argument and nowhere else: it is never logged, and an nmcli
error quoted back to the page has it replaced by ``***``.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

import psutil

TIMEOUT_S = 45.0


class NetworkError(RuntimeError):
    """nmcli refused or failed; the message is nmcli's own reason in words, without secrets."""


@dataclass(frozen=True)
class WifiNetwork:
    ssid: str
    signal: int  # 0-100
    security: str  # "" for an open network, else e.g. "WPA2" or "WPA1 WPA2"
    in_use: bool

    @property
    def open(self) -> bool:
        return self.security in ("", "--")


@dataclass(frozen=True)
class DeviceState:
    device: str
    type: str
    state: str
    connection: str


def split_terse(line: str) -> list[str]:
    """One line of ``nmcli -t`` output into its fields."""
    fields, current, escaped = [], [], False
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
    fields.append("".join(current))
    return fields


def parse_wifi_list(output: str) -> list[WifiNetwork]:
    """``nmcli -t -f IN-USE,SSID,SIGNAL,SECURITY device wifi list``: one entry per SSID, strongest first.

    Hidden networks (no SSID) are left out: they cannot be chosen from a list.
    """
    best: dict[str, WifiNetwork] = {}
    for line in output.splitlines():
        if not line.strip():
            continue
        parts = split_terse(line)
        if len(parts) != 4:
            continue
        in_use, ssid, signal, security = parts
        if not ssid:
            continue
        try:
            strength = int(signal)
        except ValueError:
            strength = 0
        security = "" if security == "--" else security.strip()
        network = WifiNetwork(ssid, strength, security, in_use.strip() == "*")
        known = best.get(ssid)
        if known is None or network.in_use or (not known.in_use and network.signal > known.signal):
            best[ssid] = network
    return sorted(best.values(), key=lambda n: (not n.in_use, -n.signal, n.ssid.lower()))


def parse_device_status(output: str) -> list[DeviceState]:
    """``nmcli -t -f DEVICE,TYPE,STATE,CONNECTION device status``, without loopback."""
    states = []
    for line in output.splitlines():
        parts = split_terse(line)
        if len(parts) != 4 or parts[1] == "loopback":
            continue
        states.append(DeviceState(*parts))
    return states


def _nmcli(*args: str, secret: str | None = None, timeout: float = TIMEOUT_S) -> str:
    try:
        done = subprocess.run(["nmcli", *args], capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise NetworkError("nmcli is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise NetworkError(f"nmcli did not answer within {timeout:.0f} s") from exc
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().removeprefix("Error: ")
        reason = reason or f"exit code {done.returncode}"
        if secret:
            reason = reason.replace(secret, "***")
        raise NetworkError(reason)
    return done.stdout


def unavailable_reason() -> str | None:
    """None when NetworkManager can be used; otherwise why not, for the page."""
    if shutil.which("nmcli") is None:
        return "nmcli is not installed"
    try:
        running = _nmcli("-t", "-f", "RUNNING", "general", timeout=10).strip()
    except NetworkError:
        return "NetworkManager is not running"
    return None if running == "running" else f"NetworkManager is {running or 'not running'}"


def scan() -> list[WifiNetwork]:
    return parse_wifi_list(_nmcli("-t", "-f", "IN-USE,SSID,SIGNAL,SECURITY", "device", "wifi", "list",
                                  "--rescan", "yes"))


def devices() -> list[DeviceState]:
    return parse_device_status(_nmcli("-t", "-f", "DEVICE,TYPE,STATE,CONNECTION", "device", "status"))


def join(ssid: str, password: str | None) -> None:
    """Connect to ``ssid`` (NetworkManager keeps the connection for next boots)."""
    # A NUL cannot be passed in a program argument (the kernel would end the string there; Python
    # refuses it): say so instead of failing inside subprocess.
    if "\x00" in ssid:
        raise NetworkError("a Wi-Fi network name cannot contain a NUL character")
    if not ssid or len(ssid.encode()) > 32:
        raise NetworkError("a Wi-Fi network name has 1 to 32 bytes")
    args = ["device", "wifi", "connect", ssid]
    if password and "\x00" in password:
        raise NetworkError("a Wi-Fi password cannot contain a NUL character")
    if password:
        if not 8 <= len(password) <= 63:
            raise NetworkError("a WPA password has 8 to 63 characters")
        args += ["password", password]
    _nmcli(*args, secret=password)


def host_addresses() -> dict[str, list[str]]:
    """Each network interface's addresses (not loopback): what the page shows when the host manages them."""
    found: dict[str, list[str]] = {}
    for name, addresses in sorted(psutil.net_if_addrs().items()):
        if name == "lo":
            continue
        listed = [a.address.split("%", 1)[0] for a in addresses if a.family.name in ("AF_INET", "AF_INET6")]
        if listed:
            found[name] = listed
    return found
