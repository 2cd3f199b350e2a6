"""The store's versioned schema (device/sync/store_schema.py), against the real release 0.1.0 code:
a 0.1.0 store is upgraded without losing a row or a counter, 0.1.0 still uses a store this release
upgraded (provisioning rolls a failed upgrade back to the previous venv), a newer release's store is
used as it is or refused by name, and a migration that fails, is killed, or finds the disk full leaves
the store at the version it had."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from uuid import uuid4

import pytest
import sqlite_utils

from device.sync.store import Store, StoreError
from device.sync.store_schema import SCHEMA, Migration, MigrationFailed, Schema, SchemaTooNew
from tests.device.sync.test_sync_faults import small_disk

REPO = Path(__file__).resolve().parents[3]
RELEASE_010 = "9a23964814e29cecb8d4d4ee7a3691b472ce1abf"  # tag v0.1.0
TABLES_010 = ("outbox", "meta", "sessions", "commands")


@pytest.fixture(scope="module")
def store_010(tmp_path_factory):
    """Release 0.1.0's device/store.py, as released (git history), imported as a module of its own."""
    shown = subprocess.run(["git", "-C", str(REPO), "show", f"{RELEASE_010}:device/store.py"],
                           capture_output=True, text=True)
    assert shown.returncode == 0, f"release 0.1.0 is read from git history ({RELEASE_010}): {shown.stderr}"
    path = tmp_path_factory.mktemp("release_010") / "store_010.py"
    path.write_text(shown.stdout)
    spec = importlib.util.spec_from_file_location("voxfleet_release_010_store", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    assert not hasattr(module.Store, "schema_version")  # the old code indeed, not today's
    yield module
    del sys.modules[spec.name]


def event(kind="wake_word", pad=0):
    return {"event_id": str(uuid4()), "type": kind, "ts": "2026-11-26T12:00:00Z", "pad": "x" * pad}


def fill_like_a_device(store):
    """What a device running 0.1.0 leaves behind: events (some acknowledged, some dropped over the
    cap, the drops partly reported), voice sessions, and commands in each state."""
    store.append([event("usage", 100)] + [event("wake_word", 300) for _ in range(12)])  # over the cap
    store.append([event("utterance", 50) for _ in range(3)] + [event("usage", 50)])
    first = [row.seq for row in store.peek(limit=2)]
    store.ack(first, dropped_reported=2)
    for i, transcript in enumerate(["what time is it", "set a timer for five minutes", "stop"]):
        store.record_session({"session_id": f"s{i}", "started_at": 1_790_000_000.0 + i,
                              "wake_word": "hey_jarvis", "transcript": transcript, "intent": "x:y",
                              "answer": "ok", "end_state": "answered",
                              "timings_ms": {"wake_detect": 40.0 + i}})
    store.begin_command("c-published", "speak")
    store.finish_command("c-published", '{"ok": true}')
    store.result_published("c-published")
    store.begin_command("c-done", "reload")
    store.finish_command("c-done", '{"ok": true}')
    store.begin_command("c-running", "end_session")  # the agent died while it ran
    return store


def rows(path: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(path)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in TABLES_010}
    finally:
        conn.close()


def schema_of(path: Path) -> list[tuple]:
    """Every table and index of the store but the migrations' record, with its SQL."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT type, name, sql FROM sqlite_master "
                            "WHERE tbl_name != '_sqlite_migrations' ORDER BY name").fetchall()
    finally:
        conn.close()


def applied(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT migration_set, name FROM _sqlite_migrations ORDER BY id").fetchall()
    finally:
        conn.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def upgrade_as_a_later_release(path: Path, *later: Migration) -> int:
    """Open the store as a later release would: today's migrations and some more."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        return Schema([*SCHEMA.migrations, *later]).upgrade(sqlite_utils.Database(conn), str(path))
    finally:
        conn.close()


# -- later releases' migrations, as the tests need them ------------------------------------------------

def add_priority(db):
    db["outbox"].add_column("priority", int)


def drop_bytes(db):  # not additive: 0.1.0 writes this column
    db["outbox"].transform(drop={"bytes"})


def unique_transcripts(db):  # fails on a store where two sessions heard the same words
    db["sessions"].add_column("language", str)
    db["sessions"].create_index(["transcript"], unique=True)


# -- release 0.1.0's stores ----------------------------------------------------------------------------

def test_a_new_store_has_release_010s_schema_as_version_1(store_010, tmp_path):
    store_010.Store(tmp_path / "old.db").close()
    store = Store(tmp_path / "new.db")
    assert store.schema_version() == SCHEMA.latest == 1
    store.close()
    assert schema_of(tmp_path / "new.db") == schema_of(tmp_path / "old.db")
    assert applied(tmp_path / "new.db") == [("voxfleet_device_store", "0001_baseline")]


def test_a_store_made_by_release_010_is_upgraded_keeping_every_row_and_counter(store_010, tmp_path):
    path = tmp_path / "store.db"
    old = store_010.Store(path, cap_bytes=4000)
    fill_like_a_device(old)
    before = rows(path)
    next_seq = old._meta("next_seq")
    dropped_total, dropped_unreported = old.dropped_total(), old.dropped_unreported()
    assert dropped_total > dropped_unreported > 0  # drops happened, and were partly reported
    objects_010 = schema_of(path)
    old.close()

    store = Store(path, cap_bytes=4000)
    assert store.schema_version() == 1
    assert rows(path) == before  # every outbox event, counter, session and command, as it was
    assert schema_of(path) == objects_010  # 0.1.0's tables and indexes as they were
    assert store.dropped_total() == dropped_total and store.dropped_unreported() == dropped_unreported
    assert store.append([event("usage")]) == [next_seq]  # the seq goes on: none is ever reused
    assert store.unpublished_results() == [("c-done", '{"ok": true}')]
    assert store.command_seen("c-running")["state"] == "running"
    assert [s["session_id"] for s in store.recent_sessions()] == ["s2", "s1", "s0"]
    assert store.recent_sessions()[0]["timings_ms"] == {"wake_detect": 42.0}
    assert store.integrity_ok()
    store.close()


@pytest.mark.parametrize("made_by", ["this release", "0.1.0, upgraded"])
def test_release_010_uses_a_store_this_release_upgraded(store_010, tmp_path, made_by):
    """The rollback: provisioning puts the previous venv back after a failed upgrade, and that code
    must keep recording into the store the new code opened."""
    path = tmp_path / "store.db"
    if made_by == "this release":
        fill_like_a_device(Store(path, cap_bytes=4000)).close()
    else:
        fill_like_a_device(store_010.Store(path, cap_bytes=4000)).close()
    upgraded = Store(path)
    queued = [row.seq for row in upgraded.peek(limit=10**6, max_bytes=10**9)]
    upgraded.close()

    old = store_010.Store(path)
    seqs = old.append([event("usage"), event("utterance")])
    assert seqs == [queued[-1] + 1, queued[-1] + 2]
    old.record_session({"session_id": "after-rollback", "started_at": 1_800_000_000.0})
    old.begin_command("c-after", "speak")
    old.finish_command("c-after", "{}")
    assert [row.seq for row in old.peek(limit=10**6, max_bytes=10**9)] == queued + seqs
    old.close()

    store = Store(path)  # and the upgrade, tried again, finds nothing to do
    assert store.schema_version() == 1
    assert [row.seq for row in store.peek(limit=10**6, max_bytes=10**9)] == queued + seqs
    assert store.recent_sessions()[0]["session_id"] == "after-rollback"
    assert ("c-after", "{}") in store.unpublished_results()
    store.close()
    assert applied(path) == [("voxfleet_device_store", "0001_baseline")]


# -- stores from a later release -----------------------------------------------------------------------

def test_each_migration_runs_once(tmp_path):
    path = tmp_path / "store.db"
    runs = []

    def count_runs(db):
        runs.append(db["outbox"].count)
        db["notes"].create({"id": int, "text": str}, pk="id")

    Store(path).close()
    assert [upgrade_as_a_later_release(path, Migration(2, count_runs)) for _ in range(3)] == [2, 2, 2]
    assert runs == [0]
    assert [name for _, name in applied(path)] == ["0001_baseline", "0002_count_runs"]


def test_a_later_additive_store_is_used_as_it_is(tmp_path, caplog):
    path = tmp_path / "store.db"
    store = Store(path)
    store.append([event(), event()])
    store.close()
    assert upgrade_as_a_later_release(path, Migration(2, add_priority)) == 2
    before = schema_of(path), applied(path)

    with caplog.at_level("WARNING", logger="device.sync.store_schema"):
        store = Store(path)
    assert store.schema_version() == 2
    assert "schema is version 2, newer than this release's 1" in caplog.text
    assert store.append([event()]) == [3]  # still recording: the later columns are not this code's concern
    assert store.depth() == 3
    store.close()
    assert (schema_of(path), applied(path)) == before  # never altered


def test_a_later_incompatible_store_is_refused_naming_both_versions(tmp_path):
    path = tmp_path / "store.db"
    store = Store(path)
    store.append([event()])
    store.close()
    later = [Migration(2, add_priority), Migration(3, drop_bytes, additive=False)]
    assert upgrade_as_a_later_release(path, *later) == 3
    before = digest(path)

    with pytest.raises(SchemaTooNew, match=r"store's schema is version 3, newer than this release knows "
                                           r"\(version 1\), and since version 3"):
        Store(path)
    assert digest(path) == before  # not a byte changed
    assert upgrade_as_a_later_release(path, *later) == 3  # and the later release still uses it


def test_a_history_that_is_not_this_schemas_is_refused(tmp_path):
    path = tmp_path / "store.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE _sqlite_migrations SET name = '0001_something_else'")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(StoreError, match=r"0001_something_else.*are not its migrations"):
        Store(path)
    assert digest(path) == before


