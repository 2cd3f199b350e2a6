"""The spool microphone plays files like a sound card: paced, in order, silence in between."""

from __future__ import annotations

import json
import os
import threading
import time
import wave

import numpy as np

from device.voice.plugins.microphone import SpoolMicrophone

CHUNK = 2560  # bytes: 80 ms


def write_wav(path, samples: np.ndarray, rate: int = 16000, channels: int = 1) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with wave.open(str(tmp), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())
    tmp.rename(path)  # as writers are told to: never a half-written file in the spool


def read_until(mic: SpoolMicrophone, n: int) -> bytes:
    return b"".join(mic.read_chunk() for _ in range(n))


def test_idle_microphone_gives_silence_not_none(tmp_path):
    mic = SpoolMicrophone(spool_dir=str(tmp_path))
    mic.start()
    chunks = [mic.read_chunk() for _ in range(3)]
    assert all(c == bytes(CHUNK) for c in chunks)


def test_files_play_in_name_order_with_every_sample(tmp_path):
    first = np.arange(1, 4001, dtype=np.int16)  # 250 ms: not a whole number of chunks
    second = -np.arange(1, 3001, dtype=np.int16)
    write_wav(tmp_path / "b.wav", second)
    write_wav(tmp_path / "a.wav", first)
    mic = SpoolMicrophone(spool_dir=str(tmp_path))
    mic.start()
    audio = np.frombuffer(read_until(mic, 8), np.int16)
    # a.wav, its last chunk padded with silence, then b.wav: nothing dropped, nothing reordered
    assert np.array_equal(audio[:4000], first)
    assert not audio[4000:4 * 1280].any()
    assert np.array_equal(audio[4 * 1280:4 * 1280 + 3000], second)
    log = [json.loads(line) for line in (tmp_path / "played.jsonl").read_text().splitlines()]
    assert [entry["file"] for entry in log] == ["a.wav", "b.wav"]
    assert log[0]["seconds"] == 0.25 and log[0]["started"] <= log[1]["started"]
    assert sorted(os.listdir(tmp_path / "played")) == ["a.wav", "b.wav"]  # kept, not deleted


def test_wrong_format_is_skipped_with_a_reason(tmp_path):
    write_wav(tmp_path / "a-stereo.wav", np.zeros(3200, np.int16), rate=16000, channels=2)
    (tmp_path / "b-garbage.wav").write_bytes(b"RIFF1234WAVEjunk")
    write_wav(tmp_path / "c-good.wav", np.full(1280, 1000, np.int16))
    mic = SpoolMicrophone(spool_dir=str(tmp_path))
    mic.start()
    audio = np.frombuffer(mic.read_chunk(), np.int16)
    assert (audio == 1000).all()  # the good file plays; the bad ones did not stop the microphone
    log = [json.loads(line) for line in (tmp_path / "played.jsonl").read_text().splitlines()]
    errors = {entry["file"]: entry["error"] for entry in log if "error" in entry}
    assert "16 kHz mono" in errors["a-stereo.wav"]
    assert "b-garbage.wav" in errors


def test_paced_no_faster_than_real_time(tmp_path):
    write_wav(tmp_path / "a.wav", np.ones(16000, np.int16))  # one second
    mic = SpoolMicrophone(spool_dir=str(tmp_path))
    mic.start()
    began = time.monotonic()
    read_until(mic, 13)  # 13 chunks = 1.04 s of audio
    # A sound card cannot deliver a second of audio in less than a second.
    assert time.monotonic() - began >= 0.95


def test_raw_stream_from_a_named_pipe(tmp_path):
    fifo = tmp_path / "stream"
    mic = SpoolMicrophone(stream=str(fifo))
    mic.start()
    payload = np.full(1280 * 3, 1234, np.int16).tobytes()

    def writer():
        for _ in range(100):
            if fifo.exists():
                break
            time.sleep(0.02)
        with open(fifo, "wb") as pipe:
            pipe.write(payload)

    thread = threading.Thread(target=writer)
    thread.start()
    got = b""
    for _ in range(60):
        chunk = mic.read_chunk()
        if chunk != bytes(CHUNK):
            got += chunk
        if len(got) >= len(payload):
            break
    thread.join()
    mic.stop()
    assert got[: len(payload)] == payload
