"""How the wire evolves (docs/protocol.md, "Evolution"): readers ignore and report fields they do not
know; every field added since 0.1.0 is optional and marked with the release that added it, so a writer
can leave it out for a strict 0.1.0 reader; versions are negotiated; refusals carry a stable code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel

from protocol import messages as m
from protocol.versions import LEGACY, READS, VERSION, Peer, VersionMismatch, negotiate
from tests.protocol.golden import make

GOLDEN_010 = Path(__file__).resolve().parent / "golden" / "0.1.0"


def _models() -> dict[str, type[BaseModel]]:
    """Every schema class of the wire, by name."""
    found: dict[str, type[BaseModel]] = {}

    def visit(model: type[BaseModel]) -> None:
        if model.__name__ in found:
            return
        found[model.__name__] = model
        for field in model.model_fields.values():
            for arg in _flatten(field.annotation):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    visit(arg)

    for kind in get_args(get_args(m.Message)[0]):
        visit(kind)
    for event in get_args(get_args(m.Event)[0]):
        visit(event)
    return found


def _flatten(annotation: Any) -> list[Any]:
    args = get_args(annotation)
    return [annotation] if not args else [a for arg in args for a in _flatten(arg)]


def _fields_010() -> dict[str, set[str]]:
    """The field names 0.1.0's messages carried, per kind or event type, read from its golden messages
    (they fill every field 0.1.0 had, tests/protocol/golden/make.py)."""
    found: dict[str, set[str]] = {}
    for path in GOLDEN_010.glob("*.json"):
        raw = json.loads(path.read_bytes())
        found.setdefault(raw["kind"], set()).update(raw)
        for event in raw.get("events", []):
            found.setdefault(event["type"], set()).update(event)
        if "config" in raw:
            found.setdefault("VoiceConfig", set()).update(raw["config"])
    return found


def test_every_field_added_since_010_is_optional_and_marked():
    old = _fields_010()
    unmarked = []
    for model in _models().values():
        tag = model.model_fields.get("kind") or model.model_fields.get("type")
        key = tag.default if tag is not None else model.__name__
        if key not in old:
            continue  # a schema 0.1.0 did not have at all (Capabilities): it sits under a marked field
        for name, field in model.model_fields.items():
            if (field.alias or name) in old[key] or name == "v":
                continue
            added = (field.json_schema_extra or {}).get("since") if isinstance(field.json_schema_extra,
                                                                             dict) else None
            if added is None or field.is_required():
                unmarked.append(f"{model.__name__}.{name}")
    assert unmarked == [], "fields added since 0.1.0 need a default and json_schema_extra=since(release)"


def test_stored_events_are_written_for_the_peer():
    """The outbox keeps events as JSON and sends them as they are: the event fields a strict cloud does
    not read are left out there (device/sync/link.py drain), by event_for_peer."""
    batch = make.fixtures()["event_batch"]
    stored = [json.dumps(e.model_dump(mode="json", exclude_none=True), separators=(",", ":"))
              for e in batch.events]
    matched = next(s for s in stored if '"intent.matched"' in s)
    assert '"stage"' in matched and '"confidence"' in matched
    legacy = json.loads(m.event_for_peer(matched, LEGACY))
    assert "stage" not in legacy and "confidence" not in legacy
    assert legacy["intent"] == "what.time.is.it.intent"
    assert m.event_for_peer(matched, Peer(release="0.2.0")) == matched
    others = [s for s in stored if s is not matched]
    assert [m.event_for_peer(s, LEGACY) for s in others] == others  # nothing else changed, not even spacing


# --- tolerant readers --------------------------------------------------------------------------------


def _with_extras(payload: bytes) -> tuple[bytes, set[str]]:
    raw = json.loads(payload)
    raw["mood"] = "sunny"
    added = {f"{raw['kind']}.mood"}
    if raw["kind"] == "event_batch":
        raw["events"][3]["emotion"] = {"valence": 0.4}
        added.add("event_batch.events.3.emotion")
    if raw.get("capabilities"):
        raw["capabilities"]["gpu"] = "orin"
        raw["capabilities"]["skills"][0]["licence"] = "Apache-2.0"
        added |= {"presence.capabilities.gpu", "presence.capabilities.skills.0.licence"}
    if raw["kind"] == "desired_config":
        raw["config"]["kokoro_voice"] = "jf_alpha"
        added.add("desired_config.config.kokoro_voice")
    return json.dumps(raw).encode(), added


@pytest.mark.parametrize("name", sorted(make.fixtures()))
def test_unknown_fields_are_ignored_and_reported(name):
    message = make.fixtures()[name]
    payload, added = _with_extras(m.encode(message))
    read = m.read(payload)
    assert read.message == message
    assert set(read.unknown) == added


def test_a_payload_cannot_smuggle_an_identity():
    raw = json.loads(m.encode(make.fixtures()["event_batch"]))
    raw["events"][0]["tenant_id"] = "someone-else"
    raw["device_id"] = "another-device"
    read = m.read(json.dumps(raw).encode())
    assert "event_batch.events.0.tenant_id" in read.unknown
    dumped = read.message.model_dump()
    assert "device_id" not in dumped and all("tenant_id" not in e for e in dumped["events"])


# --- writing for a peer ------------------------------------------------------------------------------


def test_a_strict_peer_gets_only_what_010_read():
    message = make.fixtures()["presence_online"]
    assert "capabilities" in json.loads(m.encode(message))
    assert "capabilities" not in json.loads(m.encode(message, peer=LEGACY))
    assert "capabilities" in json.loads(m.encode(message, peer=Peer(release="0.2.0")))
    ack = make.fixtures()["config_ack_applied"]
    assert json.loads(m.encode(ack, peer=LEGACY)) == {"v": 1, "kind": "config_ack", "version": 7,
                                                      "status": "applied"}


def test_peers():
    assert LEGACY.strict and Peer(release="0.1.0").strict and not Peer(release="0.2.0").strict
    assert Peer(release="0.2.0").knows("0.2.0") and not Peer(release="0.2.0").knows("0.3.0")
    assert not LEGACY.knows("0.2.0") and Peer(release="1.0.0rc1").knows("0.2.0")


def test_versions_are_negotiated():
    assert VERSION in READS and (VERSION == 1 or VERSION - 1 in READS)  # N and N-1
    assert negotiate({1}) == 1 and negotiate({1, 7}) == 1
    with pytest.raises(VersionMismatch, match="reads v7"):
        negotiate({7})
    with pytest.raises(m.MessageError) as refused:
        m.encode(make.fixtures()["heartbeat"], peer=Peer(release="9.0.0", reads=frozenset({9})))
    assert refused.value.reason is m.Reason.WRONG_VERSION


# --- refusals carry a code -----------------------------------------------------------------------------


@pytest.mark.parametrize(("payload", "reason"), [
    (b"x" * (m.MAX_MESSAGE_BYTES + 1), m.Reason.OVERSIZED),
    (b"{not json", m.Reason.MALFORMED),
    (b"\xff\xfe", m.Reason.MALFORMED),
    (b"[1, 2]", m.Reason.MALFORMED),
    (b'{"v": 2, "kind": "presence", "state": "online", "ts": "2026-01-01T00:00:00Z"}',
     m.Reason.WRONG_VERSION),
    (b'{"v": "1", "kind": "presence"}', m.Reason.WRONG_VERSION),
    (b'{"v": true, "kind": "presence"}', m.Reason.WRONG_VERSION),
    (b'{"kind": "presence"}', m.Reason.WRONG_VERSION),
    (b'{"v": 1, "kind": "firmware_update"}', m.Reason.UNKNOWN_KIND),
    (b'{"v": 1, "kind": "event_batch", "events": [{"type": "emotion.detected"}]}', m.Reason.UNKNOWN_KIND),
    (b'{"v": 1, "kind": "presence", "state": "online"}', m.Reason.INVALID),
    (b'{"v": 1, "kind": "presence", "state": "asleep", "ts": "2026-01-01T00:00:00Z"}', m.Reason.INVALID),
])
def test_refusals_carry_a_reason_code(payload, reason):
    with pytest.raises(m.MessageError) as refused:
        m.read(payload)
    assert refused.value.reason is reason
    assert str(refused.value)  # and words for the log
