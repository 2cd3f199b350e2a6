"""``voxfleet demo`` without the voice stack: a demo folder it cannot use is refused before anything
starts, with nothing changed; the background cloud is started, found again, never confused with
another process, and stopped; the accounts are made once through the admin commands. The whole demo,
voice and browser included, is tests/e2e/test_demo.py."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from cloud.security import verify_password
from tests.conftest import VOXFLEET, free_port
from voxfleet.demo import cloud, signins


def _demo(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([VOXFLEET, "demo", "--data-dir", str(data_dir), *args], capture_output=True,
                          text=True, timeout=120)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("content", ["{oops", "[]", '{"operator_email": "a@b.example"}',
                                     json.dumps({"operator_email": "", "operator_password": "x",
                                                 "owner_email": "o@b.example", "owner_password": "y"})])
def test_an_unreadable_sign_ins_file_is_refused_before_anything_starts(tmp_path, content):
    (tmp_path / "sign-ins.json").write_text(content)
    before = _tree(tmp_path)
    done = _demo(tmp_path)
    assert done.returncode == 1
    assert f"{tmp_path / 'sign-ins.json'} is not readable" in done.stderr
    assert "It holds the demo's sign-ins" in done.stderr
    assert _tree(tmp_path) == before


def test_a_folder_from_an_earlier_demo_is_refused_with_what_to_do(tmp_path):
    (tmp_path / "cloud").mkdir()
    (tmp_path / "cloud" / "demo-api-key").write_text("vfk_x_y\n")
    before = _tree(tmp_path)
    done = _demo(tmp_path)
    assert done.returncode == 1
    assert "has a demo tenant but no sign-ins.json" in done.stderr and "Nothing was changed" in done.stderr
    assert _tree(tmp_path) == before


def test_stop_with_no_cloud_running_says_so(tmp_path):
    done = _demo(tmp_path, "--stop")
    assert done.returncode == 0
    assert f"no demo cloud is running for {tmp_path}" in done.stderr


def test_a_process_id_that_is_no_longer_the_cloud_is_left_alone(tmp_path):
    """A recorded pid now used by another process (here: this test's own) is neither reused nor killed."""
    cloud_dir = tmp_path / "cloud"
    cloud_dir.mkdir()
    (cloud_dir / cloud.STATE).write_text(json.dumps({"http_port": free_port(), "mqtt_port": free_port(),
                                                     "pid": os.getpid()}))
    assert cloud.running(cloud_dir) is None
    assert cloud.stop(cloud_dir) is None
    assert "pid" not in json.loads((cloud_dir / cloud.STATE).read_text())


def test_the_background_cloud_is_found_again_and_stopped_and_the_accounts_are_made_once(tmp_path, browser):
    data_dir, cloud_dir = tmp_path, tmp_path / "cloud"
    cloud_dir.mkdir()
    ports = {"http_port": free_port(), "mqtt_port": free_port()}
    (cloud_dir / cloud.STATE).write_text(json.dumps(ports))
    env = {**os.environ, "VOXFLEET_DATA_DIR": str(cloud_dir)}
    started = cloud.start(cloud_dir, env)
    try:
        assert started.started and started.url == f"http://127.0.0.1:{ports['http_port']}"
        again = cloud.start(cloud_dir, env)
        assert (again.started, again.pid, again.url) == (False, started.pid, started.url)

        people = signins.prepare(data_dir, cloud_dir)
        kept = data_dir / signins.FILE
        assert kept.stat().st_mode & 0o777 == 0o600
        key = signins.ensure_accounts(data_dir, people, env)
        assert key.startswith("vfk_") and people.made == ["tenant", "operator"]
        assert signins.ensure_accounts(data_dir, signins.prepare(data_dir, cloud_dir), env) == key
        engine = create_engine(f"sqlite:///{cloud_dir / 'cloud.db'}")
        with engine.connect() as conn:
            users = dict(conn.execute(text("SELECT email, password_hash FROM users")).all())
            tenants = conn.execute(text("SELECT slug, name FROM tenants")).all()
        engine.dispose()
        assert verify_password(users[people.operator_email], people.operator_password)
        assert verify_password(users[people.owner_email], people.owner_password)
        assert len(users) == 2 and [tuple(t) for t in tenants] == [("demo-hotels", "Demo Hotels")]
        page = browser.new_page()  # the browser's connection is still open when the cloud stops
        assert page.goto(f"{started.url}/login").ok
    finally:
        stopped = cloud.stop(cloud_dir)
    assert stopped == started.pid
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{started.url}/api/v1/health", timeout=5)
    assert json.loads((cloud_dir / cloud.STATE).read_text()) == ports
    # Started again on the same ports (the paired device keeps them), though the browser's connection,
    # closed by the cloud as it stopped, still holds the port (TIME_WAIT).
    restarted = cloud.start(cloud_dir, env)
    try:
        assert restarted.started and restarted.url == started.url and restarted.mqtt_port == started.mqtt_port
    finally:
        cloud.stop(cloud_dir)
