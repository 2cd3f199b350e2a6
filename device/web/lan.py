"""LAN only: refuse any request whose client address is not private, loopback or link-local.

The setup web binds 0.0.0.0 on a device by default (it cannot know which of its addresses a phone
will use), so this check is what keeps it off the internet should a port ever be forwarded to it.
Behind no proxy by design: ``remote_addr`` is the peer's own address.
"""

from __future__ import annotations

import ipaddress

from flask import Flask, request

REFUSAL = ("The setup page only answers on the local network. Open it from a phone or computer on the "
           "same network as the device.")


def is_local(address: str | None) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_private or ip.is_loopback or ip.is_link_local


def init_app(app: Flask) -> None:
    @app.before_request
    def _lan_only():
        if not is_local(request.remote_addr):
            return REFUSAL, 403, {"Content-Type": "text/plain; charset=utf-8"}
        return None
