"""The code of each side: the current checkout, and the previous release built from git history.

The previous release is installed the way a device installs a release, with its own packages AND its
own ``*.dist-info`` (entry points, console scripts), into a folder of its own:
``pip install --no-deps --no-build-isolation --target``, from a ``git archive`` of its commit (never
the network). Its side runs with only that folder on ``PYTHONPATH``: its packages come before the
virtualenv's editable install, and so does its metadata, because importlib.metadata keeps the first
distribution of a name found on ``sys.path``; OVOS then loads the plugins that release registered
(``device.plugins.*`` in 0.1.0) rather than the current ones. ``isolation.py`` closes the one gap
left (the editable finders); tests/e2e/test_compat.py checks all of it on the running processes.
The third-party packages (OVOS, models, Flask...) are the shared virtualenv's, as the release's
pinned ranges allow.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from tests.e2e.compat.releases import Release

REPO = Path(__file__).resolve().parents[3]


class ReleaseError(RuntimeError):
    """The previous release cannot be checked out or installed; the message says how to fix it."""


@dataclass(frozen=True)
class Code:
    """One release as the tests run it: its ``voxfleet`` command and environment, and where its code is.

    ``isolated``: a release installed on its own, whose every VoxFleet package, skill and metadata
    file must resolve under ``home``; the current checkout shares the virtualenv's metadata and skills.
    """

    label: str
    version: str
    voxfleet: str
    env: dict[str, str]
    home: Path
    isolated: bool

    def command(self, *args: str) -> list[str]:
        return [self.voxfleet, *args]


def current() -> Code:
    """The code under test: the packages this test process imports, and the virtualenv's ``voxfleet``."""
    import device

    env = dict(os.environ)
    env.pop("VOXFLEET_FIRMWARE_CONFIG", None)  # its own firmware-config/, beside its packages
    return Code("current", version("voxfleet"), str(Path(sys.executable).parent / "voxfleet"), env,
                Path(device.__file__).resolve().parents[1], isolated=False)


def _git(repo: Path, *args: str, text: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=text, timeout=120)


def require_commit(repo: Path, release: Release) -> None:
    """Raise ReleaseError, saying how to fetch it, unless ``release.commit`` is in ``repo``'s history."""
    where = f"the previous release {release.version} (commit {release.commit}, tag {release.tag})"
    if _git(repo, "rev-parse", "--is-inside-work-tree").returncode != 0:
        raise ReleaseError(f"{repo} is not a git checkout: the compatibility tests check {where} out of "
                           "git history; run them from a clone of the repository")
    if _git(repo, "cat-file", "-e", f"{release.commit}^{{commit}}").returncode != 0:
        shallow = _git(repo, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"
        how = ("this clone is shallow: fetch the history with `git fetch --unshallow --tags`" if shallow
               else f"fetch it with `git fetch origin tag {release.tag}` "
                    f"(or `git fetch origin {release.commit}`)")
        raise ReleaseError(f"{where} is not in the history of {repo}; {how}, then rerun. "
                           "tests/e2e/compat/releases.py names that release.")
    tagged = _git(repo, "rev-parse", "--verify", "--quiet", f"refs/tags/{release.tag}^{{commit}}")
    if tagged.returncode == 0 and tagged.stdout.strip() != release.commit:
        raise ReleaseError(f"tag {release.tag} points to {tagged.stdout.strip()}, but "
                           f"tests/e2e/compat/releases.py names {release.commit}: correct one of them")


def install(repo: Path, release: Release, into: Path) -> Code:
    """Check ``release`` out of ``repo``'s history into ``into/source`` and install it in ``into/site``."""
    require_commit(repo, release)
    source, site = into / "source", into / "site"
    archive = _git(repo, "archive", "--format=tar", release.commit, text=False)
    if archive.returncode != 0:
        raise ReleaseError(f"git archive {release.commit} failed: {archive.stderr.decode()[-2000:]}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(source, filter="data")
    projects = [source, *sorted(p.parent for p in (source / "skills").glob("*/pyproject.toml"))]
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                          "--no-build-isolation", "--no-cache-dir", "--target", str(site),
                          *map(str, projects)], capture_output=True, text=True, timeout=600)
    if pip.returncode != 0:
        raise ReleaseError(f"pip could not install {release.version} from {source}:\n{pip.stderr[-3000:]}")
    shutil.copyfile(Path(__file__).with_name("isolation.py"), site / "sitecustomize.py")
    env = {**os.environ, "PYTHONPATH": str(site),
           # Its mycroft.conf templates: provisioning installs firmware-config/ beside the release.
           "VOXFLEET_FIRMWARE_CONFIG": str(source / "firmware-config")}
    return Code(release.version, release.version, str(site / "bin" / "voxfleet"), env, site, isolated=True)
