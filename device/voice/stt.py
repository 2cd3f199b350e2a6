"""faster-whisper transcription sized for voice commands.

Whisper encodes a fixed 30-second window, however short the audio: on a 2-core CPU that costs
~0.45 s of the ~0.65 s a three-second command takes with tiny.en. CTranslate2's encoder accepts a
shorter window, so a command is encoded in a window just larger than itself (its length plus
``margin`` seconds of silence, at least ``min_window``): about 0.13 s in all (measured by
bench/voice.py). The silence margin matters: with too little, whisper does not see the end of
speech and repeats itself; a repetition guard falls back to the full window if it still happens.
Audio longer than the largest window goes through faster-whisper's ordinary path.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

import numpy as np

from device import models

SAMPLE_RATE = 16000
FRAMES_PER_SECOND = 100  # whisper's mel frames
MAX_PROMPT_TOKENS = 223  # whisper's limit on previous-text tokens (half its context, less one)
MAX_WORDS_PER_SECOND = 5.0  # faster than any speaker: more words than this means a hallucination

log = logging.getLogger(__name__)


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def first_of_repeats(text: str) -> str:
    """"Turn it up. Turn it up." -> "Turn it up.": a sentence said once and then echoed by the decoder.

    Whisper conditioned on a prompt of short sentences tends to repeat the command it just heard
    until its length limit. When every later sentence is the first one again (or the start of it, cut
    by the limit), the first is what was said; anything else is left for looks_repeated to judge.
    """
    sentences = [s for s in re.split(r"(?<=[.?!])\s+", text.strip()) if s]
    if len(sentences) < 2:
        return text
    first = _words(sentences[0])
    if first and all(_words(s) and first[:len(_words(s))] == _words(s) for s in sentences[1:]):
        return sentences[0]
    return text


def looks_repeated(text: str, seconds: float) -> bool:
    """Whisper's failure mode on a short window: the same phrase again and again."""
    words = _words(text)
    if len(words) > MAX_WORDS_PER_SECOND * seconds + 3:
        return True
    return any(words[:size] == words[size:2 * size] for size in range(2, len(words) // 2 + 1))


class WhisperEngine:
    """One loaded whisper model; thread-safe (one transcription at a time)."""

    def __init__(self, model: str | Path | None = None, device: str = "cpu", compute_type: str = "int8",
                 cpu_threads: int = 2, beam_size: int = 1, margin: float = 3.0,
                 min_window: float = 8.0, language: str = "en", prompt: str = "") -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        path = str(model or models.stt_model_dir())
        try:
            self.model = WhisperModel(path, device=device, compute_type=compute_type, cpu_threads=cpu_threads)
        except (RuntimeError, ValueError) as exc:
            if device == "cpu":
                raise
            # A Jetson whose CUDA libraries went away in an OS update, or a CTranslate2 built without
            # CUDA (PyPI's aarch64 wheels): keep listening on the CPU rather than not at all.
            log.warning("whisper cannot run on %s (%s); using the CPU (int8) instead", device, exc)
            device, compute_type = "cpu", "int8"
            self.model = WhisperModel(path, device=device, compute_type=compute_type, cpu_threads=cpu_threads)
        self.device, self.compute_type = device, compute_type
        self.beam_size = beam_size
        self.margin = margin
        self.min_window = min_window
        self._lock = threading.Lock()
        self._tokenizers: dict[str, object] = {}
        self._Tokenizer = Tokenizer
        self._suppressed = get_suppressed_tokens
        self.default_language = language
        # Previous-text conditioning toward what the device can do (device/voice/vocabulary.py).
        self.prompt = prompt.strip()
        self.short_window_used = 0
        self.full_window_used = 0

    def _prompt(self, language: str, prompted: bool = True) -> tuple[object, list[int], list[int]]:
        if language not in self._tokenizers:
            multilingual = self.model.model.is_multilingual
            tokenizer = self._Tokenizer(self.model.hf_tokenizer, multilingual, task="transcribe",
                                        language=language if multilingual else "en")
            start = list(tokenizer.sot_sequence) + [tokenizer.no_timestamps]
            # As faster-whisper builds it for initial_prompt: at most half the 448-token context.
            previous = tokenizer.encode(" " + self.prompt)[-MAX_PROMPT_TOKENS:] if self.prompt else []
            prompted_start = [tokenizer.sot_prev] + previous + start if previous else start
            self._tokenizers[language] = (tokenizer, start, prompted_start, self._suppressed(tokenizer, [-1]))
        tokenizer, start, prompted_start, suppressed = self._tokenizers[language]
        return tokenizer, prompted_start if prompted else start, suppressed

    def transcribe(self, pcm: bytes | np.ndarray, language: str | None = None) -> str:
        """Text of 16 kHz mono audio (int16 bytes or a float32 array in -1..1)."""
        if isinstance(pcm, (bytes, bytearray)):
            audio = np.frombuffer(pcm, np.int16).astype(np.float32) / 32768.0
        else:
            audio = np.asarray(pcm, dtype=np.float32)
        if audio.size == 0:
            return ""
        language = (language or self.default_language).split("-")[0].lower()
        seconds = audio.size / SAMPLE_RATE
        with self._lock:
            if seconds + self.margin <= 30.0:
                # With the prompt first; if the decoder still runs away, once more without it (a
                # short window is ~0.1 s), and only then the full 30 s window (~0.5 s more).
                encoded = self._encode_short(audio)
                for prompted in ((True, False) if self.prompt else (False,)):
                    text = first_of_repeats(self._decode(encoded, language, prompted, seconds))
                    if not looks_repeated(text, seconds):
                        self.short_window_used += 1
                        return text
            self.full_window_used += 1
            return self._full_window(audio, language)

    def _encode_short(self, audio: np.ndarray):
        import ctranslate2

        features = self.model.feature_extractor(audio)
        frames = int(min(30 * FRAMES_PER_SECOND,
                         max(self.min_window * FRAMES_PER_SECOND,
                             features.shape[1] + self.margin * FRAMES_PER_SECOND)))
        if features.shape[1] < frames:
            features = np.pad(features, ((0, 0), (0, frames - features.shape[1])))
        window = ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None, :, :frames]))
        return self.model.model.encode(window, to_cpu=False)

    def _decode(self, encoded, language: str, prompted: bool, seconds: float) -> str:
        tokenizer, prompt, suppressed = self._prompt(language, prompted)
        # max_length counts the prompt too; the command itself gets what a fast talker could fill.
        budget = min(128, int(seconds * MAX_WORDS_PER_SECOND * 2) + 16)
        result = self.model.model.generate(encoded, [prompt], beam_size=self.beam_size,
                                           max_length=len(prompt) + budget,
                                           suppress_blank=True, suppress_tokens=suppressed)
        return tokenizer.decode(result[0].sequences_ids[0]).strip()

    def _full_window(self, audio: np.ndarray, language: str) -> str:
        segments, _ = self.model.transcribe(audio, beam_size=self.beam_size, language=language,
                                            condition_on_previous_text=False, without_timestamps=True,
                                            initial_prompt=self.prompt or None)
        return "".join(segment.text for segment in segments).strip()
