"""openWakeWord with the bundled models: fires on the wake phrase, not on other speech, and reset
really forgets (openwakeword's own reset leaves the audio features behind)."""

from __future__ import annotations

import numpy as np
import pytest

from device.voice.plugins.wakeword import OpenWakeWordEngine
from device.voice.wakeword import WakeWordDetector


@pytest.fixture(scope="module")
def detector():
    return WakeWordDetector("hey_jarvis")


def test_wake_phrase_scores_high(detector, piper_voice):
    assert detector.score_clip(piper_voice.speak("Hey Jarvis.").to_bytes()) > 0.8


def test_wake_phrase_in_a_second_voice(detector, espeak_voice):
    assert detector.score_clip(espeak_voice.speak("Hey Jarvis.").to_bytes()) > 0.5


@pytest.mark.parametrize("text", ["What time is it?", "Hey Mycroft.", "Set a timer for five minutes."])
def test_other_speech_scores_low(detector, piper_voice, text):
    assert detector.score_clip(piper_voice.speak(text).to_bytes()) < 0.2


def test_other_bundled_wake_word(piper_voice):
    mycroft = WakeWordDetector("hey_mycroft")
    assert mycroft.score_clip(piper_voice.speak("Hey Mycroft.").to_bytes()) > 0.5
    assert mycroft.score_clip(piper_voice.speak("Hey Jarvis.").to_bytes()) < 0.2


def test_plugin_fires_once_and_not_again_after_reset(piper_voice):
    engine = OpenWakeWordEngine("hey_jarvis", {"model": "hey_jarvis", "threshold": 0.5})
    lead = np.zeros(16000, np.int16).tobytes()
    phrase = piper_voice.speak("Hey Jarvis.").to_bytes()
    fired_at = None
    stream = lead + phrase + bytes(2560 * 12)
    for i in range(0, len(stream), 2560):
        engine.update(stream[i:i + 2560])
        if engine.found_wake_word():
            fired_at = i
            break
    assert fired_at is not None
    # found_wake_word() resets; the silence that follows must not fire it a second time
    after = stream[fired_at + 2560:] + bytes(2560 * 10)
    for i in range(0, len(after), 2560):
        engine.update(after[i:i + 2560])
        assert not engine.found_wake_word()
