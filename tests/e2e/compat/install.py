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

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from tests.releases import Release, ReleaseError, checkout

REPO = Path(__file__).resolve().parents[3]


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


def install(repo: Path, release: Release, into: Path) -> Code:
    """Check ``release`` out of ``repo``'s history into ``into/source`` and install it in ``into/site``."""
    source, site = into / "source", into / "site"
    checkout(release, source, repo=repo)
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
