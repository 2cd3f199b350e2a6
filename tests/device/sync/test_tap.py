"""The bus tap: only the types asked for, at most the rate asked for, the rest counted, then it ends."""

from __future__ import annotations

import pytest

from device.sync.tap import FRAME_MESSAGES, MAX_DATA_BYTES, BusTap, TapError
from protocol import messages


def test_filters_by_type_prefix():
    tap = BusTap.from_args({"types": ["recognizer_loop:"], "rate": 50}, now=0.0)
    tap.offer("recognizer_loop:wakeword", {"key_phrase": "hey_jarvis"}, 0.01)
    tap.offer("speak", {"utterance": "hi"}, 0.02)
    tap.offer("recognizer_loop:record_begin", {}, 0.03)
    (frame,) = tap.frames()
    assert [m["type"] for m in frame.messages] == ["recognizer_loop:wakeword", "recognizer_loop:record_begin"]
    assert frame.suppressed == 0
    assert tap.frames() == []  # nothing new


def test_rate_limit_counts_what_it_holds_back():
    tap = BusTap.from_args({"rate": 5}, now=0.0)
    for i in range(50):  # 50 messages in one second: 5 in the bucket, ~5 more refilled
        tap.offer("mycroft.skills.ping", {"i": i}, i / 50)
    frames = tap.frames()
    kept = sum(len(f.messages) for f in frames)
    assert 5 <= kept <= 11
    assert frames[0].suppressed == 50 - kept  # nothing vanishes unaccounted
    # The bucket refills with time.
    tap.offer("mycroft.skills.ping", {}, 10.0)
    assert len(tap.frames()[0].messages) == 1


def test_large_payloads_are_trimmed_and_frames_fit_the_contract():
    tap = BusTap.from_args({"rate": 100}, now=0.0)
    for i in range(250):
        tap.offer("big", {"blob": "x" * 10_000, "i": i}, i / 1000)
    frames = tap.frames()
    assert all(len(f.messages) <= FRAME_MESSAGES for f in frames)
    for frame in frames:
        assert len(messages.encode(frame)) <= messages.MAX_MESSAGE_BYTES
        assert all(m["data"]["trimmed_bytes"] > MAX_DATA_BYTES for m in frame.messages)


def test_ends_after_its_duration():
    tap = BusTap.from_args({"duration_s": 60}, now=100.0)
    assert not tap.expired(159.0) and tap.expired(160.0)


@pytest.mark.parametrize("args, reason", [
    ({"rate": 0}, "rate"), ({"rate": 1000}, "rate"), ({"rate": "fast"}, "numbers"),
    ({"duration_s": 86400}, "duration_s"), ({"types": [""]}, "types"), ({"types": 5}, "types"),
])
def test_bad_arguments_are_refused_with_the_reason(args, reason):
    with pytest.raises(TapError, match=reason):
        BusTap.from_args(args, now=0.0)
