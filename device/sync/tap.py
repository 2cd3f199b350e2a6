"""The bus tap: a support engineer watches a device's messagebus from the cloud, briefly and cheaply.

A tap is started and stopped by cloud commands. It forwards only the message types asked for
(prefixes, e.g. ``recognizer_loop:``), at most ``rate`` messages per second (a token bucket; what it
holds back is counted and reported, never silently lost from view), trims large payloads, and turns
itself off after ``duration`` seconds so a forgotten tap cannot stream for ever.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

from protocol import messages

MAX_RATE = 100.0  # messages per second
MAX_DURATION = 3600.0
DEFAULT_DURATION = 300.0
MAX_DATA_BYTES = 1536  # a larger data part is replaced by its size: a full frame stays < 256 KiB
FRAME_MESSAGES = 100  # protocol.messages.TapFrame's limit


class TapError(ValueError):
    """Arguments a tap cannot run with; the text says which."""


@dataclass
class BusTap:
    types: tuple[str, ...]  # prefixes; empty = every message
    rate: float
    until: float
    _tokens: float = 0.0
    _last: float = 0.0
    _buffer: list[dict] = field(default_factory=list)
    suppressed: int = 0
    forwarded: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_args(cls, args: dict, now: float) -> BusTap:
        types = args.get("types", [])
        if isinstance(types, str):
            types = [types]
        if not isinstance(types, list) or not all(isinstance(t, str) and 0 < len(t) <= 128 for t in types) \
                or len(types) > 32:
            raise TapError("types must be a list of up to 32 message type prefixes")
        try:
            rate = float(args.get("rate", 20))
            duration = float(args.get("duration_s", DEFAULT_DURATION))
        except (TypeError, ValueError) as exc:
            raise TapError("rate and duration_s must be numbers") from exc
        if not 0 < rate <= MAX_RATE:
            raise TapError(f"rate must be more than 0 and at most {MAX_RATE:.0f} messages per second")
        if not 0 < duration <= MAX_DURATION:
            raise TapError(f"duration_s must be more than 0 and at most {MAX_DURATION:.0f}")
        return cls(tuple(types), rate, now + duration, _tokens=rate, _last=now)

    def wants(self, kind: str) -> bool:
        return not self.types or kind.startswith(self.types)

    def offer(self, kind: str, data: dict, now: float) -> None:
        """One bus message seen by the agent; kept for the next frame if the filter and rate allow."""
        if not self.wants(kind):
            return
        with self._lock:
            self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens < 1.0 or len(self._buffer) >= 10 * FRAME_MESSAGES:
                self.suppressed += 1
                return
            self._tokens -= 1.0
            self._buffer.append({"t": round(now, 3), "type": kind[:200], "data": _trimmed(data)})

    def expired(self, now: float) -> bool:
        return now >= self.until

    def frames(self) -> list[messages.TapFrame]:
        """What was kept since the last call, as frames ready to publish (with the suppressed count)."""
        with self._lock:
            kept, self._buffer = self._buffer, []
            suppressed, self.suppressed = self.suppressed, 0
        self.forwarded += len(kept)
        out = []
        for start in range(0, len(kept), FRAME_MESSAGES):
            out.append(messages.TapFrame(ts=datetime.now(UTC), messages=kept[start:start + FRAME_MESSAGES],
                                         suppressed=suppressed if start == 0 else 0))
        if not out and suppressed:
            out.append(messages.TapFrame(ts=datetime.now(UTC), messages=[], suppressed=suppressed))
        return out


def _trimmed(data: dict) -> dict:
    try:
        text = json.dumps(data, default=str)
    except (TypeError, ValueError):
        return {"unserialisable": True}
    if len(text) > MAX_DATA_BYTES:
        return {"trimmed_bytes": len(text)}
    return json.loads(text)
