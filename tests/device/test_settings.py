import json

import pytest

from device import models
from device.settings import DeviceSettings, SettingsError, load_settings, save_settings, settings_path


def test_defaults_without_a_settings_file(tmp_path):
    s = load_settings(tmp_path)
    assert s.name == "voxfleet"
    assert s.wake_word == models.DEFAULT_WAKE_WORD
    assert s.stt_model == models.DEFAULT_STT_MODEL
    assert s.tts_voice == models.DEFAULT_TTS_VOICE
    assert s.audio_in == "spool" and s.audio_out == "wav"
    assert s.tuning == "voxfleet"
    assert s.bus_port == 8181
    assert s.timezone  # the system's zone, or UTC
    assert not settings_path(tmp_path).exists()


def test_stored_values_and_overrides(tmp_path):
    stored = {"name": "kitchen", "wake_word": "alexa", "bus_port": 9000}
    settings_path(tmp_path).write_text(json.dumps(stored))
    s = load_settings(tmp_path, bus_port=9100, timezone="Europe/Paris", tuning=None)
    assert s.name == "kitchen"
    assert s.wake_word == "alexa"
    assert s.bus_port == 9100  # the override wins over the file
    assert s.timezone == "Europe/Paris"
    assert s.tuning == "voxfleet"  # None means "not given"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("wake_word", "hey_siri"),
        ("stt_model", "large-v3"),
        ("tts_voice", "en_GB-alan-low"),
        ("timezone", "Mars/Olympus_Mons"),
        ("wake_threshold", 1.5),
        ("wake_threshold", 0.0),
        ("bus_port", 70000),
        ("audio_out", "bluetooth"),
        ("colour", "blue"),
    ],
)
def test_bad_value_names_the_field(tmp_path, field, value):
    with pytest.raises(SettingsError) as info:
        load_settings(tmp_path, **{field: value})
    assert field in str(info.value)


def test_unknown_choice_lists_the_bundled_ones(tmp_path):
    with pytest.raises(SettingsError) as info:
        load_settings(tmp_path, wake_word="hey_siri")
    assert "hey_siri" in str(info.value)
    assert "hey_jarvis" in str(info.value)


def test_bad_value_in_the_file_names_the_field(tmp_path):
    settings_path(tmp_path).write_text(json.dumps({"stt_model": "huge"}))
    with pytest.raises(SettingsError, match="stt_model"):
        load_settings(tmp_path)


def test_corrupt_settings_file_mentions_json(tmp_path):
    settings_path(tmp_path).write_text('{"name": "kitchen",')
    with pytest.raises(SettingsError, match="JSON") as info:
        load_settings(tmp_path)
    assert str(settings_path(tmp_path)) in str(info.value)


def test_save_then_load_round_trips(tmp_path):
    original = DeviceSettings(name="hall", wake_word="hey_mycroft", wake_threshold=0.7, timezone="Asia/Tokyo",
                              audio_out="alsa", tuning="stock", bus_port=8200, silence_end=0.6)
    save_settings(tmp_path / "new", original)
    assert load_settings(tmp_path / "new") == original
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["settings.json"]
