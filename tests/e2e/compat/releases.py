"""The previous release the compatibility tests (tests/e2e/test_compat.py) run against the current code.

The one place that names it. At each release, point ``PREVIOUS`` at the release before the new one
(its version and the full commit its tag points to); the CHANGELOG names the same commit. The tests
check it out of this repository's git history, never from the network, so a clone without that
commit (a shallow one) fails with how to fetch it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Release:
    version: str
    commit: str  # the full 40-hex sha: an abbreviation could become ambiguous as history grows

    @property
    def tag(self) -> str:
        return f"v{self.version}"


PREVIOUS = Release("0.1.0", "9a23964814e29cecb8d4d4ee7a3691b472ce1abf")
