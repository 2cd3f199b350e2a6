"""Token-bucket rate limits for the API, held in this process's memory.

Each bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; a request takes
one. Kept in memory on purpose: no shared store to run, and a lost bucket only forgives a client.
With several gunicorn workers each worker holds its own buckets, so a client can get up to
``workers x`` the configured rate; a shared store (Redis) is the step up when that matters.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    """``burst`` requests at once, then ``per_minute`` a minute on average."""

    burst: int
    per_minute: float

    @property
    def rate(self) -> float:
        return self.per_minute / 60.0


# Defaults: generous for scripts, small enough that a runaway loop cannot starve the database.
DEFAULT_KEY_LIMIT = Limit(burst=120, per_minute=600)
# Unauthenticated callers (health, openapi.json, failed logins) are counted per client address.
DEFAULT_IP_LIMIT = Limit(burst=30, per_minute=120)
# Buckets idle long enough to be full again are forgotten once there are this many.
PRUNE_ABOVE = 10_000


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens, self.updated = tokens, updated


class RateLimiter:
    """Thread-safe buckets by name (``key:<prefix>``, ``ip:<address>``)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, name: str, limit: Limit) -> float:
        """Take a token: 0.0 when allowed, else the seconds to wait before one is available."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(name)
            if bucket is None:
                if len(self._buckets) >= PRUNE_ABOVE:
                    self._prune(now, limit)
                bucket = self._buckets[name] = _Bucket(float(limit.burst), now)
            else:
                elapsed = max(0.0, now - bucket.updated)
                bucket.tokens = min(float(limit.burst), bucket.tokens + elapsed * limit.rate)
                bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            if limit.rate <= 0:
                return math.inf
            return (1.0 - bucket.tokens) / limit.rate

    def _prune(self, now: float, limit: Limit) -> None:
        refill = limit.burst / limit.rate if limit.rate > 0 else math.inf
        for name in [n for n, b in self._buckets.items() if now - b.updated >= refill]:
            del self._buckets[name]

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()


def retry_after_header(wait: float) -> str:
    """Whole seconds, at least 1, as Retry-After wants them."""
    return str(max(1, math.ceil(min(wait, 86400.0))))
