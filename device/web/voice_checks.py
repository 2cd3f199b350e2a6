"""The setup page's voice tests: score a recording for a wake word, transcribe it, speak a preview.

A person installing a device wants to know, before walking away, whether "hey jarvis" said in that
room clears the threshold they chose, whether the STT model hears them, and what the voice sounds
like. These functions answer that with the very models and scoring the listener runs
(device/voice/wakeword.py, device/voice/stt.py, the bundled Piper voice), so a pass here means a pass there.

Models are loaded lazily and cached per process, one of each kind at a time: a Raspberry Pi has
little memory, and the setup page runs beside the whole voice stack.
"""

from __future__ import annotations

import io
import json
import threading
import time
import wave
from dataclasses import dataclass

import numpy as np

from device import models
from device.voice import audio

MAX_SECONDS = 15.0  # the limit a person sees: checked on the header and again after decoding
# The byte cap only stops a huge file before it is decoded; it must admit MAX_SECONDS of the largest
# common recording, 48 kHz 16-bit stereo (2.88 MB), with room for the header and extra chunks. A
# higher rate or wider samples fit proportionally shorter clips.
MAX_UPLOAD_BYTES = 3 * 1024 * 1024
MAX_PREVIEW_CHARS = 300
FRAME_SAMPLES = 1280  # openwakeword scores 80 ms frames (as device/voice/wakeword.py)
LEAD_IN_FRAMES = 6  # silence before the clip, as WakeWordDetector.score_clip, so features settle
TAIL_FRAMES = 4


class RecordingError(ValueError):
    """A recording cannot be tested; the message is meant for the person who made it."""


# --- decoding a recording ---------------------------------------------------------------------------


def decode_recording(blob: bytes, name: str = "the recording") -> audio.Pcm:
    """16 kHz mono int16 audio of an uploaded WAV (any rate, width, channel count).

    The browser encodes WAV itself from Web Audio PCM, so nothing but WAV needs decoding here and
    no ffmpeg is needed on the device. Size is checked before anything is decoded.
    """
    if len(blob) > MAX_UPLOAD_BYTES:
        raise RecordingError(
            f"{name} is {len(blob) / 1048576:.1f} MB; the limit is {MAX_UPLOAD_BYTES // 1048576} MB "
            f"({MAX_SECONDS:.0f} s of 48 kHz 16-bit stereo). Record a shorter clip, or in mono or at a "
            "lower sample rate."
        )
    seconds = _header_seconds(blob)
    if seconds is not None and seconds > MAX_SECONDS:
        raise RecordingError(f"{name} lasts {seconds:.1f} s; the limit is {MAX_SECONDS:.0f} s. "
                             "Record a shorter clip.")
    try:
        pcm = audio.load_wav_bytes(blob, name)
    except audio.AudioError as exc:
        raise RecordingError(str(exc)) from exc
    if pcm.seconds > MAX_SECONDS:
        raise RecordingError(f"{name} lasts {pcm.seconds:.1f} s; the limit is {MAX_SECONDS:.0f} s.")
    return pcm


def _header_seconds(blob: bytes) -> float | None:
    """Duration the WAV header announces, or None when it cannot say (left to the full decoder)."""
    try:
        with wave.open(io.BytesIO(blob), "rb") as wav:
            return wav.getnframes() / wav.getframerate()
    except (wave.Error, EOFError, ZeroDivisionError, ValueError):
        return None


QUIET_DBFS = -40.0  # speech a metre from a working microphone peaks well above this


def quiet_warning(level: float) -> str | None:
    """What to tell a person whose recording is too quiet to judge anything by, else None."""
    if level >= QUIET_DBFS:
        return None
    return (f"The recording is very quiet (peak {level:.0f} dBFS): check that the right microphone is "
            "chosen and not muted, and speak closer to it.")


def level_dbfs(pcm: audio.Pcm) -> float:
    """Peak level in dB below full scale: tells "too quiet" apart from "not recognised"."""
    if pcm.samples.size == 0:
        return -120.0
    peak = int(np.max(np.abs(pcm.samples.astype(np.int32))))
    return round(20 * np.log10(max(peak, 1) / 32768.0), 1)


# --- wake word ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WakeWordResult:
    wake_word: str
    threshold: float
    score: float  # peak openWakeWord score over the clip, 0..1
    peak_at: float  # seconds into the recording where the peak frame ends
    detected: bool
    seconds: float
    level_dbfs: float

    def as_dict(self) -> dict:
        return {**self.__dict__, "warning": quiet_warning(self.level_dbfs)}


_wake_lock = threading.Lock()
_wake_detector = None  # one WakeWordDetector at a time


def _detector(wake_word: str):
    global _wake_detector
    if _wake_detector is None or _wake_detector.name != wake_word:
        from device.voice.wakeword import WakeWordDetector

        _wake_detector = None  # free the old model before loading the next
        _wake_detector = WakeWordDetector(name=wake_word)
    return _wake_detector