# -- a migration that fails ----------------------------------------------------------------------------

@pytest.mark.parametrize("made_by", ["this release", "0.1.0"])
def test_a_failed_migration_leaves_the_version_before_it(store_010, tmp_path, made_by):
    path = tmp_path / "store.db"
    make = Store if made_by == "this release" else store_010.Store
    store = make(path)
    for i in range(2):
        store.record_session({"session_id": f"s{i}", "started_at": float(i), "transcript": "what time is it"})
    store.append([event()])
    store.close()
    before = rows(path)

    with pytest.raises(MigrationFailed, match=r"migration 0002_unique_transcripts failed \(UNIQUE constraint "
                                              r"failed.*\); the store stays at schema version 1"):
        upgrade_as_a_later_release(path, Migration(2, unique_transcripts))
    store = Store(path)
    assert store.schema_version() == 1  # the baseline (its own transaction) kept, migration 2 undone
    assert "language" not in store.db["sessions"].columns_dict
    store.close()
    assert rows(path) == before


MIGRATOR = """
import sqlite3, sys
import sqlite_utils
from device.sync.store_schema import SCHEMA, Migration, Schema

def add_language(db):
    db["sessions"].add_column("language", str)
    db.execute("UPDATE sessions SET language = 'en'")
    print("migrating", flush=True)
    sys.stdin.readline()  # held here, in the middle of the migration's transaction, until killed

conn = sqlite3.connect(sys.argv[1], isolation_level=None)
Schema([*SCHEMA.migrations, Migration(2, add_language)]).upgrade(sqlite_utils.Database(conn), sys.argv[1])
"""


