import pytest
from voxfleet_skill_timer import parse_duration, speak_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("five minutes", 300),
    ("5 minutes", 300),
    ("Five Minutes", 300),
    ("a minute", 60),
    ("an hour", 3600),
    ("ten seconds", 10),
    ("one minute and thirty seconds", 90),
    ("a minute and a half", 90),
    ("2 hours", 7200),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "   ", None, "banana", "zero seconds"])
def test_parse_duration_without_a_duration(text):
    assert parse_duration(text) is None


def test_speak_duration():
    assert speak_duration(300) == "five minutes"
    assert speak_duration(10) == "ten seconds"
    assert speak_duration(3600) == "one hour"
    assert speak_duration(299.6) == "five minutes"  # what is left on a running timer
    assert speak_duration(0) == "one second"  # never "zero"
