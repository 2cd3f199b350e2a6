"""The setup page's voice tests (device/web/voice_checks.py, voice_mic.py) on real speech and models.

Speech is synthesised with the bundled Piper voice; scores and transcripts come from the same
openWakeWord and whisper models the listener runs.
"""

from __future__ import annotations

import io
import os
import wave

import numpy as np
import pytest

from device.voice import audio
from device.voice.samples import compose
from device.web import voice_checks, voice_mic
from device.web.voice_checks import RecordingError
from tests.device.web.setup_web_kit import PASSWORD


@pytest.fixture(scope="module")
def jarvis_command(piper_voice) -> audio.Pcm:
    pcm, _, _ = compose(piper_voice, "What time is it?")
    return pcm


def wav_bytes(samples: np.ndarray, rate: int, width: int = 2, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())
    return buf.getvalue()


# --- wake word ------------------------------------------------------------------------------------


def test_spoken_wake_word_scores_above_threshold(jarvis_command):
    result = voice_checks.score_wake_word(jarvis_command, "hey_jarvis", 0.5)
    assert result.detected
    assert result.score > 0.5
    # The peak comes at the end of "hey jarvis", well before the end of the command.
    assert 0.5 < result.peak_at < jarvis_command.seconds - 0.5
    assert result.level_dbfs > -20


def test_other_wake_word_and_high_threshold_do_not_fire(jarvis_command):
    assert not voice_checks.score_wake_word(jarvis_command, "alexa", 0.5).detected
    strict = voice_checks.score_wake_word(jarvis_command, "hey_jarvis", 0.9999)
    assert strict.score < 0.9999 and not strict.detected


def test_silence_and_noise_stay_below_threshold():
    silence = audio.Pcm(np.zeros(3 * audio.SAMPLE_RATE, np.int16))
    noise = audio.Pcm((np.random.default_rng(7).standard_normal(3 * audio.SAMPLE_RATE) * 4000)
                      .astype(np.int16))
    for pcm in (silence, noise):
        result = voice_checks.score_wake_word(pcm, "hey_jarvis", 0.5)
        assert result.score < 0.5 and not result.detected
    assert voice_checks.level_dbfs(silence) < -80
    assert "very quiet" in voice_checks.score_wake_word(silence, "hey_jarvis", 0.5).as_dict()["warning"]


def test_scoring_is_repeatable(jarvis_command):
    """Each test starts from a clean detector: the previous clip leaves nothing behind."""
    first = voice_checks.score_wake_word(jarvis_command, "hey_jarvis", 0.5)
    voice_checks.score_wake_word(audio.Pcm(np.zeros(16000, np.int16)), "hey_jarvis", 0.5)
    again = voice_checks.score_wake_word(jarvis_command, "hey_jarvis", 0.5)
    assert again.score == pytest.approx(first.score, abs=1e-4)
    assert again.peak_at == first.peak_at


def test_wake_word_choices_are_checked(jarvis_command):
    with pytest.raises(RecordingError, match="unknown wake word 'ok_google'"):
        voice_checks.score_wake_word(jarvis_command, "ok_google", 0.5)
    with pytest.raises(RecordingError, match="between 0 and 1"):
        voice_checks.score_wake_word(jarvis_command, "hey_jarvis", 1.5)


# --- speech to text ----------------------------------------------------------------------------------


def test_transcript_has_the_words_and_timings(jarvis_command):
    first = voice_checks.transcribe(jarvis_command, "tiny.en")
    words = first.text.lower()
    assert "what time is it" in words
    assert first.seconds == pytest.approx(jarvis_command.seconds, abs=0.01)
    assert first.decode_ms > 0
    assert first.as_dict()["warning"] is None
    assert first.real_time_factor == pytest.approx(first.decode_ms / 1000 / first.seconds, abs=0.002)
    again = voice_checks.transcribe(jarvis_command, "tiny.en")
    assert again.load_ms == 0.0  # the model stays loaded between tests
    assert again.text == first.text


def test_base_model_replaces_tiny(jarvis_command):
    result = voice_checks.transcribe(jarvis_command, "base")
    assert result.model == "base" and result.load_ms > 0
    assert "what time is it" in result.text.lower()
    back = voice_checks.transcribe(jarvis_command, "tiny.en")
    assert back.load_ms > 0  # only one STT model is kept loaded