def test_a_power_cut_during_a_migration_leaves_the_version_before_it(tmp_path):
    path = tmp_path / "store.db"
    store = Store(path)
    store.record_session({"session_id": "s", "started_at": 1.0, "transcript": "stop"})
    store.append([event("usage")])
    store.close()
    before = rows(path)
    proc = subprocess.Popen([sys.executable, "-c", MIGRATOR, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "migrating"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    store = Store(path)
    assert store.integrity_ok() and store.schema_version() == 1
    assert "language" not in store.db["sessions"].columns_dict
    store.close()
    assert rows(path) == before


OPENER = """
import sys
from device.sync.store import Store
sys.stdin.readline()  # all start together
store = Store(sys.argv[1])
print(store.schema_version(), store.depth(), flush=True)
store.close()
"""


@pytest.mark.parametrize("made_by", ["nobody yet", "0.1.0"])
def test_processes_opening_the_store_at_once_migrate_it_once(store_010, tmp_path, made_by):
    path = tmp_path / "store.db"
    depth = 0
    if made_by == "0.1.0":
        old = store_010.Store(path)
        old.append([event() for _ in range(5)])
        old.close()
        depth = 5
    procs = [subprocess.Popen([sys.executable, "-c", OPENER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outcomes = [proc.communicate(timeout=120) for proc in procs]
    assert [(out.split(), err[-500:]) for out, err in outcomes] == [(["1", str(depth)], "")] * 6
    assert [name for _, name in applied(path)] == ["0001_baseline"]


# -- bad files and full disks --------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["not a database", "a damaged store"])
def test_an_unreadable_file_is_refused_and_kept(tmp_path, damage):
    path = tmp_path / "store.db"
    if damage == "not a database":
        path.write_bytes(b"this is not a SQLite database\n" * 500)
    else:
        store = Store(path)
        store.append([event() for _ in range(50)])
        store.close()
        with open(path, "r+b") as damaged:  # the schema's page, after the 100-byte file header
            damaged.seek(100)
            damaged.write(b"\xa5" * 3000)
    before = digest(path)
    with pytest.raises(StoreError, match="is not a readable SQLite database"):
        Store(path)
    assert digest(path) == before


def test_a_database_that_is_not_a_device_store_is_refused(tmp_path):
    path = tmp_path / "store.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, message TEXT)")
    conn.execute("INSERT INTO outbox(message) VALUES ('keep me')")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=r"table outbox has no column .*: this is not a VoxFleet device"):
        Store(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT message FROM outbox").fetchall() == [("keep me",)]
    assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall() == [("outbox",)]
    conn.close()


def fill_the_disk(folder: Path) -> Path:
    junk = folder / "junk"
    with open(junk, "wb", buffering=0) as out:  # unbuffered: every byte there is, and nothing left over
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError:
            pass
    assert shutil.disk_usage(folder).free == 0
    return junk


@pytest.mark.parametrize("made_by", ["this release", "0.1.0"])
def test_opening_on_a_full_disk_takes_the_reserve(store_010, tmp_path, made_by):
    """An agent restarted on a full disk, after an upgrade or not (release 0.1.0 could not even open
    its store then: setting auto_vacuum rewrote the file's header)."""
    disk = tmp_path / "disk"
    with small_disk(disk) as mounted:
        if not mounted:
            pytest.skip("needs root, to mount a small tmpfs that really fills")
        path = disk / "store.db"
        make = Store if made_by == "this release" else store_010.Store  # 0.1.0 keeps a reserve too
        fill_like_a_device(make(path, cap_bytes=4000)).close()
        before = rows(path)
        fill_the_disk(disk)
        store = Store(path, cap_bytes=4000)
        assert store.schema_version() == 1
        store.close()
        assert rows(path) == before


def test_an_upgrade_with_no_room_at_all_says_so_and_loses_nothing(store_010, tmp_path):
    disk = tmp_path / "disk"
    with small_disk(disk) as mounted:
        if not mounted:
            pytest.skip("needs root, to mount a small tmpfs that really fills")
        path = disk / "store.db"
        fill_like_a_device(store_010.Store(path, cap_bytes=4000, reserve_bytes=0)).close()
        before = rows(path)
        junk = fill_the_disk(disk)
        with pytest.raises(StoreError, match="no room on the disk to open the store"):
            Store(path, cap_bytes=4000, reserve_bytes=0)
        junk.unlink()
        store = Store(path, cap_bytes=4000, reserve_bytes=0)
        assert store.schema_version() == 1
        store.close()
        assert rows(path) == before


def test_migration_versions_must_follow_one_another():
    with pytest.raises(ValueError, match="1, 2, 3"):
        Schema([*SCHEMA.migrations, Migration(3, add_priority)])
