"""Sign-in throttling per client address: after a few wrong passwords, that address waits.

Hand-written (about 40 lines) rather than Flask-Limiter: the rule counts only *failed* sign-ins and
needs the remaining wait for the message, in memory on one small device; a rate-limit library counts
every request and would add a storage backend for nothing.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Record:
    failures: int = 0
    locked_until: float = 0.0
    lockouts: int = 0


class LoginThrottle:
    def __init__(self, max_failures: int = 5, wait_s: float = 30.0, max_wait_s: float = 900.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.wait_s = wait_s
        self.max_wait_s = max_wait_s
        self.clock = clock
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    def wait_left(self, address: str) -> int:
        """Whole seconds this address must still wait before trying again (0: it may try now)."""
        with self._lock:
            record = self._records.get(address)
            if record is None:
                return 0
            return max(0, math.ceil(record.locked_until - self.clock()))

    def failed(self, address: str) -> int:
        """Count a wrong password; returns the wait it caused (0 while under the limit)."""
        with self._lock:
            record = self._records.setdefault(address, _Record())
            record.failures += 1
            if record.failures < self.max_failures:
                return 0
            # Each lockout doubles the wait, so guessing stays slow however long it goes on.
            wait = min(self.max_wait_s, self.wait_s * 2 ** record.lockouts)
            record.lockouts += 1
            record.failures = 0
            record.locked_until = self.clock() + wait
            return math.ceil(wait)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._records.pop(address, None)
