"""The device's local store: the outbox of events waiting for the cloud, and recent voice sessions.

One SQLite file (sqlite-utils) in WAL mode with ``synchronous=FULL``: an event is on disk before
anyone tries to publish it, and a power cut at any moment leaves a database that opens cleanly
(SQLite's journal guarantees it; tests/device/sync/test_store.py kills a writer mid-transaction to check).

The outbox has a cap in bytes. When an append would exceed it, the oldest *detail* events are
dropped first; ``usage`` events are never dropped, because they are what a tenant is billed for,
even if that means the outbox grows past its cap while a device is offline for a long time. How many
events were dropped is counted and reported to the cloud with the next batch, and only cleared once
that batch has been acknowledged.

A full disk is the same policy by other means: when SQLite reports ``SQLITE_FULL``, the oldest
detail events are evicted (and counted) to make room, and the write is tried again; if there is
still no room, ``OutboxFull`` tells the agent to hold the events in memory and retry. SQLite needs
some free space to delete anything (the WAL grows before the file shrinks), so the store keeps a
reserve file beside the database and gives that space up at the moment the disk is full.

Commands from the cloud are recorded here too (``commands``): a command redelivered after a crash
is recognised and never run twice, and its one result waits here until the broker acknowledged it.

The schema is versioned (``device/sync/store_schema.py``): opening a store brings it up to this
release's version, one migration at a time, keeping every row; a store from a newer release is used
as it is when its changes are additive, and refused (``SchemaTooNew``) when they are not. A file that
is not a SQLite database is refused (``StoreError``) and left where it is.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from device.sync.store_schema import SCHEMA, StoreError  # StoreError: raised from Store(), for callers

DEFAULT_CAP_BYTES = 64 * 2**20
RESERVE_BYTES = 2 * 2**20
SQLITE_FULL = 13


class OutboxFull(RuntimeError):
    """No room on the disk for these events, even after evicting detail events."""


def _is_full(exc: sqlite3.Error) -> bool:
    """No room on the disk: SQLITE_FULL, or the WAL's shared-memory file that cannot be made or grown
    (SQLITE_IOERR_SHMSIZE, how a WAL store fails to open on a disk with no byte free)."""
    return (getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL or "full" in str(exc).lower()
            or getattr(exc, "sqlite_errorname", None) == "SQLITE_IOERR_SHMSIZE")


def _locked(method):
    """One SQLite connection is shared by the agent's threads (bus callbacks, sync loop); sqlite3
    connections must not be used by two threads at once, so every public method takes the lock."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


