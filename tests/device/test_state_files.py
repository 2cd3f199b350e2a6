"""The device's run-state files (run/volume.json, run/health.json, run/sync.json) are written through
device.files.write_atomic: writers at the same moment never take each other's temp file (a fixed
``.tmp`` name let one writer rename the other's, and the other's rename then failed), a reader always
finds a whole file, and no temp file is left behind."""

from __future__ import annotations

import json
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from device.paths import DevicePaths
from device.settings import DeviceSettings
from device.stack.supervisor import Supervisor
from device.stack.volume import read_volume, volume_file, write_volume
from device.sync.agent import Agent

WRITERS = 6
ROUNDS = 60


def volume_writer(root: Path) -> tuple[Callable[[int], None], Path]:
    return (lambda i: write_volume(root, percent=i / 100, muted=bool(i % 2))), volume_file(root)


def health_writer(root: Path) -> tuple[Callable[[int], None], Path]:
    supervisor = Supervisor(DevicePaths.at(root).create(), DeviceSettings(), services=())
    return (lambda i: supervisor._write_health()), root / "run" / "health.json"


def sync_writer(root: Path) -> tuple[Callable[[int], None], Path]:
    agent = Agent(root)
    return (lambda i: agent.write_sync_state(float(i))), root / "run" / "sync.json"


@pytest.mark.parametrize("make", [volume_writer, health_writer, sync_writer],
                         ids=["volume", "health", "sync"])
def test_writers_at_once_never_clobber_each_others_temp(tmp_path, make):
    write, target = make(tmp_path)
    write(0)
    barrier = threading.Barrier(WRITERS + 1)
    errors: list[BaseException] = []
    done = threading.Event()

    def writer(n: int) -> None:
        barrier.wait()
        try:
            for i in range(ROUNDS):
                write(n * ROUNDS + i)
        except BaseException as exc:  # a rename whose temp another writer took: FileNotFoundError
            errors.append(exc)

    def reader() -> None:
        barrier.wait()
        while not done.is_set():
            try:
                json.loads(target.read_text())
            except BaseException as exc:  # a half-written file would not parse
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    watcher = threading.Thread(target=reader)
    for thread in [*threads, watcher]:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    watcher.join()
    assert errors == []
    assert [p.name for p in target.parent.iterdir() if p.name.endswith(".tmp")] == []
    json.loads(target.read_text())
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # readable by the setup web and the CLI


def test_volume_round_trips(tmp_path):
    write_volume(tmp_path, percent=0.25, muted=True)
    assert read_volume(tmp_path) == (0.25, True)
