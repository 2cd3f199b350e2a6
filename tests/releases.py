"""The releases the compatibility tests run against, read from CHANGELOG.md (the one place that names
them: each release's heading and its ``commit:`` line), and getting a release's files out of git history.

The tests check releases out of this repository's history, never from the network, so a clone without
that commit (a shallow one) fails with how to fetch it: a compatibility test must not pass by not
running.
"""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHANGELOG = REPO / "CHANGELOG.md"


class ReleaseError(RuntimeError):
    """A release cannot be checked out; the message says how to fix it."""


@dataclass(frozen=True)
class Release:
    version: str
    commit: str  # the full 40-hex sha: an abbreviation could become ambiguous as history grows

    @property
    def tag(self) -> str:
        return f"v{self.version}"


def releases(changelog: Path = CHANGELOG) -> list[Release]:
    """Every released version (those with a ``commit:`` line), newest first."""
    found = []
    for block in re.split(r"^## ", changelog.read_text(), flags=re.M)[1:]:
        heading = block.splitlines()[0].strip()
        commit = re.search(r"^commit:\s*([0-9a-f]{40})\b", block, flags=re.M)
        if commit:
            found.append(Release(heading.split()[0], commit.group(1)))
    return found


def previous() -> Release:
    """The newest release: what devices and clouds in the field run beside this code."""
    found = releases()
    if not found:
        raise ReleaseError(f"{CHANGELOG} names no release with a commit: line")
    return found[0]


def _git(repo: Path, *args: str, text: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=text, timeout=120)


def require_commit(repo: Path, release: Release) -> None:
    """Raise ReleaseError, saying how to fetch it, unless ``release.commit`` is in ``repo``'s history."""
    where = f"release {release.version} (commit {release.commit}, tag {release.tag})"
    if _git(repo, "rev-parse", "--is-inside-work-tree").returncode != 0:
        raise ReleaseError(f"{repo} is not a git checkout: the compatibility tests check {where} out of "
                           "git history; run them from a clone of the repository")
    if _git(repo, "cat-file", "-e", f"{release.commit}^{{commit}}").returncode != 0:
        shallow = _git(repo, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"
        how = ("this clone is shallow: fetch the history with `git fetch --unshallow --tags`" if shallow
               else f"fetch it with `git fetch origin tag {release.tag}` "
                    f"(or `git fetch origin {release.commit}`)")
        raise ReleaseError(f"{where} is not in the history of {repo}; {how}, then rerun. "
                           "CHANGELOG.md names that release.")
    tagged = _git(repo, "rev-parse", "--verify", "--quiet", f"refs/tags/{release.tag}^{{commit}}")
    if tagged.returncode == 0 and tagged.stdout.strip() != release.commit:
        raise ReleaseError(f"tag {release.tag} points to {tagged.stdout.strip()}, but CHANGELOG.md names "
                           f"{release.commit}: correct one of them")


def checkout(release: Release, target: Path, *paths: str, repo: Path = REPO) -> Path:
    """The release's files (all of them, or only ``paths``) under ``target``, from git history."""
    require_commit(repo, release)
    archive = _git(repo, "archive", "--format=tar", release.commit, *paths, text=False)
    if archive.returncode != 0:
        raise ReleaseError(f"git archive {release.commit} failed: {archive.stderr.decode()[-2000:]}")
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")
    return target
