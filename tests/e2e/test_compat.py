"""A fleet upgrades unevenly: the previous release's device with the current cloud, and the current
device with the previous release's cloud.

The previous release (the newest one CHANGELOG.md names) is checked out of this repository's git history
and installed on its own (tests/e2e/compat/install.py); every process of its side is asked which
code it runs before it is trusted. Both directions run the same operator's checks
(tests/e2e/compat/scenario.py) through the real voice stack, the real cloud and its API.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from device.voice import samples
from tests import releases
from tests.e2e.compat import install, probe, scenario
from tests.e2e.compat.cloud_side import running_cloud
from tests.e2e.compat.device_side import Device

PREVIOUS = releases.previous()

COMMAND = "What time is it?"
PACKAGES = ("voxfleet", "device", "cloud", "protocol")


@pytest.fixture(scope="session")
def previous(tmp_path_factory) -> install.Code:
    """The previous release, built once per test session under pytest's temporary folder."""
    try:
        return install.install(install.REPO, PREVIOUS, tmp_path_factory.mktemp(f"release-{PREVIOUS.version}"))
    except releases.ReleaseError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def current() -> install.Code:
    return install.current()


@pytest.fixture
def spoken(piper_voice, samples_dir) -> Path:
    return samples.synthesize(piper_voice, COMMAND, samples_dir).path


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                   capture_output=True, timeout=60)


def test_a_clone_without_the_release_fails_saying_how_to_fetch_it(tmp_path):
    upstream, clone = tmp_path / "upstream", tmp_path / "clone"
    upstream.mkdir()
    _git(upstream, "init", "-q")
    for n in (1, 2):
        (upstream / "file").write_text(str(n))
        _git(upstream, "add", "file")
        _git(upstream, "commit", "-q", "-m", str(n))
    _git(tmp_path, "clone", "-q", "--depth", "1", f"file://{upstream}", str(clone))
    with pytest.raises(releases.ReleaseError) as refused:
        releases.require_commit(clone, PREVIOUS)
    assert PREVIOUS.commit in str(refused.value) and "git fetch --unshallow" in str(refused.value)


def _modules(home: Path) -> set[str]:
    """Dotted names of the modules and packages under ``home``'s VoxFleet packages."""
    found = set()
    for package in PACKAGES:
        for path in (home / package).rglob("*.py"):
            parts = path.relative_to(home).with_suffix("").parts
            found.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def test_the_previous_release_finds_only_its_own_code(previous, current, tmp_path):
    """Verified, not assumed: its metadata wins over the editable install's, its entry points load its
    own modules, and the modules only the current code has cannot be imported on its side."""
    report = probe.in_environment(previous.env, tmp_path)
    assert not probe.foreign(report, previous), probe.foreign(report, previous)
    assert report["distributions"]["voxfleet"]["version"] == PREVIOUS.version
    skills = {p.parent.name for p in (previous.home.parent / "source" / "skills").glob("*/pyproject.toml")}
    assert skills and skills <= set(report["distributions"]), report["distributions"]

    old, new = _modules(previous.home), _modules(current.home)
    # The first module of each branch only the current code has (its children cannot be reached without it).
    new_only = sorted(m for m in new - old if m.rpartition(".")[0] in old or "." not in m)
    reached = probe.in_environment(previous.env, tmp_path, tuple(new_only))["modules"]
    leaked = {module: path for module, path in reached.items() if path}
    assert not leaked, f"the previous release's side imports current code: {leaked}"

    here = probe.in_environment(current.env, tmp_path)
    assert not probe.foreign(here, current), probe.foreign(here, current)


@pytest.mark.voice
def test_previous_device_with_new_cloud(previous, current, spoken, tmp_path):
    with running_cloud(current, tmp_path / "cloud") as cloud:
        scenario.pair_and_sync(cloud, Device(previous, tmp_path / "device"), spoken, COMMAND)


@pytest.mark.voice
def test_new_device_with_previous_cloud(previous, current, spoken, tmp_path):
    with running_cloud(previous, tmp_path / "cloud") as cloud:
        scenario.pair_and_sync(cloud, Device(current, tmp_path / "device"), spoken, COMMAND)