def test_unknown_stt_model_is_refused(jarvis_command):
    with pytest.raises(RecordingError, match="unknown STT model 'large'"):
        voice_checks.transcribe(jarvis_command, "large")


# --- decoding uploads -------------------------------------------------------------------------------


def test_browser_style_and_odd_wavs_are_converted(jarvis_command):
    # What the page sends: 16-bit mono at whatever rate the browser's audio runs at.
    at_48k = audio.resample(jarvis_command.samples.astype(np.float32) / 32768, 16000, 48000)
    decoded = voice_checks.decode_recording(wav_bytes((at_48k * 32767).astype("<i2"), 48000))
    assert decoded.seconds == pytest.approx(jarvis_command.seconds, abs=0.01)
    assert "what time is it" in voice_checks.transcribe(decoded, "tiny.en").text.lower()
    stereo = np.repeat(jarvis_command.samples[:, None], 2, axis=1)
    assert voice_checks.decode_recording(wav_bytes(stereo, 16000, channels=2)).seconds == pytest.approx(
        jarvis_command.seconds, abs=0.01)


@pytest.mark.parametrize("blob, message", [
    (b"", "empty"),
    (b"hello, this is a text file, not a recording", "not a WAV file"),
    (b"ID3\x03\x00\x00\x00" + bytes(2000), "MP3"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(10), "not a readable PCM WAV|truncated"),
])
def test_not_audio_is_refused(blob, message):
    with pytest.raises(RecordingError, match=message):
        voice_checks.decode_recording(blob)


