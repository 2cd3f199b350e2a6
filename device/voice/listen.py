"""Play audio files into the running voice stack and report each voice session they caused.

This is ``voxfleet device listen``: files go through the spool microphone at real-time pace, so the
wake word, VAD, STT, intents, skills and TTS run exactly as they do for a person talking to the
device. Latency is measured against the audio itself (when the wake phrase and the command really
ended), not against the listener's own events, so the figures are what a person would feel.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from device.paths import DevicePaths
from device.settings import DeviceSettings
from device.stack.supervisor import StackError, Supervisor, bus_is_up
from device.voice import audio, samples
from device.voice.sessions import BusEvent, SessionBuilder, VoiceSession, ms_between

SETTLE_SECONDS = 1.5  # after a file ends: time for a late wake word to fire and recording to start
SESSION_TIMEOUT = 45.0  # an exchange that has not finished by then is reported as it stands


@dataclass
class SessionReport:
    file: str
    session_id: str
    ovos_session_id: str
    wake_word: str | None
    transcript: str | None
    intent: str | None
    answer: str | None
    answer_audio: str | None
    end_state: str
    started_at: float  # wall clock (epoch seconds) of the wake word, or of the first sign of the session
    timings_ms: dict[str, float | None] = field(default_factory=dict)
    # The intent pipeline stage that matched ("semantic", "padacioso_high", ...) and its confidence.
    match_stage: str | None = None
    match_confidence: float | None = None

    def to_dict(self) -> dict:
        return {
            "session_id": self.session_id,
            "wake_word": self.wake_word,
            "transcript": self.transcript,
            "intent": self.intent,
            "match_stage": self.match_stage,
            "match_confidence": self.match_confidence,
            "answer": self.answer,
            "answer_audio": self.answer_audio,
            "timings_ms": self.timings_ms,
            "end_state": self.end_state,
            "started_at": round(self.started_at, 3),
            "file": self.file,
            "ovos_session_id": self.ovos_session_id,
        }


class BusRecorder:
    """A messagebus client that feeds every message to a SessionBuilder as it arrives."""

    def __init__(self, host: str, port: int) -> None:
        from ovos_bus_client import MessageBusClient

        self.builder = SessionBuilder()
        self.finished: list[VoiceSession] = []
        self.lock = threading.Lock()
        self.last_event_at = 0.0
        self.client = MessageBusClient(host=host, port=port)
        self.client.on("message", self._on_message)
        self.client.run_in_thread()
        if not self.client.connected_event.wait(10):
            raise StackError(f"cannot connect to the messagebus at {host}:{port}")

    def _on_message(self, raw: str) -> None:
        now = time.time()
        try:
            msg = json.loads(raw)
        except ValueError:
            return
        event = BusEvent(now, str(msg.get("type", "")), msg.get("data") or {}, msg.get("context") or {})
        with self.lock:
            self.last_event_at = now
            self.finished += self.builder.feed(event)

    def open_sessions(self) -> list[VoiceSession]:
        with self.lock:
            return self.builder.open_sessions()

    def take_finished(self, since: float) -> list[VoiceSession]:
        with self.lock:
            mine = [s for s in self.finished if s.started_at >= since]
            self.finished = [s for s in self.finished if s.started_at < since]
            return mine

    def flush(self) -> None:
        with self.lock:
            self.finished += self.builder.flush()

    def close(self) -> None:
        self.client.close()


def running_stack(paths: DevicePaths) -> dict | None:
    """The supervisor record of a stack already running on this data folder, if any."""
    record_path = paths.run / "supervisor.json"
    try:
        record = json.loads(record_path.read_text())
        os.kill(int(record["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    if not bus_is_up(record["bus_host"], int(record["bus_port"])):
        return None
    return record


def _read_jsonl(path: Path) -> list[dict]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line being written right now
    return out


class Listener:
    """Owns (or borrows) a running stack and plays files into it one at a time."""

    def __init__(self, paths: DevicePaths, settings: DeviceSettings,
                 on_event=None) -> None:
        self.paths = paths
        self.settings = settings
        self.on_event = on_event
        self.supervisor: Supervisor | None = None
        self.recorder: BusRecorder | None = None

    def __enter__(self) -> Listener:
        self.paths.create()
        record = running_stack(self.paths)
        if record is None:
            self.supervisor = Supervisor(self.paths, self.settings, on_event=self.on_event)
            self.supervisor.start()
            host, port = self.settings.bus_host, self.settings.bus_port
        else:
            host, port = record["bus_host"], int(record["bus_port"])
        self.recorder = BusRecorder(host, port)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.recorder:
            self.recorder.close()
        if self.supervisor:
            self.supervisor.stop()

    # -- one file -----------------------------------------------------------------------------------

    def _enqueue(self, pcm: audio.Pcm, name: str) -> str:
        spool_name = f"{time.time_ns()}-{name}.wav"
        tmp = self.paths.spool / (spool_name + ".tmp")
        tmp.write_bytes(pcm.to_wav())
        tmp.rename(self.paths.spool / spool_name)
        return spool_name

    def _wait_played(self, spool_name: str, timeout: float) -> dict:
        log = self.paths.spool / "played.jsonl"
        deadline = time.time() + timeout
        while time.time() < deadline:
            for record in reversed(_read_jsonl(log)):
                if record.get("file") == spool_name:
                    if "error" in record:
                        raise audio.AudioError(f"the microphone could not play it: {record['error']}")
                    return record
            time.sleep(0.05)
        raise StackError("the listener did not take the audio in time; is ovos-dinkum-listener running? "
                         f"See {self.paths.logs / 'listener.log'}")

    def listen(self, path: str | Path) -> list[SessionReport]:
        """Play one file; return the voice sessions it started (none when no wake word)."""
        path = Path(path)
        pcm = audio.load_wav(path)
        meta = samples.sidecar_for(path)
        if meta:
            wake_ends, speech_ends = [meta["wake_end"]], [meta["speech_end"]]
        else:
            ends = [seg.end for seg in audio.speech_segments(pcm)]
            wake_ends, speech_ends = ends, ends
        assert self.recorder is not None
        spool_name = self._enqueue(pcm, path.stem[:40].replace(" ", "_"))
        played = self._wait_played(spool_name, timeout=30.0 + pcm.seconds)
        t0 = float(played["started"])
        audio_end = t0 + pcm.seconds

        # Wait for the audio to finish, then until every exchange it started has finished.
        deadline = audio_end + SESSION_TIMEOUT
        while time.time() < deadline:
            now = time.time()
            if now >= audio_end + SETTLE_SECONDS and not self.recorder.open_sessions():
                break
            time.sleep(0.05)
        else:
            self.recorder.flush()
        sessions = self.recorder.take_finished(since=t0)
        answers = _read_jsonl(self.paths.answers / "played.jsonl")
        return [self._report(path, s, t0, wake_ends, speech_ends, answers) for s in sessions]

    def _report(self, path: Path, s: VoiceSession, t0: float, wake_ends: list[float],
                speech_ends: list[float], answers: list[dict]) -> SessionReport:
        wake_end = None
        if s.wake_at is not None:
            before = [t0 + e for e in wake_ends if t0 + e <= s.wake_at + 0.05]
            wake_end = max(before) if before else None
        speech_end = None
        if s.record_end_at is not None:
            before = [t0 + e for e in speech_ends if t0 + e <= s.record_end_at]
            speech_end = max(before) if before else None
        first_audio, answer_audio = None, None
        if s.speak_at is not None:
            played = sorted((a for a in answers if a.get("started", 0) >= s.speak_at - 0.05),
                            key=lambda a: a["started"])
            if played:
                first_audio, answer_audio = float(played[0]["started"]), played[0]["path"]
        if first_audio is None:
            first_audio = s.audio_start_at
        timings = {
            "wake_detect": ms_between(s.wake_at, wake_end),
            "end_of_speech_to_transcript": ms_between(s.utterance_at, speech_end),
            "transcript_to_intent": ms_between(s.matched_at, s.utterance_at),
            "intent_to_answer": ms_between(s.speak_at, s.matched_at),
            "answer_to_first_audio": ms_between(first_audio, s.speak_at),
            "end_of_speech_to_first_audio": ms_between(first_audio, speech_end),
            "end_of_speech_to_record_end": ms_between(s.record_end_at, speech_end),
        }
        return SessionReport(
            file=str(path), session_id=s.session_id, ovos_session_id=s.ovos_session_id,
            wake_word=s.wake_word, transcript=s.transcript, intent=s.intent, answer=s.answer,
            answer_audio=answer_audio, end_state=s.end_state,
            started_at=s.wake_at or s.started_at, timings_ms=timings,
            match_stage=s.match_stage, match_confidence=s.match_confidence,
        )
