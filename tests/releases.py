"""The releases the compatibility tests run against, read from CHANGELOG.md (one source of truth:
each release's heading and its ``commit:`` line), and a way to get a release's files out of git."""

from __future__ import annotations

import re
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHANGELOG = REPO / "CHANGELOG.md"


@dataclass(frozen=True)
class Release:
    version: str
    commit: str


def releases() -> list[Release]:
    """Every release with a commit, newest first."""
    found = []
    for block in re.split(r"^## ", CHANGELOG.read_text(), flags=re.M)[1:]:
        heading = block.splitlines()[0].strip()
        commit = re.search(r"^commit:\s*([0-9a-f]{40})", block, flags=re.M)
        if commit:
            found.append(Release(heading.split()[0], commit.group(1)))
    return found


def previous() -> Release:
    return releases()[0]


def checkout(release: Release, target: Path, *paths: str) -> Path:
    """The release's files (all of them, or only ``paths``) under ``target``, from git history.

    A clone without that commit (a shallow one) fails here with the command that fetches it: the
    compatibility tests must not pass by not running.
    """
    found = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{release.commit}^{{commit}}"],
                           capture_output=True)
    if found.returncode != 0:
        raise RuntimeError(f"release {release.version} (commit {release.commit}) is not in this clone's "
                           f"history; fetch it: git fetch --unshallow (or git fetch origin {release.commit})")
    target.mkdir(parents=True, exist_ok=True)
    archive = target / ".release.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "-o", str(archive), release.commit,
                    *paths], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    archive.unlink()
    return target
