"""One pairing attempt at a time, run in a background thread so the page can show the code and poll.

The protocol itself is device.sync.pairing's (the same as ``voxfleet device pair``); this only keeps its
state where the pages can read it: waiting (with the code), paired, expired, failed or cancelled.

Each attempt is a ``_Run`` with its own snapshot and stop event. ``start`` and ``cancel`` hold one
lock from end to end, so two pages pressing "Get a pairing code" at once leave exactly one attempt
running; a run that was replaced or cancelled may still be finishing an HTTP request, and whatever
it reports afterwards is ignored (it is no longer the current run), and it never writes cloud.json.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from device.sync import pairing


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


@dataclass(eq=False)
class _Run:
    cloud: str
    snapshot: Snapshot
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class PairingJob:
    """The setup web's one pairing attempt; ``snapshot`` is what the cloud page shows."""

    JOIN_TIMEOUT = 15.0  # how long cancel waits for the old run (an HTTP request has a 10 s timeout)

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._lock = threading.Lock()  # guards _current and the current run's snapshot
        self._control = threading.Lock()  # held across start() and cancel()
        self._current: _Run | None = None

    def snapshot(self) -> Snapshot:
        """A copy of the current run's state (``idle`` when there is none)."""
        with self._lock:
            return replace(self._current.snapshot) if self._current else Snapshot("idle")

    def _set(self, run: _Run, **changes: object) -> bool:
        """Record ``changes`` for ``run``; ignored (False) once ``run`` is no longer the current one."""
        with self._lock:
            if run is not self._current:
                return False
            for key, value in changes.items():
                setattr(run.snapshot, key, value)
            return True

    def start(self, cloud: str) -> None:
        """Check the cloud (PairingFailed with a clear reason), then ask for a code in the background."""
        pairing.check_cloud(cloud)  # network, may take seconds: before taking the lock
        cloud = cloud.rstrip("/")
        with self._control:
            self._cancel_current()
            run = _Run(cloud, Snapshot("starting", cloud=cloud))
            run.thread = threading.Thread(target=self._run, args=(run,), name="pairing", daemon=True)
            with self._lock:
                self._current = run
            run.thread.start()

    def _run(self, run: _Run) -> None:
        def sleep(seconds: float) -> None:
            if run.stop.wait(seconds):
                raise _Cancelled

        try:
            secret = pairing.new_secret()
            code = pairing.request_code(run.cloud, secret)
            if run.stop.is_set():
                raise _Cancelled
            self._set(run, state="waiting", code=code.code, expires_at=code.expires_at)
            credentials = pairing.wait_for_claim(run.cloud, code, secret, sleep=sleep)
            with self._lock:  # cancel() stops the run under this lock: saved only while still current
                if run.stop.is_set() or run is not self._current:
                    raise _Cancelled
                pairing.save_pairing(self.data_dir, run.cloud, credentials)
                run.snapshot.state = "paired"
        except _Cancelled:
            self._set(run, state="cancelled")
        except pairing.PairingFailed as exc:
            expired = "expired" in str(exc)
            self._set(run, state="expired" if expired else "failed",
                      error=("The code expired before anyone claimed it. Ask for a new code." if expired
                             else str(exc)))
        except Exception as exc:  # the page must show something, whatever went wrong
            self._set(run, state="failed", error=f"pairing failed: {type(exc).__name__}: {exc}")

    def _cancel_current(self) -> None:
        """Stop the current run (under ``_control``); its later reports are ignored."""
        with self._lock:
            run, self._current = self._current, None
            if run is not None:
                run.stop.set()
        if run is not None and run.thread is not None and run.thread.is_alive():
            run.thread.join(timeout=self.JOIN_TIMEOUT)

    def cancel(self) -> None:
        """Stop any attempt; the page shows ``idle`` again."""
        with self._control:
            self._cancel_current()
