"""One pairing attempt at a time, run in a background thread so the page can show the code and poll.

The protocol itself is device.pairing's (the same as ``voxfleet device pair``); this only keeps its
state where the pages can read it: waiting (with the code), paired, expired, failed or cancelled.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from device import pairing


class _Cancelled(Exception):
    pass


@dataclass
class Snapshot:
    state: str  # idle, starting, waiting, paired, expired, failed, cancelled
    cloud: str | None = None
    code: str | None = None
    expires_at: datetime | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        return {"state": self.state, "cloud": self.cloud, "code": self.code, "error": self.error,
                "expires_at": self.expires_at.isoformat() if self.expires_at else None}


class PairingJob:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._lock = threading.Lock()
        self._snapshot = Snapshot("idle")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(**vars(self._snapshot))

    def _set(self, **changes: object) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self._snapshot, key, value)

    def start(self, cloud: str) -> None:
        """Check the cloud (PairingFailed with a clear reason), then ask for a code in the background."""
        pairing.check_cloud(cloud)
        self.cancel()
        self._stop = threading.Event()
        with self._lock:
            self._snapshot = Snapshot("starting", cloud=cloud.rstrip("/"))
        self._thread = threading.Thread(target=self._run, args=(cloud.rstrip("/"), self._stop),
                                        name="pairing", daemon=True)
        self._thread.start()

    def _run(self, cloud: str, stop: threading.Event) -> None:
        def sleep(seconds: float) -> None:
            if stop.wait(seconds):
                raise _Cancelled

        try:
            secret = pairing.new_secret()
            code = pairing.request_code(cloud, secret)
            self._set(state="waiting", code=code.code, expires_at=code.expires_at)
            credentials = pairing.wait_for_claim(cloud, code, secret, sleep=sleep)
            if stop.is_set():
                raise _Cancelled
            pairing.save_pairing(self.data_dir, cloud, credentials)
            self._set(state="paired")
        except _Cancelled:
            self._set(state="cancelled")
        except pairing.PairingFailed as exc:
            expired = "expired" in str(exc)
            self._set(state="expired" if expired else "failed",
                      error=("The code expired before anyone claimed it. Ask for a new code." if expired
                             else str(exc)))
        except Exception as exc:  # the page must show something, whatever went wrong
            self._set(state="failed", error=f"pairing failed: {type(exc).__name__}: {exc}")

    def cancel(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout=15)
        self._thread = None
        self._set(state="idle", code=None, expires_at=None, error=None)
