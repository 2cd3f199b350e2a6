"""OVOS microphone plugin (``opm.microphone``) that plays WAV files and a PCM stream in real time.

Why our own: ``ovos-microphone-plugin-files`` 0.0.1 returns ``None`` when idle (the listener then
spins a core), pushes whole files into the queue without pacing (VAD and the wake word see audio
faster than real time, so timings mean nothing), drops a file's last partial chunk and deletes its
inputs. This plugin behaves like a sound card: it hands out one chunk per chunk-duration, silence
when there is nothing to play, so the listener, wake word, VAD and STT run exactly as on hardware.

Sources, both optional:
- ``spool_dir``: 16 kHz mono 16-bit WAV (or raw ``.pcm``) files dropped there are played in name
  order, with silence between them. Writers create ``name.tmp`` and rename it, so a half-written
  file is never read. Played files move to ``spool_dir/played``.
- ``stream``: a named pipe carrying raw s16le 16 kHz mono audio, paced by its writer.

Each played file gets a line in ``spool_dir/played.jsonl`` with the wall-clock time its first sample
was "captured", which is how ``voxfleet device listen`` measures latency from the audio itself.
"""

from __future__ import annotations

import json
import os
import threading
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

from ovos_plugin_manager.templates.microphone import Microphone
from ovos_utils.log import LOG

SAMPLE_RATE = 16000
SAMPLE_WIDTH = 2
MAX_LAG_SECONDS = 2.0  # a sound card's buffer; further behind than this we stop catching up
KEEP_PLAYED = 200  # played files kept for inspection; older ones are deleted
MAX_LOG_BYTES = 2 * 2**20  # played.jsonl is rotated to played.jsonl.1 past this size


def read_pcm(path: Path) -> bytes:
    """Raw 16 kHz mono s16le samples of a spool file; raises ValueError for anything else."""
    if path.suffix == ".pcm":
        return path.read_bytes()
    with wave.open(str(path), "rb") as wav:
        if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (SAMPLE_RATE, 1, SAMPLE_WIDTH):
            raise ValueError(
                f"{path.name}: need 16 kHz mono 16-bit audio, got {wav.getframerate()} Hz, "
                f"{wav.getnchannels()} channel(s), {8 * wav.getsampwidth()}-bit"
            )
        return wav.readframes(wav.getnframes())


@dataclass
class SpoolMicrophone(Microphone):
    spool_dir: str = ""
    stream: str = ""
    chunk_size: int = 2560  # 80 ms: one openWakeWord frame per chunk
    sample_rate: int = SAMPLE_RATE
    sample_width: int = SAMPLE_WIDTH
    sample_channels: int = 1

    _running: bool = False
    _deadline: float = 0.0
    _current: bytes = b""
    _current_name: str = ""
    _offset: int = 0
    _stream_buf: bytearray = field(default_factory=bytearray)
    _stream_lock: threading.Lock = field(default_factory=threading.Lock)
    _stream_thread: threading.Thread | None = None

    def start(self) -> None:
        if self.spool_dir:
            Path(self.spool_dir, "played").mkdir(parents=True, exist_ok=True)
        self._deadline = time.monotonic()
        self._running = True
        if self.stream:
            self._stream_thread = threading.Thread(target=self._read_stream, daemon=True)
            self._stream_thread.start()
        LOG.info(f"spool microphone started (spool={self.spool_dir or '-'}, stream={self.stream or '-'})")

    def stop(self) -> None:
        self._running = False

    # -- pacing ---------------------------------------------------------------------------------

    def _wait_for_next_chunk(self) -> None:
        self._deadline += self.seconds_per_chunk
        delay = self._deadline - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif -delay > MAX_LAG_SECONDS:
            self._deadline = time.monotonic()

    def _capture_wall_time(self) -> float:
        """Wall-clock time at which the chunk being returned started to be 'recorded'."""
        return time.time() - (time.monotonic() - self._deadline) - self.seconds_per_chunk

    # -- sources ---------------------------------------------------------------------------------

    def _read_stream(self) -> None:
        if not os.path.exists(self.stream):
            try:
                os.mkfifo(self.stream)
            except OSError as exc:
                LOG.error(f"cannot create microphone stream {self.stream}: {exc}")
                return
        while self._running:
            try:
                with open(self.stream, "rb", buffering=0) as pipe:
                    while True:
                        data = pipe.read(self.chunk_size)
                        if not data:
                            break  # writer closed; wait for the next one
                        with self._stream_lock:
                            self._stream_buf.extend(data)
            except OSError as exc:
                LOG.error(f"microphone stream {self.stream}: {exc}")
                time.sleep(1.0)

    def _next_spool_file(self) -> bool:
        if not self.spool_dir:
            return False
        try:
            names = sorted(
                n for n in os.listdir(self.spool_dir) if n.endswith((".wav", ".pcm"))
            )
        except FileNotFoundError:
            return False
        for name in names:
            path = Path(self.spool_dir, name)
            try:
                self._current = read_pcm(path)
            except (OSError, EOFError, ValueError, wave.Error) as exc:
                LOG.error(f"spool microphone: skipping {name}: {exc}")
                self._log({"file": name, "error": str(exc)})
                os.replace(path, Path(self.spool_dir, "played", name))
                continue
            self._current_name = name
            self._offset = 0
            os.replace(path, Path(self.spool_dir, "played", name))
            self._prune()
            return True
        return False

    def _prune(self) -> None:
        played = sorted(Path(self.spool_dir, "played").iterdir())
        for old in played[:-KEEP_PLAYED]:
            old.unlink(missing_ok=True)

    def _log(self, record: dict) -> None:
        log_path = Path(self.spool_dir, "played.jsonl")
        if log_path.exists() and log_path.stat().st_size > MAX_LOG_BYTES:
            os.replace(log_path, log_path.with_suffix(".jsonl.1"))
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")

    # -- the microphone API ---------------------------------------------------------------------------

    def read_chunk(self) -> bytes:
        self._wait_for_next_chunk()
        with self._stream_lock:
            if len(self._stream_buf) >= self.chunk_size:
                chunk = bytes(self._stream_buf[: self.chunk_size])
                del self._stream_buf[: self.chunk_size]
                return chunk
        if not self._current and self._next_spool_file():
            self._log({
                "file": self._current_name,
                "started": self._capture_wall_time(),
                "seconds": len(self._current) / (self.sample_rate * self.sample_width),
            })
        if self._current:
            chunk = self._current[self._offset: self._offset + self.chunk_size]
            self._offset += self.chunk_size
            if self._offset >= len(self._current):
                self._current, self._current_name = b"", ""
            return chunk.ljust(self.chunk_size, b"\0")
        return bytes(self.chunk_size)
