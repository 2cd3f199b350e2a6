"""Serve the setup web with waitress: ``voxfleet device setup-web`` and the supervised ``setup-web`` service.

waitress rather than Werkzeug's development server: it is pure Python (nothing to compile on a Pi),
small, multi-threaded and made for production, and it needs no reverse proxy in front of it.

Binds 0.0.0.0 unless told otherwise: the device cannot know which of its addresses a phone on the
LAN will use. device.web.lan refuses every client that is not on a private, loopback or link-local
address. When the port is taken, the supervised service waits and retries instead of exiting: the
voice assistant must not fail to start because of its setup page.

waitress buffers a request body before the app sees it, so Flask's MAX_CONTENT_LENGTH alone would
let a client fill memory or disk first: waitress is given a body limit of the app's upload limit
plus a little room (``waitress_options``), and refuses anything larger with 413 before buffering it.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time

from device.paths import DevicePaths

THREADS = 4
BODY_SLACK_BYTES = 64 * 1024  # over the app's MAX_CONTENT_LENGTH: chunked-encoding framing and such
RETRY_S = 30.0
LOG = logging.getLogger("voxfleet.setup_web")


def port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def waitress_options(app) -> dict:
    """The waitress settings the setup web is served with (also what the tests serve it with)."""
    return {"threads": THREADS, "ident": "voxfleet-setup",
            "max_request_body_size": int(app.config["MAX_CONTENT_LENGTH"]) + BODY_SLACK_BYTES}


def serve(paths: DevicePaths, host: str = "0.0.0.0", port: int = 8080, wait_for_port: bool = False) -> None:
    """Serve until interrupted. ``wait_for_port``: retry a taken port instead of failing."""
    from waitress import serve as waitress_serve

    from device.web.app import create_app

    app = create_app(paths)
    while not port_free(host, port):
        message = f"port {port} on {host} is taken by another program"
        if not wait_for_port:
            raise OSError(f"{message}; choose another with --port")
        LOG.error("%s; trying again in %.0f s (change setup_web_port in settings.json)", message, RETRY_S)
        time.sleep(RETRY_S)
    LOG.info("setup web on http://%s:%d/ (LAN clients only)", host, port)
    waitress_serve(app, host=host, port=port, **waitress_options(app))


def main(argv: list[str] | None = None) -> None:
    """The supervised service: data folder from $VOXFLEET_DATA_DIR, port from the settings."""
    from device.settings import DeviceSettings, SettingsError, load_settings

    parser = argparse.ArgumentParser(prog="voxfleet-setup-web")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    paths = DevicePaths.at(os.environ.get("VOXFLEET_DATA_DIR"))
    try:
        port = args.port or load_settings(paths.root).setup_web_port
    except SettingsError as exc:  # the page must still come up: it is how a person fixes settings
        port = args.port or DeviceSettings.model_fields["setup_web_port"].default
        LOG.error("%s; serving on the default port %d", exc, port)
    serve(paths, args.host, port, wait_for_port=True)


if __name__ == "__main__":
    main()