def _writes(method):
    """A write that frees the reserve and tries once more when the disk is full: deleting rows
    (an ack, a prune) must work precisely when the disk has filled up."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.OperationalError as exc:
            if not _is_full(exc) or not self.reserve.exists():
                raise
        self.reserve.unlink(missing_ok=True)
        try:
            return method(self, *args, **kwargs)
        finally:
            self._checkpoint()
            self._make_reserve()

    return wrapper


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    event_id: str
    type: str
    payload: str  # the event as JSON, exactly as it will be sent
    created: float


class Store:
    def __init__(self, path: str | Path, cap_bytes: int = DEFAULT_CAP_BYTES,
                 reserve_bytes: int = RESERVE_BYTES) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.cap_bytes = cap_bytes
        real = self.path.resolve()  # beside the real file, on the disk that fills (SQLite follows links)
        self.reserve = real.with_name(real.name + ".reserve")
        self.reserve_bytes = reserve_bytes
        self._make_reserve()
        self._lock = threading.RLock()
        try:
            self._version = self._open()
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise  # locked, read-only, ...: SQLite's message says which
            raise StoreError(f"{self.path}: no room on the disk to open the store ({exc}); nothing "
                             "in it was changed or lost: free some space and start again") from exc
        except sqlite3.DatabaseError as exc:  # not a database, or a damaged one
            raise StoreError(f"{self.path} is not a readable SQLite database ({exc}); it was left as "
                             "it is: move it aside (a new store is made in its place) or repair it "
                             "with sqlite3's .recover") from exc

    def _open(self) -> int:
        """Connect and bring the store up to date; returns its schema version. On a full disk the
        reserve is given up and the open tried once more: even opening a WAL store needs room (its
        -shm file), and so do a migration and the byte recount."""
        try:
            return self._connect()
        except sqlite3.OperationalError as exc:
            if not _is_full(exc) or not self.reserve.exists():
                raise
        self.reserve.unlink(missing_ok=True)
        version = self._connect()
        self._checkpoint()
        self._make_reserve()
        return version

    def _connect(self) -> int:
        conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
        try:
            self._configure(conn)
            self.db = sqlite_utils.Database(conn)
            version = SCHEMA.upgrade(self.db, where=str(self.path))
            with self.db.conn:  # the running byte count, checked against the rows once per open
                self._set_meta("outbox_bytes", self.db.execute(
                    "SELECT coalesce(sum(bytes), 0) FROM outbox").fetchone()[0])
            return version
        except BaseException:
            conn.close()
            raise

    @staticmethod
    def _configure(conn: sqlite3.Connection) -> None:
        # Pages freed by an eviction go back to the file system (incremental_vacuum below), so the
        # reserve can be claimed again. Set on a new database only, where alone it takes effect: on an
        # existing one it rewrites the file's header, which fails on a full disk and alters a store
        # that may only be read (one from a newer release).
        if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        # A small WAL (checkpointed every 1 MiB, truncated back to 1 MiB): on a nearly full disk
        # the log must not be what fills it, and eviction needs a little room to work in.
        conn.execute("PRAGMA wal_autocheckpoint=256")
        conn.execute("PRAGMA journal_size_limit=1048576")
        conn.execute("PRAGMA foreign_keys=ON")

    @_locked
    def schema_version(self) -> int:
        """The store's schema version (see device/sync/store_schema.py); newer than this release's
        when a newer release upgraded it and this one was rolled back to."""
        return self._version

    # -- counters ---------------------------------------------------------------------------------

    def _meta(self, key: str, default: int = 0) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return int(row[0]) if row else default

    def _set_meta(self, key: str, value: int | float) -> None:
        self.db.execute("INSERT INTO meta(key, value) VALUES(?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value", [key, str(value)])

    # -- outbox -----------------------------------------------------------------------------------

    @_locked
    def append(self, events: Iterable[dict]) -> list[int]:
        """Add events (dicts with event_id and type) atomically; returns the sequence numbers given.

        The per-device ``seq`` is assigned here, inside the same transaction, so it is monotonic
        across restarts and never reused. Raises OutboxFull when the disk has no room left.
        """
        events = list(events)
        try:
            return self._append(events)
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
        evicted = self._evict_for_room(sum(len(json.dumps(e, default=str)) for e in events))
        try:
            return self._append(events)
        except sqlite3.OperationalError as exc:
            if _is_full(exc):
                raise OutboxFull(f"the disk holding {self.path} is full ({evicted} detail events "
                                 f"evicted, still no room for {len(events)} events)") from exc
            raise

    def _append(self, events: list[dict]) -> list[int]:
        seqs: list[int] = []
        added = 0
        with self.db.conn:  # one transaction: all or nothing
            self.db.execute("BEGIN IMMEDIATE")
            next_seq = self._meta("next_seq", 1)
            now = time.time()
            for event in events:
                event = {**event, "seq": next_seq}
                payload = json.dumps(event, separators=(",", ":"), default=str)
                self.db.execute(
                    "INSERT INTO outbox(seq, event_id, type, usage, payload, bytes, created) "
                    "VALUES(?, ?, ?, ?, ?, ?, ?)",
                    [next_seq, str(event["event_id"]), event["type"], int(event["type"] == "usage"),
                     payload, len(payload), now])
                seqs.append(next_seq)
                added += len(payload)
                next_seq += 1
            self._set_meta("next_seq", next_seq)
            self._set_meta("outbox_bytes", self._meta("outbox_bytes") + added)
            self._enforce_cap()
        return seqs

    def _delete(self, seqs: list[int]) -> int:
        """Delete outbox rows (inside the caller's transaction), keeping the byte count in step."""
        freed = 0
        for start in range(0, len(seqs), 500):
            chunk = seqs[start:start + 500]
            freed += sum(size for (size,) in self.db.execute(
                f"DELETE FROM outbox WHERE seq IN ({','.join('?' * len(chunk))}) RETURNING bytes", chunk))
        self._set_meta("outbox_bytes", max(0, self._meta("outbox_bytes") - freed))
        return freed

    def _make_reserve(self) -> None:
        """Claim the reserve's space now, while there is some (real blocks: zeros, not a sparse file)."""
        have = self.reserve.stat().st_size if self.reserve.exists() else 0
        if not self.reserve_bytes or have >= self.reserve_bytes:
            return
        try:
            with open(self.reserve, "wb") as out:
                out.write(b"\0" * self.reserve_bytes)
                out.flush()
                os.fsync(out.fileno())
        except OSError:  # no room for it yet; tried again after the next eviction
            self.reserve.unlink(missing_ok=True)

    def _evict_for_room(self, needed: int) -> int:
        """The disk is full: drop the oldest detail events, 4x what is needed or a quarter of the
        outbox, whichever is more (usage stays whatever it costs)."""
        total = self.outbox_bytes()
        target = max(0, min(total - 4 * needed, int(total * 0.75)))
        before = self._meta("dropped_total")
        self.reserve.unlink(missing_ok=True)  # the room SQLite needs to delete
        for _ in range(2):  # a checkpoint may free the room the eviction itself needs
            try:
                with self.db.conn:
                    self.db.execute("BEGIN IMMEDIATE")
                    self._enforce_cap(target)
                break
            except sqlite3.OperationalError as exc:
                if not _is_full(exc):
                    raise
                self._checkpoint()
        self._checkpoint()
        self._make_reserve()
        return self._meta("dropped_total") - before

    def _checkpoint(self) -> None:
        """Give freed pages back to the file system and shrink the WAL, as far as there is room."""
        try:
            self.db.execute("PRAGMA incremental_vacuum").fetchall()
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise

    def _enforce_cap(self, cap: int | None = None) -> None:
        cap = self.cap_bytes if cap is None else cap
        total = self.outbox_bytes()
        if total <= cap:
            return
        dropped = 0
        rows = self.db.execute("SELECT seq, bytes FROM outbox WHERE usage = 0 ORDER BY seq").fetchall()
        doomed = []
        for seq, size in rows:
            if total <= cap:
                break
            doomed.append(seq)
            total -= size
            dropped += 1
        self._delete(doomed)
        if dropped:
            self._set_meta("dropped_unreported", self._meta("dropped_unreported") + dropped)
            self._set_meta("dropped_total", self._meta("dropped_total") + dropped)

    @_locked
    def peek(self, limit: int = 500, max_bytes: int = 200 * 1024) -> list[OutboxRow]:
        """The oldest queued events, in seq order, up to a count and a payload size."""
        rows, size = [], 0
        for seq, event_id, type_, payload, created in self.db.execute(
                "SELECT seq, event_id, type, payload, created FROM outbox ORDER BY seq LIMIT ?", [limit]):
            if rows and size + len(payload) > max_bytes:
                break
            rows.append(OutboxRow(seq, event_id, type_, payload, created))
            size += len(payload)
        return rows

    @_locked
    @_writes
    def ack(self, seqs: Iterable[int], dropped_reported: int = 0) -> None:
        """The broker acknowledged these events (QoS 1 PUBACK): now, and only now, they go."""
        seqs = list(seqs)
        with self.db.conn:
            self.db.execute("BEGIN IMMEDIATE")
            self._delete(seqs)
            if dropped_reported:
                self._set_meta("dropped_unreported",
                               max(0, self._meta("dropped_unreported") - dropped_reported))
            self._set_meta("last_ack", time.time())

    @_locked
    def depth(self) -> int:
        return self.db.execute("SELECT count(*) FROM outbox").fetchone()[0]

    @_locked
    def outbox_bytes(self) -> int:
        """Kept as a running count (a SUM over a long outbox on every append would be O(n))."""
        return self._meta("outbox_bytes")

    @_locked
    def oldest_age(self) -> float | None:
        row = self.db.execute("SELECT min(created) FROM outbox").fetchone()
        return None if row[0] is None else max(0.0, time.time() - row[0])

    @_locked
    def dropped_unreported(self) -> int:
        return self._meta("dropped_unreported")

    @_locked
    def dropped_total(self) -> int:
        return self._meta("dropped_total")

    # -- local history ------------------------------------------------------------------------------

    @_locked
    @_writes
    def record_session(self, session: dict) -> None:
        row = {k: session.get(k) for k in ("session_id", "started_at", "wake_word", "transcript", "intent",
                                          "answer", "end_state")}
        row["timings"] = json.dumps(session.get("timings_ms") or {})
        self.db["sessions"].upsert(row, pk="session_id")

    @_locked
    def recent_sessions(self, limit: int = 50) -> list[dict]:
        rows = self.db.execute_returning_dicts(
            "SELECT * FROM sessions ORDER BY started_at DESC LIMIT ?", [limit])
        for row in rows:
            row["timings_ms"] = json.loads(row.pop("timings") or "{}")
        return rows

    @_locked
    @_writes
    def prune_sessions(self, older_than_days: float) -> int:
        cutoff = time.time() - older_than_days * 86400
        with self.db.conn:
            cursor = self.db.execute("DELETE FROM sessions WHERE started_at < ?", [cutoff])
        return cursor.rowcount

    # -- commands from the cloud ---------------------------------------------------------------------

    @_locked
    def command_seen(self, command_id: str) -> dict | None:
        rows = self.db.execute_returning_dicts("SELECT * FROM commands WHERE command_id = ?", [command_id])
        return rows[0] if rows else None

    @_locked
    @_writes
    def begin_command(self, command_id: str, action: str) -> None:
        """Recorded before it runs: if the agent dies mid-command, the redelivery is recognised."""
        with self.db.conn:
            self.db.execute("INSERT INTO commands(command_id, action, state, result, published, received) "
                            "VALUES(?, ?, 'running', NULL, 0, ?)", [command_id, action, time.time()])

    @_locked
    @_writes
    def finish_command(self, command_id: str, result: str) -> None:
        with self.db.conn:
            self.db.execute("UPDATE commands SET state = 'done', result = ? WHERE command_id = ?",
                            [result, command_id])

    @_locked
    def unpublished_results(self) -> list[tuple[str, str]]:
        return [tuple(row) for row in self.db.execute(
            "SELECT command_id, result FROM commands WHERE state = 'done' AND published = 0 "
            "ORDER BY received")]

    @_locked
    @_writes
    def result_published(self, command_id: str) -> None:
        with self.db.conn:
            self.db.execute("UPDATE commands SET published = 1 WHERE command_id = ?", [command_id])

    @_locked
    @_writes
    def prune_commands(self, older_than_days: float = 7.0) -> int:
        cutoff = time.time() - older_than_days * 86400
        with self.db.conn:
            cursor = self.db.execute("DELETE FROM commands WHERE received < ? AND published = 1", [cutoff])
        return cursor.rowcount

    @_locked
    def integrity_ok(self) -> bool:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    @_locked
    def close(self) -> None:
        self.db.conn.close()
