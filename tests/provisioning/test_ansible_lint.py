"""The provisioning code stays lint-clean and every playbook parses: part of the test command, so CI
fails on a broken playbook the same way it fails on a ruff error (issue 8). Also quick checks of what
lint cannot see: task order in the device roles and files two writers must agree on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = ROOT / "ansible"
BIN = Path(sys.executable).parent
PLAYBOOKS = sorted(ANSIBLE.glob("*.yml"))


def ansible_env(tmp_path: Path) -> dict[str, str]:
    """Ansible's scratch files in the test's folder; the venv's tools first on PATH (ansible-lint runs
    ansible-playbook itself)."""
    env = dict(os.environ)
    env.update(ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"), ANSIBLE_HOME=str(tmp_path / "ansible-home"),
               ANSIBLE_NOCOLOR="1", PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    return env


def test_there_are_playbooks_to_check():
    assert ANSIBLE / "cloud.yml" in PLAYBOOKS, f"no cloud.yml among {PLAYBOOKS}"


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=[p.name for p in PLAYBOOKS])
def test_playbook_syntax(playbook: Path, tmp_path: Path):
    out = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", playbook.name], cwd=ANSIBLE,
                         env=ansible_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ansible_lint_clean(tmp_path: Path):
    """The whole tree, with ansible/.ansible-lint (production profile, offline: nothing from Galaxy)."""
    out = subprocess.run([str(BIN / "ansible-lint"), "--nocolor", "-f", "pep8"], cwd=ANSIBLE,
                         env=ansible_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-6000:]


# --- what lint cannot see ----------------------------------------------------------------------------

def _tasks(role: str) -> list[dict]:
    return yaml.safe_load((ANSIBLE / "roles" / role / "tasks" / "main.yml").read_text())


def test_device_units_are_enabled_before_the_restart_and_the_target_is_started():
    """The restart handler starts voxfleet.target, which starts only what its .wants links name: the
    units must be enabled before the flush, and a first run (nothing to restart) starts the target,
    where systemd runs (not in the chroot of test_ansible_device.py)."""
    tasks = _tasks("device_services")
    enable = next(i for i, t in enumerate(tasks) if "enabled" in t.get("ansible.builtin.systemd_service", {}))
    flush = next(i for i, t in enumerate(tasks) if t.get("ansible.builtin.meta") == "flush_handlers")
    start = next(i for i, t in enumerate(tasks)
                 if t.get("ansible.builtin.systemd_service", {}).get("state") == "started")
    assert enable < flush < start
    assert tasks[start]["ansible.builtin.systemd_service"]["name"] == "voxfleet.target"
    assert "device_facts_systemd_running" in tasks[start]["when"]


def test_setup_page_survives_a_bus_that_refuses_the_settings():
    """The messagebus's ExecStartPre exits 2 on bad settings; Requires= would take the setup page
    (the tool that fixes them) down with it."""
    defaults = yaml.safe_load((ANSIBLE / "roles" / "device_services" / "defaults" / "main.yml").read_text())
    web = next(s for s in defaults["device_services_list"] if s["name"] == "setup-web")
    assert web.get("requires_bus") is False
    others = [s for s in defaults["device_services_list"] if s["name"] not in ("messagebus", "setup-web")]
    assert all(s.get("requires_bus", True) for s in others)


def test_jetson_gets_a_python_voxfleet_supports():
    """JetPack 6 is Ubuntu 22.04 with Python 3.10; voxfleet requires 3.11."""
    facts = yaml.safe_load((ANSIBLE / "roles" / "device_facts" / "defaults" / "main.yml").read_text())
    assert facts["device_facts_python_by_release"]["jammy"] == "python3.11"
    assert "bookworm" not in facts["device_facts_python_by_release"]
    venv = yaml.safe_load((ANSIBLE / "roles" / "device_venv" / "defaults" / "main.yml").read_text())
    assert venv["device_venv_python"] == "/usr/bin/{{ device_facts_python | default('python3') }}"
    packages = (ANSIBLE / "roles" / "device_packages" / "tasks" / "main.yml").read_text()
    assert "device_packages_python" in packages and "-dev" in packages


def test_write_config_and_the_provisioning_renderer_write_the_same_bytes(tmp_path: Path, monkeypatch):
    """After a cloud push (write_config) a provisioning re-run must find mycroft.conf unchanged, or
    every run reports a change and restarts the stack."""
    from device.paths import DevicePaths
    from device.settings import load_settings
    from device.stack.config import write_config

    paths = DevicePaths.at(tmp_path / "data").create()
    (paths.root / "settings.json").write_text('{"timezone": "Europe/Berlin", "wake_word": "hey_mycroft"}\n')
    renderer = ANSIBLE / "roles" / "device_config" / "files" / "voxfleet-render-config"
    argv = [sys.executable, str(renderer), f"--data-dir={paths.root}",
            f"--firmware-config={ROOT / 'firmware-config'}", f"--model-cache={tmp_path / 'models'}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), VOXFLEET_FIRMWARE_CONFIG=str(ROOT / "firmware-config"),
               VOXFLEET_MODEL_CACHE=str(tmp_path / "models"))
    first = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    provisioned = paths.mycroft_conf.read_bytes()
    assert provisioned.endswith(b"}\n")
    monkeypatch.setenv("VOXFLEET_FIRMWARE_CONFIG", env["VOXFLEET_FIRMWARE_CONFIG"])
    monkeypatch.setenv("VOXFLEET_MODEL_CACHE", env["VOXFLEET_MODEL_CACHE"])
    write_config(load_settings(paths.root), paths)
    assert paths.mycroft_conf.read_bytes() == provisioned
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and json.loads(again.stdout) == {"changed": []}, again.stdout + again.stderr
