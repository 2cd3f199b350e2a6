"""LAN only: refuse any request from a client address that is not private, loopback or link-local,
or addressed to a host name that is not this device's.

The setup web binds 0.0.0.0 on a device by default (it cannot know which of its addresses a phone
will use), so the address check is what keeps it off the internet should a port ever be forwarded
to it. Behind no proxy by design: ``remote_addr`` is the peer's own address.

The ``Host`` check stops DNS rebinding: a page on ``evil.example`` whose name an attacker re-points
at the device's LAN address would otherwise be same-origin with the setup web in the owner's own
browser (a LAN client), and could drive first boot or a signed-in session. A rebound request still
carries ``Host: evil.example``, so only names that can only mean this device are answered: an IP
literal, ``localhost``, an mDNS ``*.local`` name, or the device's own host name.
"""

from __future__ import annotations

import ipaddress
import socket

from flask import Flask, request

REFUSAL = ("The setup page only answers on the local network. Open it from a phone or computer on the "
           "same network as the device.")
HOST_REFUSAL = ("The setup page only answers to the device's own address: open it as http://<the device's "
                "IP address>:<port>/ or http://<device name>.local:<port>/, not through another name "
                "({host}).")


def is_local(address: str | None) -> bool:
    """Whether a client address is private, loopback or link-local (IPv4-mapped IPv6 included)."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_private or ip.is_loopback or ip.is_link_local


def _host_name(host: str) -> str | None:
    """The name or address in a Host header without its port; None when it is malformed."""
    if host.startswith("["):  # [v6]:port: only a bracketed IPv6 literal may hold colons
        end = host.find("]")
        rest = host[end + 1:] if end > 0 else None
        if rest is None or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
        inner = host[1:end].split("%", 1)[0]
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            return None
        return inner
    name, _, port = host.partition(":")
    if ":" in port or (port and not port.isdigit()):
        return None
    return name.rstrip(".").lower()


def host_allowed(host: str | None, own_hostname: str | None = None) -> bool:
    """Whether ``host`` (a Host header, port allowed) can only name this device.

    ``own_hostname`` defaults to ``socket.gethostname()``; its first label is accepted too, since a
    device whose host name is a dotted name is often reached by the short one.
    """
    if not host:
        return False
    name = _host_name(host.strip())
    if not name:
        return False
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    if name == "localhost" or name.endswith(".local"):
        return True
    own = (own_hostname if own_hostname is not None else socket.gethostname()).rstrip(".").lower()
    return bool(own) and name in (own, own.split(".", 1)[0])


def init_app(app: Flask) -> None:
    """Refuse (403, plain text) requests from outside the LAN or addressed to a foreign host name."""
    @app.before_request
    def _lan_only():
        if not is_local(request.remote_addr):
            return REFUSAL, 403, {"Content-Type": "text/plain; charset=utf-8"}
        host = request.headers.get("Host") or request.host
        if not host_allowed(host):
            shown = "".join(c if c.isprintable() else "?" for c in host)[:100]
            return HOST_REFUSAL.format(host=shown), 403, {"Content-Type": "text/plain; charset=utf-8"}
        return None
