"""Spoken sample commands, synthesised on the device from the bundled voices.

The demo, the end-to-end tests and the benchmark all need real speech. Rather than ship recordings,
the device speaks them itself: the bundled Piper voice (what the stack is tuned on) and espeak-ng (a
second, unrelated voice nobody tuned for). Each sample is "<wake phrase>", a short pause, then the
command, as a person would say it; the exact offsets are kept so latency can be measured from the
true end of speech.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from device import models
from device.voice import audio

WAKE_PHRASES = {"hey_jarvis": "Hey Jarvis.", "hey_mycroft": "Hey Mycroft.", "alexa": "Alexa.",
                "hey_rhasspy": "Hey Rhasspy."}
PAUSE_AFTER_WAKE = 0.45  # seconds between the wake phrase and the command
LEAD_IN = 0.5
TAIL = 0.3


@dataclass(frozen=True)
class SampleCommand:
    """A command and what a correct device does with it."""

    text: str
    intent: str | None  # "skill_id:intent_name", or None when nothing should match
    answer_contains: tuple[str, ...] = ()  # every item must appear (case-insensitive) in the answer
    espeak: bool = False  # in the espeak-ng set (phrasings tiny.en hears right in that voice)
    piper: bool = True  # in the Piper set


SKILL_DATE_TIME = "ovos-skill-date-time.openvoiceos"
SKILL_TIMER = "voxfleet-skill-timer.voxfleet"
SKILL_VOLUME = "ovos-skill-volume.openvoiceos"
SKILL_INFO = "voxfleet-skill-device-info.voxfleet"

# The sample set: every skill the appliance ships with, in an order that makes sense when played
# one after another (a timer is set before it is asked about and deleted).
SAMPLE_COMMANDS: tuple[SampleCommand, ...] = (
    SampleCommand("What time is it?", f"{SKILL_DATE_TIME}:what.time.is.it.intent", espeak=True),
    SampleCommand("What day is it today?", f"{SKILL_DATE_TIME}:what.day.is.it.intent"),
    SampleCommand("Tell me the full date.", f"{SKILL_DATE_TIME}:current_date.intent", espeak=True,
                  piper=False),
    SampleCommand("What day of the week is it?", f"{SKILL_DATE_TIME}:what.weekday.is.it.intent"),
    SampleCommand("What year is it?", f"{SKILL_DATE_TIME}:what.year.is.it.intent", ("twenty",)),
    SampleCommand("Set a timer for five minutes.", f"{SKILL_TIMER}:timer.set.intent", ("five minutes",),
                  espeak=True),
    SampleCommand("How much time is left on the timer?", f"{SKILL_TIMER}:timer.status.intent",
                  ("left on your timer",), espeak=True),
    SampleCommand("Delete the timer.", f"{SKILL_TIMER}:timer.cancel.intent", ("cancel",), espeak=True),
    SampleCommand("How much time is left?", f"{SKILL_TIMER}:timer.status.intent", ("no timers",),
                  espeak=True),
    SampleCommand("Set volume to maximum.", f"{SKILL_VOLUME}:volume.max.intent", ("maximum",)),
    SampleCommand("Turn the volume down.", f"{SKILL_VOLUME}:less_volume", ("percent",), espeak=True),
    SampleCommand("What is the volume?", f"{SKILL_VOLUME}:current_volume", ("volume is",)),
    SampleCommand("Stop that.", "stop:global"),
    SampleCommand("Stop.", "stop:global", espeak=True, piper=False),
    SampleCommand("What is your name?", f"{SKILL_INFO}:device.name.intent", ("voxfleet",)),
    # tiny.en hears espeak-ng's "What is your name?" as "What did your name?" when the recording
    # carries the pause after the wake word (stable across runs, not a timing effect).
    SampleCommand("What's your name?", f"{SKILL_INFO}:device.name.intent", ("voxfleet",),
                  espeak=True, piper=False),
    SampleCommand("What is your IP address?", f"{SKILL_INFO}:device.address.intent", ("address",)),
    SampleCommand("What is your cloud status?", f"{SKILL_INFO}:device.cloud.intent", ("paired",)),
    SampleCommand("Are you connected to the cloud?", f"{SKILL_INFO}:device.cloud.intent", ("paired",),
                  espeak=True, piper=False),
    SampleCommand("What is the airspeed velocity of an unladen swallow?", None, (), espeak=True),
)


def commands_for(voice: str) -> list[SampleCommand]:
    """The sample set for "piper" or "espeak"."""
    return [c for c in SAMPLE_COMMANDS if (c.piper if voice == "piper" else c.espeak)]


@dataclass(frozen=True)
class SpokenSample:
    path: Path
    text: str
    voice: str
    wake_end: float  # seconds into the file where the wake phrase ends
    speech_end: float  # seconds into the file where the command ends

    def sidecar(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


class Voice:
    """Something that turns text into 16 kHz mono PCM."""

    name = "voice"

    def speak(self, text: str) -> audio.Pcm:
        raise NotImplementedError


class PiperVoice(Voice):
    """The bundled Piper voice. ``deterministic`` turns off Piper's sampling noise, so a sample is
    the same audio on every run and tests and benchmarks compare like with like (with the noise on,
    even the same sentence scores 0.0 to 1.0 on the hey_mycroft model from one synthesis to the next).
    """

    def __init__(self, voice: str = models.DEFAULT_TTS_VOICE, deterministic: bool = True) -> None:
        import onnxruntime

        from device.voice.piper import PiperConfig
        from device.voice.piper import PiperVoice as _Piper

        files = models.tts_voice(voice)
        config = json.loads(files.config.read_text(encoding="utf-8"))
        self.name = f"piper:{voice}"
        self._noise = {"noise_scale": 0.0, "noise_w": 0.0} if deterministic else {}
        self._rate = int(config["audio"]["sample_rate"])
        self._engine = _Piper(config=PiperConfig.from_dict(config),
                              session=onnxruntime.InferenceSession(
                                  str(files.model), providers=["CPUExecutionProvider"]))

    def speak(self, text: str) -> audio.Pcm:
        raw = b"".join(self._engine.synthesize_stream_raw(text, **self._noise))
        data = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
        return audio.from_float(audio.resample(data, self._rate))


class EspeakVoice(Voice):
    """espeak-ng, the Debian package: a voice that sounds nothing like Piper."""

    def __init__(self, voice: str = "en-us", speed: int = 150) -> None:
        if shutil.which("espeak-ng") is None:
            raise RuntimeError("espeak-ng is not installed: apt-get install espeak-ng")
        self.name = f"espeak-ng:{voice}"
        self._args = ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout"]

    def speak(self, text: str) -> audio.Pcm:
        wav = subprocess.run([*self._args, text], check=True, capture_output=True).stdout
        # espeak-ng writes a streaming WAV header with unknown sizes; fix it up before decoding.
        return audio.load_wav_bytes(_fix_streamed_wav(wav), self.name)


def _fix_streamed_wav(blob: bytes) -> bytes:
    if blob[:4] != b"RIFF":
        return blob
    data_at = blob.find(b"data")
    if data_at < 0:
        return blob
    fixed = bytearray(blob)
    fixed[4:8] = (len(blob) - 8).to_bytes(4, "little")
    fixed[data_at + 4:data_at + 8] = (len(blob) - data_at - 8).to_bytes(4, "little")
    return bytes(fixed)


def compose(voice: Voice, text: str, wake_word: str = models.DEFAULT_WAKE_WORD,
            with_wake_word: bool = True) -> tuple[audio.Pcm, float, float]:
    """Lead-in, wake phrase, pause, command, tail; returns (audio, wake_end, speech_end)."""
    parts = [np.zeros(int(LEAD_IN * audio.SAMPLE_RATE), np.int16)]
    wake_end = 0.0
    if with_wake_word:
        wake = _trim(voice.speak(WAKE_PHRASES[wake_word]))
        parts += [wake.samples, np.zeros(int(PAUSE_AFTER_WAKE * audio.SAMPLE_RATE), np.int16)]
        wake_end = LEAD_IN + wake.seconds
    command = _trim(voice.speak(text))
    parts += [command.samples, np.zeros(int(TAIL * audio.SAMPLE_RATE), np.int16)]
    pcm = audio.Pcm(np.concatenate(parts))
    return pcm, wake_end, pcm.seconds - TAIL


def _trim(pcm: audio.Pcm, floor: int = 200) -> audio.Pcm:
    """Cut leading and trailing near-silence so offsets mark real speech."""
    loud = np.flatnonzero(np.abs(pcm.samples.astype(np.int32)) > floor)
    if loud.size == 0:
        return pcm
    return audio.Pcm(pcm.samples[loud[0]: loud[-1] + 1])


def synthesize(voice: Voice, text: str, out_dir: Path, wake_word: str = models.DEFAULT_WAKE_WORD,
               with_wake_word: bool = True) -> SpokenSample:
    """Write one spoken command to ``out_dir`` (cached by content) and a JSON sidecar."""
    out_dir.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(f"{voice.name}|{wake_word}|{with_wake_word}|{text}|v2".encode()).hexdigest()[:12]
    slug = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:40]
    path = out_dir / f"{slug}-{key}.wav"
    sidecar = path.with_suffix(".json")
    if path.exists() and sidecar.exists():
        meta = json.loads(sidecar.read_text())
        return SpokenSample(path, text, voice.name, meta["wake_end"], meta["speech_end"])
    pcm, wake_end, speech_end = compose(voice, text, wake_word, with_wake_word)
    path.write_bytes(pcm.to_wav())
    sample = SpokenSample(path, text, voice.name, round(wake_end, 3), round(speech_end, 3))
    sidecar.write_text(json.dumps(sample.sidecar(), indent=2))
    return sample


def sidecar_for(path: Path) -> dict | None:
    """Offsets written beside a synthesised sample, if it is one."""
    meta = Path(path).with_suffix(".json")
    try:
        return json.loads(meta.read_text()) if meta.exists() else None
    except ValueError:
        return None


def write_wav(path: Path, pcm: audio.Pcm) -> None:
    Path(path).write_bytes(pcm.to_wav())
