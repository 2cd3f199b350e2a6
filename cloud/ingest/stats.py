"""A worker's counters, kept in memory and written to ``ingest_workers`` every few seconds.

The operator portal reads that table to see whether ingest keeps up (lag), what it refuses and
why (rejections by reason), and which workers are alive (``updated_at``). Rejections are also
logged, at most a few per reason a minute, so a device flooding bad messages cannot flood the log.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from cloud.db import IngestWorkerStats, utcnow
from cloud.ingest.store import Report
from cloud.ingest.validate import Reason, Rejected
from cloud.scoping import PlatformScope

log = logging.getLogger("cloud.ingest")

LOG_PER_REASON_PER_MINUTE = 10
MAX_UNKNOWN_FIELD_NAMES = 200  # distinct unknown field paths counted per worker (a flood stays bounded)


@dataclass
class WorkerStats:
    worker_id: str
    host: str
    pid: int = field(default_factory=os.getpid)
    started_at: datetime = field(default_factory=utcnow)
    received: int = 0
    stored_messages: int = 0
    stored_events: int = 0
    duplicate_events: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    unknown_fields: Counter[str] = field(default_factory=Counter)
    tap_frames: int = 0
    dropped_reported: int = 0
    last_message_at: datetime | None = None
    lag_s: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _logged: dict[str, tuple[float, int]] = field(default_factory=dict, repr=False)

    def message_received(self, at: datetime) -> None:
        with self._lock:
            self.received += 1
            self.last_message_at = at

    def reject(self, reason: Reason, detail: str, topic: str) -> None:
        """Count and log one rejection: the topic and the reason, never the payload."""
        with self._lock:
            self.rejected[reason.value] += 1
            window_start, count = self._logged.get(reason.value, (0.0, 0))
            now = time.monotonic()
            if now - window_start > 60:
                if count > LOG_PER_REASON_PER_MINUTE:
                    log.warning("ingest: %d more %s rejections in the last minute were not logged",
                                count - LOG_PER_REASON_PER_MINUTE, reason.value)
                window_start, count = now, 0
            self._logged[reason.value] = (window_start, count + 1)
        if count < LOG_PER_REASON_PER_MINUTE:
            log.warning("ingest: rejected a message on %s (%s): %s", topic, reason.value, detail)

    def unknown(self, paths: tuple[str, ...]) -> None:
        """Fields a newer device sent that this release ignores: counted by path (list positions
        folded: ``event_batch.events.*.emotion``), each new path logged once."""
        if not paths:
            return
        new = []
        with self._lock:
            for path in paths:
                key = ".".join("*" if part.isdigit() else part for part in path.split("."))
                if key not in self.unknown_fields:
                    if len(self.unknown_fields) >= MAX_UNKNOWN_FIELD_NAMES:
                        key = "(other)"
                    elif key != "(other)":
                        new.append(key)
                self.unknown_fields[key] += 1
        if new:
            log.info("ingest: ignored fields this release does not know: %s", ", ".join(new))

    def rejected_verdict(self, verdict: Rejected, topic: str) -> None:
        self.reject(verdict.reason, verdict.detail, topic)

    def committed(self, report: Report, messages: int) -> None:
        with self._lock:
            self.stored_messages += messages
            self.stored_events += report.stored_events
            self.duplicate_events += report.duplicate_events
            self.tap_frames += report.tap_frames
            self.dropped_reported += report.dropped_reported
            if report.newest_ts is not None:
                self.lag_s = max(0.0, (utcnow() - report.newest_ts).total_seconds())

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "worker_id": self.worker_id, "host": self.host, "pid": self.pid,
                "started_at": self.started_at,
                "received": self.received, "stored_messages": self.stored_messages,
                "stored_events": self.stored_events, "duplicate_events": self.duplicate_events,
                "rejected": dict(self.rejected), "tap_frames": self.tap_frames,
                "unknown_fields": dict(self.unknown_fields) or None,
                "dropped_reported": self.dropped_reported, "last_message_at": self.last_message_at,
                "lag_s": self.lag_s,
            }

    def persist(self, sessions: sessionmaker, status: str = "running") -> None:
        """Write the counters to ``ingest_workers`` (one row per worker id, replaced each time)."""
        values = {**self.snapshot(), "status": status, "updated_at": utcnow()}
        db: Session = sessions()
        try:
            platform = PlatformScope(db)
            row = db.get(IngestWorkerStats, self.worker_id)
            if row is None:
                platform.add(IngestWorkerStats(**values))
            else:
                for name, value in values.items():
                    setattr(row, name, value)
            platform.commit()
        finally:
            db.close()