def test_truncated_wav_is_refused(jarvis_command):
    blob = jarvis_command.to_wav()
    with pytest.raises(RecordingError, match="truncated"):
        voice_checks.decode_recording(blob[: len(blob) // 2])


def test_too_long_and_too_big_are_refused():
    long_wav = wav_bytes(np.zeros(16 * 8000, np.int16), 8000)  # 16 s but only 256 kB
    with pytest.raises(RecordingError, match=r"lasts 16.0 s; the limit is 15 s"):
        voice_checks.decode_recording(long_wav)
    big = wav_bytes(np.zeros(12 * 96000 * 2, np.int16), 96000, channels=2)  # 12 s, 4.6 MB
    with pytest.raises(RecordingError, match=r"4.4 MB; the limit is 3 MB"):
        voice_checks.decode_recording(big)
    # The limit admits 15 s of 48 kHz 16-bit stereo, the largest common recording.
    full = wav_bytes(np.zeros(15 * 48000 * 2, np.int16), 48000, channels=2)
    assert voice_checks.decode_recording(full).seconds == pytest.approx(15.0, abs=0.01)


# --- voice preview --------------------------------------------------------------------------------


def test_preview_is_speech_whisper_understands():
    # Piper samples its phrasing afresh each time: a sentence tiny.en hears the same way every time.
    wav = voice_checks.preview("en_US-joe-medium", "What time is it?")
    with wave.open(io.BytesIO(wav), "rb") as reader:
        assert reader.getframerate() == 22050 and reader.getnchannels() == 1
        assert reader.getnframes() / reader.getframerate() > 0.5
    heard = voice_checks.transcribe(audio.load_wav_bytes(wav), "tiny.en").text.lower()
    assert "what time is it" in heard


@pytest.mark.parametrize("voice, text, message", [
    ("en_US-joe-medium", "   ", "type something"),
    ("en_US-joe-medium", "word " * 100, "the limit is 300"),
    ("en_GB-alan-low", "hello", "unknown voice 'en_GB-alan-low'"),
])
def test_bad_preview_requests_are_refused(voice, text, message):
    with pytest.raises(RecordingError, match=message):
        voice_checks.preview(voice, text)


# --- the device's own microphone ----------------------------------------------------------------------


def test_spool_device_says_it_has_no_microphone():
    with pytest.raises(voice_mic.NoDeviceMicrophone, match="no microphone configured .*'spool'"):
        voice_mic.record("spool", 3)


@pytest.mark.skipif(os.path.exists("/dev/snd"), reason="this machine has a sound card")
def test_configured_microphone_that_cannot_open_says_why():
    with pytest.raises(RecordingError, match="could not be opened|not installed|missing"):
        voice_mic.record("alsa", 1)
    with pytest.raises(RecordingError, match="could not be opened|missing"):
        voice_mic.record("sounddevice", 1)
    with pytest.raises(RecordingError, match="between 1 and 10 seconds"):
        voice_mic.record("alsa", 60)


# --- the pages, through Flask's test client (the real app, its sign-in and CSRF) --------------------

def csrf_token(page_text: str) -> str:
    import re

    found = re.search(r'name="csrf_token" value="([^"]+)"', page_text)
    assert found, "the page has no CSRF field"
    return found.group(1)


@pytest.fixture
def setup_web(tmp_path):
    """A signed-in browser session on a fresh device's setup web."""
    from device.paths import DevicePaths
    from device.web import credentials
    from device.web.app import create_app

    paths = DevicePaths.at(tmp_path / "device")
    app = create_app(paths)
    credentials.set_password(paths.root, PASSWORD)
    client = app.test_client()
    token = csrf_token(client.get("/sign-in").text)
    signed_in = client.post("/sign-in", data={"password": PASSWORD, "csrf_token": token})
    assert signed_in.status_code == 302
    return paths, client


def post_test(client, url: str, page: str, blob: bytes | None, **fields):
    data = {"csrf_token": csrf_token(client.get(page).text), **fields}
    if blob is not None:
        data["audio"] = (io.BytesIO(blob), "recording.wav")
    return client.post(url, data=data, content_type="multipart/form-data",
                       headers={"Accept": "application/json"})


def stored_settings(paths) -> dict:
    import json

    path = paths.root / "settings.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_wake_word_page_tests_an_upload(setup_web, jarvis_command):
    paths, client = setup_web
    page = client.get("/wake-word")
    assert page.status_code == 200
    for name in ("hey jarvis", "hey mycroft", "alexa", "hey rhasspy"):
        assert name in page.text
    assert "no microphone configured" in page.text  # spool: the browser's microphone is offered
    answer = post_test(client, "/wake-word/test", "/wake-word", jarvis_command.to_wav(),
                       wake_word="hey_jarvis", threshold="0.5")
    assert answer.status_code == 200, answer.text
    assert answer.json["detected"] and answer.json["score"] > 0.5
    strict = post_test(client, "/wake-word/test", "/wake-word", jarvis_command.to_wav(),
                       wake_word="hey_mycroft", threshold="0.5")
    assert not strict.json["detected"]


def test_speech_page_transcribes_an_upload(setup_web, jarvis_command):
    _, client = setup_web
    answer = post_test(client, "/speech/test", "/speech", jarvis_command.to_wav(), stt_model="tiny.en")
    assert answer.status_code == 200, answer.text
    assert "what time is it" in answer.json["text"].lower()
    assert answer.json["model"] == "tiny.en" and answer.json["decode_ms"] > 0


@pytest.mark.parametrize("blob, status, message", [
    (b"%PDF-1.4 not audio at all", 400, "not a WAV file"),
    (None, 400, "no recording was sent"),
    (wav_bytes(np.zeros(20 * 8000, np.int16), 8000), 400, "lasts 20.0 s; the limit is 15 s"),
    (bytes(3 * 1048576 + 1), 400, "the limit is 3 MB"),
    (bytes(17 * 1048576), 413, "larger than 3 MB"),
])
def test_bad_uploads_get_clear_errors(setup_web, blob, status, message):
    paths, client = setup_web
    before = stored_settings(paths)
    for url, page in (("/wake-word/test", "/wake-word"), ("/speech/test", "/speech")):
        answer = post_test(client, url, page, blob)
        assert answer.status_code == status
        assert message in answer.json["error"]
    assert stored_settings(paths) == before
    assert client.get("/wake-word").status_code == 200  # nothing broken


def test_device_microphone_on_a_device_without_one(setup_web):
    _, client = setup_web
    answer = post_test(client, "/wake-word/test", "/wake-word", None, source="device", seconds="3")
    assert answer.status_code == 400
    assert "no microphone configured" in answer.json["error"]


def test_a_test_without_the_csrf_token_is_refused(setup_web, jarvis_command):
    _, client = setup_web
    answer = client.post("/wake-word/test", data={"audio": (io.BytesIO(jarvis_command.to_wav()), "a.wav")},
                         content_type="multipart/form-data", headers={"Accept": "application/json"})
    assert answer.status_code == 400
    assert "nothing was changed" in answer.json["error"]


def test_voice_preview_is_a_wav(setup_web):
    _, client = setup_web
    token = csrf_token(client.get("/voice").text)
    answer = client.post("/voice/preview", data={"csrf_token": token, "voice": "en_US-joe-medium",
                                                 "text": "Good morning."})
    assert answer.status_code == 200 and answer.mimetype == "audio/wav"
    assert audio.load_wav_bytes(answer.data).seconds > 0.4
    empty = client.post("/voice/preview", data={"csrf_token": token, "text": " "})
    assert empty.status_code == 400 and "type something" in empty.json["error"]


def test_choices_are_saved(setup_web):
    paths, client = setup_web
    token = csrf_token(client.get("/wake-word").text)
    saved = client.post("/wake-word", data={"csrf_token": token, "wake_word": "alexa", "threshold": "0.62"},
                        follow_redirects=True)
    assert saved.status_code == 200 and "Saved" in saved.text
    assert stored_settings(paths)["wake_word"] == "alexa"
    assert stored_settings(paths)["wake_threshold"] == pytest.approx(0.62)
    assert '<option value="alexa" selected>' in saved.text
    client.post("/speech", data={"csrf_token": token, "stt_model": "base"})
    assert stored_settings(paths)["stt_model"] == "base"


@pytest.mark.parametrize("url, fields, message", [
    ("/wake-word", {"wake_word": "ok_google"}, "unknown wake word"),
    ("/wake-word", {"threshold": "very"}, "must be a number"),
    ("/wake-word", {"threshold": "1.5"}, "less than 1"),
    ("/speech", {"stt_model": "large-v3"}, "unknown STT model"),
    ("/voice", {"tts_voice": "nobody"}, "unknown TTS voice"),
])
def test_bad_choices_are_refused_and_nothing_saved(setup_web, url, fields, message):
    paths, client = setup_web
    before = stored_settings(paths)
    token = csrf_token(client.get(url).text)
    answer = client.post(url, data={"csrf_token": token, **fields})
    assert answer.status_code == 400
    assert message in answer.text
    assert stored_settings(paths) == before


def test_fields_managed_by_the_cloud_are_read_only(setup_web):
    from device.settings import save_managed

    paths, client = setup_web
    save_managed(paths.root, 4, {"stt_model": "base", "wake_threshold": 0.7})
    speech = client.get("/speech").text
    assert "Managed by the cloud" in speech
    assert 'name="stt_model" data-setting="stt_model" disabled' in speech
    token = csrf_token(speech)
    refused = client.post("/speech", data={"csrf_token": token, "stt_model": "tiny.en"})
    assert refused.status_code == 400 and "managed by the cloud" in refused.text
    assert "stt_model" not in stored_settings(paths)
    # The wake word stays local while its threshold is the cloud's: the page saves only the former.
    wake = client.get("/wake-word").text
    assert wake.count("Managed by the cloud") == 1 and 'value="0.7"' in wake
    client.post("/wake-word", data={"csrf_token": token, "wake_word": "hey_mycroft"})
    assert stored_settings(paths)["wake_word"] == "hey_mycroft"


@pytest.mark.skipif(os.path.exists("/dev/snd"), reason="this machine has a sound card")
def test_device_microphone_offered_when_configured(setup_web):
    from device.settings import DeviceSettings, save_settings

    paths, client = setup_web
    save_settings(paths.root, DeviceSettings(audio_in="alsa"))
    page = client.get("/speech").text
    assert "Record with the device&#39;s microphone" in page or "Record with the device's microphone" in page
    assert "no microphone configured" not in page
    answer = post_test(client, "/speech/test", "/speech", None, source="device", seconds="2")
    assert answer.status_code == 400  # this machine has no sound card: the reason, not a crash
    assert "could not be opened" in answer.json["error"]
    bad_length = post_test(client, "/speech/test", "/speech", None, source="device", seconds="two")
    assert "whole number of seconds" in bad_length.json["error"]
