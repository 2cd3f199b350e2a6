"""`voxfleet device ...` as a person uses it: bad input gets a clear message and a non-zero exit,
before minutes are spent starting the stack."""

from __future__ import annotations

import json
import subprocess
import wave

import pytest

from tests.conftest import VOXFLEET


def run(*args, timeout=120):
    return subprocess.run([VOXFLEET, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def bad_files(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    mp3 = tmp_path / "song.mp3"
    mp3.write_bytes(b"ID3\x03\x00" + bytes(100))
    truncated = tmp_path / "truncated.wav"
    with wave.open(str(truncated), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(32000))
    truncated.write_bytes(truncated.read_bytes()[:1000])
    return {"empty": empty, "mp3": mp3, "truncated": truncated, "missing": tmp_path / "nope.wav"}


@pytest.mark.parametrize("kind,message", [("empty", "empty"), ("mp3", "unsupported audio format (mp3)"),
                                          ("truncated", "truncated"), ("missing", "no such file")])
def test_listen_refuses_bad_audio_clearly(bad_files, tmp_path, kind, message):
    out = run("device", "listen", "--data-dir", str(tmp_path / "dev"), "--wav", str(bad_files[kind]))
    assert out.returncode == 2
    assert message in out.stderr.lower()
    assert not (tmp_path / "dev" / "run" / "supervisor.json").exists()  # no stack was started


def test_listen_refuses_unknown_settings(tmp_path, piper_voice):
    from device.voice import samples

    wav = tmp_path / "ok.wav"
    samples.write_wav(wav, piper_voice.speak("hello"))
    out = run("device", "listen", "--data-dir", str(tmp_path / "dev"), "--wav", str(wav),
              "--wake-word", "hey_siri")
    assert out.returncode == 2
    assert "unknown wake word 'hey_siri'" in out.stderr


def test_corrupt_settings_file_is_explained(tmp_path, piper_voice):
    from device.voice import samples

    wav = tmp_path / "ok.wav"
    samples.write_wav(wav, piper_voice.speak("hello"))
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "settings.json").write_text("{not json")
    out = run("device", "listen", "--data-dir", str(tmp_path / "dev"), "--wav", str(wav))
    assert out.returncode == 2
    assert "not valid JSON" in out.stderr


def test_models_lists_every_bundled_model():
    out = run("device", "models", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert {r["name"] for r in rows} >= {"tiny.en", "base", "en_US-joe-medium", "hey_jarvis", "silero"}
    assert all(r["path"] and not r["error"] for r in rows)


def test_samples_writes_wavs_with_timing(tmp_path):
    out = run("device", "samples", "--out", str(tmp_path), "--voice", "espeak")
    assert out.returncode == 0, out.stderr
    wavs = sorted(tmp_path.glob("*.wav"))
    assert len(wavs) >= 5
    meta = json.loads(wavs[0].with_suffix(".json").read_text())
    assert 0 < meta["wake_end"] < meta["speech_end"]


def test_sync_refuses_a_store_it_cannot_use_clearly(tmp_path):
    (tmp_path / "store.db").write_bytes(b"not a database\n" * 100)
    out = run("device", "sync", "--data-dir", str(tmp_path), "--once")
    assert out.returncode == 1
    assert "store.db is not a readable SQLite database" in out.stderr and "Traceback" not in out.stderr
    assert (tmp_path / "store.db").read_bytes() == b"not a database\n" * 100