def score_wake_word(pcm: audio.Pcm, wake_word: str, threshold: float) -> WakeWordResult:
    """Peak score of ``wake_word`` over the recording, and whether it clears ``threshold``.

    Frames are fed one at a time to the listener's detector, from a clean state and after the same
    lead-in silence as ``WakeWordDetector.score_clip``, so the time of the best frame is known.
    """
    if wake_word not in models.WAKE_WORDS:
        raise RecordingError(f"unknown wake word '{wake_word}'; bundled: {', '.join(models.WAKE_WORDS)}")
    if not 0.0 < threshold < 1.0:
        raise RecordingError(f"the threshold must be between 0 and 1, not {threshold}")
    lead = np.zeros(FRAME_SAMPLES * LEAD_IN_FRAMES, np.int16)
    tail = np.zeros(FRAME_SAMPLES * TAIL_FRAMES, np.int16)
    samples = np.concatenate([lead, pcm.samples, tail])
    best, best_frame = 0.0, 0
    with _wake_lock:
        detector = _detector(wake_word)
        detector.reset()
        try:
            for index in range(samples.size // FRAME_SAMPLES):
                frame = samples[index * FRAME_SAMPLES:(index + 1) * FRAME_SAMPLES]
                score = detector.feed(frame.tobytes())
                if score > best:
                    best, best_frame = score, index
        finally:
            detector.reset()
    peak_at = max(0.0, (best_frame + 1 - LEAD_IN_FRAMES) * FRAME_SAMPLES / audio.SAMPLE_RATE)
    return WakeWordResult(wake_word, threshold, round(best, 4), round(min(peak_at, pcm.seconds), 2),
                          best >= threshold, round(pcm.seconds, 2), level_dbfs(pcm))


# --- speech to text -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TranscriptResult:
    model: str
    text: str
    load_ms: float  # time spent loading the model for this request (0 when it was already loaded)
    decode_ms: float
    seconds: float
    real_time_factor: float  # decode time / audio time; below 1 is faster than speech
    level_dbfs: float

    def as_dict(self) -> dict:
        return {**self.__dict__, "warning": quiet_warning(self.level_dbfs)}


_stt_lock = threading.Lock()
_stt_engine: tuple[str, object] | None = None  # (model name, WhisperEngine): one at a time


def _engine(stt_model: str, beam_size: int) -> tuple[object, float]:
    global _stt_engine
    if _stt_engine is not None and _stt_engine[0] == stt_model:
        engine = _stt_engine[1]
        engine.beam_size = beam_size
        return engine, 0.0
    from device.voice.stt import WhisperEngine

    _stt_engine = None  # drop the other model first: two whisper models do not fit on a small Pi
    started = time.perf_counter()
    engine = WhisperEngine(models.stt_model_dir(stt_model), beam_size=beam_size)
    _stt_engine = (stt_model, engine)
    return engine, (time.perf_counter() - started) * 1000


def transcribe(pcm: audio.Pcm, stt_model: str, beam_size: int = 1) -> TranscriptResult:
    """What ``stt_model`` hears in the recording, with load and decode times kept apart."""
    if stt_model not in models.STT_MODELS:
        raise RecordingError(f"unknown STT model '{stt_model}'; bundled: {', '.join(models.STT_MODELS)}")
    with _stt_lock:
        engine, load_ms = _engine(stt_model, beam_size)
        started = time.perf_counter()
        text = engine.transcribe(pcm.to_bytes())
        decode_ms = (time.perf_counter() - started) * 1000
    seconds = pcm.seconds
    return TranscriptResult(stt_model, text, round(load_ms, 1), round(decode_ms, 1), round(seconds, 2),
                            round(decode_ms / 1000 / seconds, 3) if seconds else 0.0, level_dbfs(pcm))


# --- text to speech ----------------------------------------------------------------------------------


_tts_lock = threading.Lock()
_tts_voice: tuple[str, object, int] | None = None  # (voice name, Piper engine, sample rate)


def _piper(voice: str) -> tuple[object, int]:
    global _tts_voice
    if _tts_voice is None or _tts_voice[0] != voice:
        import onnxruntime

        from device.voice.piper import PiperConfig, PiperVoice

        files = models.tts_voice(voice)
        config = json.loads(files.config.read_text(encoding="utf-8"))
        _tts_voice = None
        session = onnxruntime.InferenceSession(str(files.model), providers=["CPUExecutionProvider"])
        _tts_voice = (voice, PiperVoice(config=PiperConfig.from_dict(config), session=session),
                      int(config["audio"]["sample_rate"]))
    return _tts_voice[1], _tts_voice[2]


def preview(voice: str, text: str) -> bytes:
    """A WAV of ``text`` in ``voice``, synthesised here, at the voice's own sample rate."""
    if voice not in models.TTS_VOICES:
        raise RecordingError(f"unknown voice '{voice}'; bundled: {', '.join(models.TTS_VOICES)}")
    text = " ".join((text or "").split())
    if not text:
        raise RecordingError("type something for the voice to say")
    if len(text) > MAX_PREVIEW_CHARS:
        raise RecordingError(f"the preview text is {len(text)} characters; the limit is {MAX_PREVIEW_CHARS}")
    with _tts_lock:
        engine, rate = _piper(voice)
        raw = b"".join(engine.synthesize_stream_raw(text))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(raw)
    return buf.getvalue()
