"""The provisioning code stays lint-clean and every playbook parses: part of the test command, so CI
fails on a broken playbook the same way it fails on a ruff error (issue 8)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
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
