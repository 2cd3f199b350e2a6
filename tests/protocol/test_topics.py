"""Topics: built and parsed in one place; a device is named by its topic, never by its payload."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.topics import Channel, TopicError, device_filter, parse, topic, upstream_filter

device_ids = st.from_regex(r"[a-z0-9][a-z0-9_-]{2,63}", fullmatch=True)


@given(device_ids, st.sampled_from(list(Channel)))
def test_round_trip(device_id, channel):
    parsed = parse(topic(device_id, channel))
    assert (parsed.device_id, parsed.channel) == (device_id, channel)


@pytest.mark.parametrize("bad", ["other/v1/devices/dev-1/events", "voxfleet/v1/devices/dev-1/unknown",
                                 "voxfleet/v1/devices/DEV/events", "voxfleet/v1/devices/+/events",
                                 "voxfleet/v1/devices/a/events", "voxfleet/v1/devices/dev-1/events/x"])
def test_foreign_topics_are_refused(bad):
    with pytest.raises(TopicError):
        parse(bad)


@pytest.mark.parametrize("bad", ["", "ab", "has space", "UPPER", "dev/1", "#", "+", "x" * 65])
def test_invalid_device_ids_never_make_a_topic(bad):
    with pytest.raises(TopicError):
        topic(bad, Channel.EVENTS)


def test_filters():
    assert device_filter("dev-1") == "voxfleet/v1/devices/dev-1/#"
    assert upstream_filter(Channel.EVENTS) == "voxfleet/v1/devices/+/events"
    assert upstream_filter(Channel.EVENTS, "ingest") == "$share/ingest/voxfleet/v1/devices/+/events"
    assert not Channel.COMMANDS.upstream and Channel.HEARTBEAT.upstream
