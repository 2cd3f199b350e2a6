"""Which wire versions this release writes and reads, and what it may send a given peer.

The rules (docs/protocol.md, "Evolution"):

- An additive change (a new optional field, a new event type, a new message kind on a new channel)
  keeps the version. Readers from 0.2.0 on ignore fields they do not know and count them, so a
  release may send its new fields to any tolerant peer.
- A breaking change (a field removed, renamed or retyped; a meaning changed) bumps ``VERSION``. Each
  side then reads N and N-1 for at least one release (``READS``) and writes to each peer the highest
  version both sides speak (``negotiate``).
- Release 0.1.0 read strictly: one unknown field and it refused the whole message. A peer that has
  announced nothing about itself is treated as such a reader (``LEGACY``), and is sent only the fields
  0.1.0 knew (``protocol.messages.encode(..., peer=LEGACY)`` leaves the newer ones out).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from dataclasses import dataclass

VERSION = 1  # what this release writes
READS: frozenset[int] = frozenset({1})  # what this release reads: N and, after a breaking change, N-1

# The last release whose readers refused unknown fields: every field added after it carries a
# ``since`` marker (protocol.messages.since) and is left out for peers no newer than this.
STRICT_UNTIL = "0.1.0"


def release() -> str:
    """This side's VoxFleet release (the installed distribution's version)."""
    try:
        return importlib.metadata.version("voxfleet")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def release_tuple(release: str) -> tuple[int, ...]:
    """``"0.2.0"`` -> ``(0, 2, 0)``; a suffix such as ``rc1`` or ``.dev3`` is ignored."""
    parts = []
    for piece in release.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts) or (0,)


@dataclass(frozen=True)
class Peer:
    """The other side of the wire, as far as this side knows it.

    ``release`` is None for a peer that never said (0.1.0 announced nothing): it is then a strict reader.
    """

    release: str | None
    reads: frozenset[int] = frozenset({1})

    @property
    def strict(self) -> bool:
        return self.release is None or release_tuple(self.release) <= release_tuple(STRICT_UNTIL)

    def knows(self, since: str) -> bool:
        """Whether this peer reads a field added in release ``since`` (strict peers read none)."""
        return not self.strict and release_tuple(self.release or "0") >= release_tuple(since)

    def version(self) -> int:
        return negotiate(self.reads)


LEGACY = Peer(release=None)


class VersionMismatch(ValueError):
    """The two sides share no wire version: one of them must be upgraded."""


def negotiate(peer_reads: Iterable[int]) -> int:
    """The version to write to a peer that reads ``peer_reads``: the highest both sides speak."""
    common = set(peer_reads) & {v for v in READS if v <= VERSION}
    if not common:
        theirs = ", ".join(f"v{v}" for v in sorted(set(peer_reads))) or "nothing"
        raise VersionMismatch(f"the peer reads {theirs}; this release writes v{VERSION} and reads "
                              f"{', '.join(f'v{v}' for v in sorted(READS))}")
    return max(common)
