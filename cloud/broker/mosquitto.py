"""A Mosquitto with the Dynamic Security plugin: its configuration, and a process for tests and scripts.

Production runs Mosquitto under systemd (Ansible writes the same configuration); tests and the
operator's set-up scripts start their own on a free port so they never touch a shared broker.
The initial Dynamic Security state is written here rather than with ``mosquitto_ctrl dynsec init``
so the admin password never appears on a command line (visible to every user in the process list).
"""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

PLUGIN_NAME = "mosquitto_dynamic_security.so"
PLUGIN_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib/arm-linux-gnueabihf",
    "/usr/lib",
    "/usr/local/lib",
)
# Mosquitto hashes dynsec passwords with PBKDF2-SHA512; more rounds than its default of 101.
PBKDF2_ITERATIONS = 10_000


class MosquittoError(RuntimeError):
    """Mosquitto or its Dynamic Security plugin could not be set up or started."""


def find_mosquitto() -> Path:
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None)
    if not found:
        raise MosquittoError("the mosquitto program is not installed (Debian package 'mosquitto')")
    return Path(found)


def find_dynsec_plugin() -> Path:
    """Where this system's Mosquitto 2 keeps the plugin (Debian puts it under the multiarch dir)."""
    for folder in PLUGIN_CANDIDATES:
        candidate = Path(folder) / PLUGIN_NAME
        if candidate.exists():
            return candidate
    for candidate in sorted(glob.glob(f"/usr/lib/*/{PLUGIN_NAME}")):
        return Path(candidate)
    raise MosquittoError(f"{PLUGIN_NAME} not found in {', '.join(PLUGIN_CANDIDATES)}: Mosquitto 2.0 or "
                         "newer is needed")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def dynsec_password_fields(password: str, iterations: int = PBKDF2_ITERATIONS) -> dict[str, object]:
    """The ``password``/``salt``/``iterations`` fields of a dynsec client, as Mosquitto checks them."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return {"password": base64.b64encode(digest).decode(), "salt": base64.b64encode(salt).decode(),
            "iterations": iterations}


def write_dynsec_state(path: Path, admin_username: str, admin_password: str) -> Path:
    """The initial dynamic-security.json: one admin that may only drive ``$CONTROL/dynamic-security``.

    Defaults deny everything but unsubscribing, so an account can do only what its roles grant.
    """
    admin_acls = [
        {"acltype": acltype, "topic": "$CONTROL/dynamic-security/#", "allow": True}
        for acltype in ("publishClientSend", "publishClientReceive", "subscribePattern")
    ]
    state = {
        "clients": [{"username": admin_username, "textName": "VoxFleet dynsec admin",
                     **dynsec_password_fields(admin_password), "roles": [{"rolename": "dynsec-admin"}]}],
        "roles": [{"rolename": "dynsec-admin", "acls": admin_acls}],
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False,
                             "subscribe": False, "unsubscribe": True},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(state, out, indent=2)
    return path


def write_config(path: Path, *, port: int, dynsec_state: Path, host: str = "127.0.0.1",
                 plugin: Path | None = None, persistence_dir: Path | None = None,
                 log_file: Path | None = None) -> Path:
    """A mosquitto.conf with dynsec as the only authority: no anonymous access, one listener."""
    user = pwd.getpwuid(os.geteuid()).pw_name  # no privilege switch: it must read and save its state
    lines = [
        "per_listener_settings false",
        "allow_anonymous false",
        f"user {user}",
        f"listener {port} {host}",
        f"plugin {plugin or find_dynsec_plugin()}",
        f"plugin_opt_config_file {dynsec_state}",
        # Mosquitto drops QoS 1 messages for a persistent session beyond 1000 queued by default: an
        # ingest worker that lags (or restarts) would lose events devices already consider delivered.
        "max_queued_messages 1000000",
    ]
    if persistence_dir is not None:
        lines += ["persistence true", f"persistence_location {persistence_dir}/"]
    else:
        lines += ["persistence false"]
    if log_file is not None:
        lines += [f"log_dest file {log_file}", "log_type error", "log_type warning", "log_type notice",
                  "log_type information", "connection_messages true"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class MosquittoProcess:
    """A private Mosquitto with dynsec in ``workdir``; for tests and scripts, never the shared 1883 one."""

    def __init__(self, workdir: Path, admin_username: str, admin_password: str, *,
                 host: str = "127.0.0.1", port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.admin_username = admin_username
        self._admin_password = admin_password
        self.host = host
        self.port = port or free_port(host)
        self.log_file = self.workdir / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> MosquittoProcess:
        state = write_dynsec_state(self.workdir / "dynamic-security.json", self.admin_username,
                                   self._admin_password)
        conf = write_config(self.workdir / "mosquitto.conf", port=self.port, dynsec_state=state,
                            host=self.host, log_file=self.log_file)
        self._process = subprocess.Popen([str(find_mosquitto()), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                raise MosquittoError(f"mosquitto exited with {self._process.returncode} on port {self.port}: "
                                     f"{err.strip()} {self.log_tail()}".strip())
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise MosquittoError(f"mosquitto did not listen on {self.host}:{self.port} within {timeout:.0f}s")

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def __enter__(self) -> MosquittoProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
