"""Golden messages: every kind, as each release wrote it (tests/protocol/golden/<release>/, frozen by
golden/make.py), must still decode with today's reader, lose nothing, and come back byte for byte when
written again for a peer of that release. The previous release's own reader, run from git history,
must accept what today's writer sends a peer of its release, and refuses what it cannot read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol import messages as m
from protocol.versions import LEGACY, Peer
from tests.protocol import previous
from tests.protocol.golden import make

GOLDEN = previous.GOLDEN
CASES = [(release, path) for release in previous.golden_releases()
         for path in sorted((GOLDEN / release).glob("*.json"))]


def _peer(release: str) -> Peer:
    peer = Peer(release=release)
    return LEGACY if peer.strict else peer


def test_every_release_froze_every_kind():
    kinds = {m.EventBatch, m.Presence, m.Heartbeat, m.DesiredConfig, m.ConfigAck, m.Command,
             m.CommandResult, m.TapFrame}
    actions = set(m.Command.model_fields["action"].annotation.__args__)
    event_types = {e.model_fields["type"].default for e in m.Event.__origin__.__args__}
    for release in previous.golden_releases():
        decoded = [m.decode(p.read_bytes()) for p in (GOLDEN / release).glob("*.json")]
        assert {type(d) for d in decoded} == kinds, release
        assert {d.action for d in decoded if isinstance(d, m.Command)} == actions, release
        batch = next(d for d in decoded if isinstance(d, m.EventBatch))
        assert {e.type for e in batch.events} == event_types, release
    assert "0.1.0" in previous.golden_releases()


@pytest.mark.parametrize(("release", "path"), CASES, ids=[f"{r}/{p.stem}" for r, p in CASES])
def test_golden_message_decodes_whole_and_round_trips(release: str, path: Path):
    payload = path.read_bytes()
    read = m.read(payload)
    assert read.unknown == (), f"{release}/{path.name}: today's reader does not know {read.unknown}"
    # Nothing lost: every value in the payload is in the decoded message.
    assert json.loads(m.encode(read.message, peer=_peer(release))) == json.loads(payload)
    assert m.encode(read.message, peer=_peer(release)) == payload


def test_the_current_release_froze_what_it_writes():
    """The newest golden folder is this release's: its messages are what this code writes today."""
    newest = previous.golden_releases()[-1]
    for name, message in make.fixtures().items():
        assert m.encode(message) == (GOLDEN / newest / f"{name}.json").read_bytes(), name


def test_the_previous_release_reads_what_we_send_it():
    today = make.fixtures()
    release, _ = previous.release_dir()
    answers = previous.decode([m.encode(message, peer=_peer(release.version)) for message in today.values()])
    for (name, message), answer in zip(today.items(), answers, strict=True):
        assert answer["ok"], f"{release.version} refuses today's {name}: {answer.get('error')}"
        ours = json.loads(m.encode(message, peer=_peer(release.version)))
        assert answer["message"] == ours, name


def test_the_previous_release_is_really_the_strict_one():
    """Proof the reader above is 0.1.0's: a field it does not know makes it refuse the message (which
    is why a newer writer leaves such fields out for it)."""
    release, _ = previous.release_dir()
    if not _peer(release.version).strict:
        pytest.skip(f"the previous release {release.version} reads tolerantly")
    full = m.encode(make.fixtures()["presence_online"])
    (answer,) = previous.decode([full])
    assert not answer["ok"] and "capabilities" in answer["error"]
