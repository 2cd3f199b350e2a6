"""device/files.py: state files are replaced whole, keep who may read them, and leave no temp behind."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from device import files
from device.files import write_atomic


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_is_world_readable_and_a_rewrite_keeps_its_mode(tmp_path):
    target = write_atomic(tmp_path / "sub" / "settings.json", "{}")
    assert target.read_text() == "{}" and mode(target) == 0o644
    os.chmod(target, 0o640)
    write_atomic(target, '{"name": "Kitchen"}')
    assert target.read_text() == '{"name": "Kitchen"}' and mode(target) == 0o640
    assert [p.name for p in target.parent.iterdir()] == ["settings.json"]


def test_a_secret_is_private_even_over_a_readable_file(tmp_path):
    target = tmp_path / "cloud.json"
    target.write_text("old")
    os.chmod(target, 0o644)
    write_atomic(target, "password", mode=0o600)
    assert mode(target) == 0o600 and target.read_text() == "password"


def test_a_failed_write_keeps_the_old_file_and_removes_its_temp(tmp_path, monkeypatch):
    target = tmp_path / "settings.json"
    target.write_text("old")

    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]


def test_concurrent_writers_each_leave_a_whole_file(tmp_path):
    target = tmp_path / "settings.json"
    texts = [str(i) * 100_000 for i in range(6)]
    barrier = threading.Barrier(len(texts))

    def write(text: str) -> None:
        barrier.wait()
        for _ in range(20):
            write_atomic(target, text)

    threads = [threading.Thread(target=write, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_text() in texts
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]
