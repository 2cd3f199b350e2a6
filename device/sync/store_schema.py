"""The device store's schema, as an ordered list of migrations, so a device that upgrades keeps its
outbox, its local history and its command records.

The migrations are sqlite-utils' own (``sqlite_utils.Migrations``, which sqlite-utils 4 took over from
the sqlite-migrate plugin): each one is recorded by name in the ``_sqlite_migrations`` table when it
has run, and runs at most once. Around them this module adds what a device in a fleet needs:

- Numbered versions. Migration N is named ``NNNN_what``; the store's schema version is the highest
  one recorded. A store made by release 0.1.0 has no record (version 0): migration 1, the 0.1.0
  schema, creates only what is missing, so such a store is adopted as it is.
- One transaction per migration, taken with ``BEGIN IMMEDIATE``: two processes opening the store at
  once (the agent, ``voxfleet device sync``) never both run one, and a migration that fails, or a
  power cut in the middle of one, leaves the store at the version before it.
- A store from a newer release. Migrations are additive (new tables, new nullable columns, new
  indexes), so the previous release can still use an upgraded store: that is what lets provisioning
  roll a device back to its previous software when an upgrade fails its health check. A newer store
  is therefore opened as it is, never altered, as long as every migration past this release's is
  additive. One that is not raises the store's ``schema_compatible_from`` (in ``meta``) to its own
  version, and a release older than that refuses the store with an error naming both versions.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

import sqlite_utils

LOG = logging.getLogger(__name__)
SET_NAME = "voxfleet_device_store"  # the migration set in _sqlite_migrations
COMPATIBLE_FROM = "schema_compatible_from"  # meta key: the oldest schema version that may use the store
_NAME = re.compile(r"^(\d{4})_\w+$")


class StoreError(RuntimeError):
    """The store cannot be opened as it is. The message names the file, why and what to do; the file
    was left as it was."""


class SchemaTooNew(StoreError):
    """The store was upgraded by a newer release in a way this release cannot use."""


class MigrationFailed(StoreError):
    """A migration raised: its transaction was rolled back, the store is at the version before it."""


@dataclass(frozen=True)
class Migration:
    version: int
    apply: Callable[[sqlite_utils.Database], None]
    additive: bool = True  # False: releases older than this version must refuse the store

    @property
    def name(self) -> str:
        return f"{self.version:04d}_{self.apply.__name__}"


class Schema:
    """An ordered list of migrations, versions 1 to N, and the rules for opening a store with them."""

    def __init__(self, migrations: list[Migration], set_name: str = SET_NAME) -> None:
        versions = [m.version for m in migrations]
        if versions != list(range(1, len(migrations) + 1)):
            raise ValueError(f"migration versions must run 1, 2, 3... without a gap; got {versions}")
        self.migrations = list(migrations)
        self.latest = len(migrations)
        self._set = sqlite_utils.Migrations(set_name)
        for migration in migrations:
            self._set(name=migration.name)(migration.apply)

    def upgrade(self, db: sqlite_utils.Database, where: str) -> int:
        """Run the pending migrations, each in its own transaction; returns the store's version
        (0 before any: a new file or a store from 0.1.0).

        ``db``'s connection must leave transactions to its caller (``isolation_level=None``, as the
        store's does); ``where`` names the store in errors. Raises SchemaTooNew for a store that a
        newer release changed in a way this one cannot use, StoreError for a store whose history is
        not this schema's (the store is not touched in either case), MigrationFailed for a migration
        that raised and sqlite3.OperationalError as SQLite raised it (a full disk, say): the store
        then stays at the version before that migration.
        """
        while True:
            with db.conn:
                db.execute("BEGIN IMMEDIATE")  # the write lock first: no other process migrates meanwhile
                version = self._check(db, where)
                pending = self._set.pending(db)
                if not pending or version > self.latest:
                    return version
                step = self.migrations[_version_of(pending[0].name) - 1]
                try:
                    self._set.apply(db, stop_before=[m.name for m in pending[1:]])
                except sqlite3.OperationalError:
                    raise  # a full disk, a lock, bad SQL: the caller's (the store retries a full disk)
                except Exception as exc:
                    raise MigrationFailed(f"{where}: migration {step.name} failed ({exc}); the store stays "
                                          f"at schema version {version}, nothing in it lost") from exc
                if not step.additive:
                    db.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) "
                               "DO UPDATE SET value = excluded.value", [COMPATIBLE_FROM, str(step.version)])
            LOG.info("%s: schema upgraded to version %d (%s)", where, step.version, step.name)

    def _check(self, db: sqlite_utils.Database, where: str) -> int:
        applied = [m.name for m in self._set.applied(db)]
        bad = [name for name in applied if not _NAME.match(name)]
        if bad:
            raise StoreError(f"{where}: unknown migrations {bad} in {self._set.migrations_table}; "
                             "this is not a store this software made")
        version = max((_version_of(name) for name in applied), default=0)
        known = {m.name for m in self.migrations}
        if version <= self.latest:
            foreign = [name for name in applied if name not in known]
            if foreign:
                raise StoreError(f"{where}: migrations {foreign} carry this release's version numbers but "
                                 "are not its migrations; the store's history does not match this software")
            return version
        ours = [name for name in applied if _version_of(name) <= self.latest]
        if sorted(ours) != sorted(known):
            raise StoreError(f"{where}: schema version {version} with a history that does not match "
                             f"this release's versions 1 to {self.latest}")
        floor = _compatible_from(db)
        if floor > self.latest:
            raise SchemaTooNew(
                f"{where}: the store's schema is version {version}, newer than this release knows "
                f"(version {self.latest}), and since version {floor} it cannot be used by older "
                "releases. Install the release that upgraded it (or newer); the store was left as it is")
        LOG.warning("%s: the store's schema is version %d, newer than this release's %d; its changes "
                    "since are additive, so it is used as it is", where, version, self.latest)
        return version


def _version_of(name: str) -> int:
    return int(name[:4])


def _compatible_from(db: sqlite_utils.Database) -> int:
    if not db["meta"].exists():
        return 1
    row = db.execute("SELECT value FROM meta WHERE key = ?", [COMPATIBLE_FROM]).fetchone()
    return int(row[0]) if row else 1


# -- the migrations, oldest first: append only; a released migration is never edited -----------------

# table: (columns, primary key, columns that may not be NULL)
BASELINE_TABLES: dict[str, tuple[dict[str, type], str, set[str]]] = {
    "outbox": ({"seq": int, "event_id": str, "type": str, "usage": int, "payload": str, "bytes": int,
                "created": float}, "seq", {"event_id", "payload"}),
    "meta": ({"key": str, "value": str}, "key", set()),
    "sessions": ({"session_id": str, "started_at": float, "wake_word": str, "transcript": str,
                  "intent": str, "answer": str, "end_state": str, "timings": str}, "session_id", set()),
    "commands": ({"command_id": str, "action": str, "state": str, "result": str, "published": int,
                  "received": float}, "command_id", set()),
}
BASELINE_INDEXES: list[tuple[str, list[str], bool]] = [
    ("outbox", ["event_id"], True), ("outbox", ["usage", "seq"], False), ("sessions", ["started_at"], False),
]


def baseline(db: sqlite_utils.Database) -> None:
    """Release 0.1.0's schema. Its stores already have it (0.1.0 created each table when missing),
    so this creates only what is missing and checks that the tables it finds are the ones it expects."""
    for name, (columns, pk, not_null) in BASELINE_TABLES.items():
        table = db.table(name)
        if table.exists():
            missing = sorted(set(columns) - set(table.columns_dict))
            if missing:
                raise StoreError(f"table {name} has no column {', '.join(missing)}: this is not a "
                                 "VoxFleet device store")
        else:
            table.create(columns, pk=pk, not_null=not_null or None)
    for name, columns, unique in BASELINE_INDEXES:
        db.table(name).create_index(columns, unique=unique, if_not_exists=True)


SCHEMA = Schema([Migration(1, baseline)])
