import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

PLAYER = Path(__file__).resolve().parents[3] / "device" / "stack" / "player.py"
PEAK = 20000


def run_player(*args):
    return subprocess.run([sys.executable, "-S", str(PLAYER), *map(str, args)],
                          capture_output=True, text=True, timeout=30)


def write_wav(path, samples, rate=16000):
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.asarray(samples, "<i2").tobytes())
    return path


def read_samples(path):
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16000)
        return np.frombuffer(wav.readframes(wav.getnframes()), "<i2")


@pytest.fixture
def device(tmp_path):
    """A data folder: answers/ inside it, and a short sine to play."""
    t = np.arange(1600) / 16000  # 0.1 s
    sine = np.round(PEAK * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    return tmp_path / "data", write_wav(tmp_path / "answer.wav", sine), sine


def played(answers):
    return [json.loads(line) for line in (answers / "played.jsonl").read_text().splitlines()]


def test_copies_the_wav_and_logs_it(device):
    data, source, sine = device
    answers = data / "answers"
    result = run_player(answers, source)
    assert result.returncode == 0, result.stderr
    (entry,) = played(answers)
    assert entry["source"] == str(source)
    assert entry["seconds"] == pytest.approx(0.1, abs=0.001)
    assert isinstance(entry["started"], float)
    copy = Path(entry["path"])
    assert copy.parent == answers and copy.suffix == ".wav"
    np.testing.assert_array_equal(read_samples(copy), sine)  # no volume file: full level


def test_each_play_appends_a_line(device):
    data, source, _ = device
    answers = data / "answers"
    assert run_player(answers, source).returncode == 0
    assert run_player(answers, source).returncode == 0
    entries = played(answers)
    assert len(entries) == 2
    assert entries[0]["path"] != entries[1]["path"]
    assert all(Path(e["path"]).is_file() for e in entries)


@pytest.mark.parametrize(("state", "expected_peak"), [
    ({"percent": 0.5, "muted": False}, PEAK * 0.5),
    ({"percent": 0.25}, PEAK * 0.25),
    ({"percent": 1.0, "muted": False}, PEAK),
    ({"percent": 0.8, "muted": True}, 0),
])
def test_volume_scales_the_copy(device, state, expected_peak):
    data, source, _ = device
    (data / "run").mkdir(parents=True)
    (data / "run" / "volume.json").write_text(json.dumps(state))
    result = run_player(data / "answers", source)
    assert result.returncode == 0, result.stderr
    (entry,) = played(data / "answers")
    peak = np.abs(read_samples(entry["path"]).astype(np.int32)).max()
    assert peak == pytest.approx(expected_peak, abs=PEAK * 0.01)


def test_unreadable_volume_file_means_full_level(device):
    data, source, sine = device
    (data / "run").mkdir(parents=True)
    (data / "run" / "volume.json").write_text("{not json")
    assert run_player(data / "answers", source).returncode == 0
    (entry,) = played(data / "answers")
    np.testing.assert_array_equal(read_samples(entry["path"]), sine)


def test_not_a_wav_is_kept_as_it_is(tmp_path):
    cue = tmp_path / "ding.mp3"
    cue.write_bytes(b"ID3\x04" + bytes(range(200)))
    answers = tmp_path / "answers"
    assert run_player(answers, cue).returncode == 0
    (entry,) = played(answers)
    assert entry["seconds"] == 0
    assert Path(entry["path"]).suffix == ".mp3"
    assert Path(entry["path"]).read_bytes() == cue.read_bytes()


@pytest.mark.parametrize("args", [(), ("only-one",), ("a", "b", "c")])
def test_wrong_arguments_exit_2(tmp_path, args):
    result = run_player(*args)
    assert result.returncode == 2
    assert "usage" in result.stderr


def test_missing_source_exits_1(tmp_path):
    answers = tmp_path / "answers"
    result = run_player(answers, tmp_path / "missing.wav")
    assert result.returncode == 1
    assert "missing.wav" in result.stderr
    assert not (answers / "played.jsonl").exists()
