"""What a person and the cloud choose for a device, validated in one place.

Three layers, later ones winning for the fields they set:

1. ``DATA_DIR/settings.json``: the device's own choices (the setup page, a person with an editor);
2. ``DATA_DIR/managed.json``: the cloud's desired configuration the agent last applied. The cloud
   wins for every field it sets; a field it leaves out stays under local control, and the setup
   page shows managed fields as "managed by the cloud" instead of fighting over them;
3. command-line options of one ``voxfleet device`` run (for development and tests).

``mycroft.conf`` is generated from the result and is never edited by hand: that keeps the OVOS
configuration reproducible and lets a bad value be refused with a clear message before any
service sees it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from device import models
from device.files import write_atomic

AudioIn = Literal["spool", "alsa", "sounddevice"]
AudioOut = Literal["wav", "alsa"]
Tuning = Literal["voxfleet", "stock"]


def _system_timezone() -> str:
    try:
        from tzlocal import get_localzone_name

        return get_localzone_name() or "UTC"
    except Exception:  # tzlocal absent or no zone configured: a container, a fresh image
        return "UTC"


class DeviceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="voxfleet", min_length=1, max_length=64)
    lang: str = "en-US"
    timezone: str = Field(default_factory=_system_timezone)
    wake_word: str = models.DEFAULT_WAKE_WORD
    wake_threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    stt_model: str = models.DEFAULT_STT_MODEL
    stt_device: Literal["cpu", "cuda"] = "cpu"
    stt_beam_size: int = Field(default=5, ge=1, le=10)
    # Condition whisper on the enabled skills' phrases (device/vocabulary.py).
    stt_prompt: bool = True
    tts_voice: str = models.DEFAULT_TTS_VOICE
    audio_in: AudioIn = "spool"
    audio_out: AudioOut = "wav"
    confirm_listening: bool = False
    # Seconds of silence that end a command. OVOS's default is 0.7 s.
    silence_end: float = Field(default=0.4, ge=0.2, le=3.0)
    # Seconds of silence after which whisper starts transcribing, before the listener is sure.
    speculate_after: float = Field(default=0.2, ge=0.05, le=2.0)
    # Silero speech probability above which a chunk counts as speech (OVOS's default is 0.2).
    vad_threshold: float = Field(default=0.3, ge=0.05, le=0.95)
    # The semantic intent stage (device/voice/plugins/semantic.py): matches what an utterance means
    # when no template did. Tuning "voxfleet" only. Thresholds: see docs/voice-loop.md.
    semantic_intents: bool = True
    semantic_min_score: float = Field(default=0.90, ge=0.5, le=1.0)
    semantic_min_margin: float = Field(default=0.005, ge=0.0, le=0.5)
    bus_host: str = "127.0.0.1"
    bus_port: int = Field(default=8181, ge=1, le=65535)
    # "stock" keeps OVOS's own listener and intent settings: the benchmark's baseline.
    tuning: Tuning = "voxfleet"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Skill ids that may run; None runs every installed skill.
    enabled_skills: list[str] | None = None
    # The local setup web (device/web): served by the supervisor beside the voice services.
    setup_web: bool = True
    setup_web_port: int = Field(default=8080, ge=1, le=65535)

    @field_validator("wake_word", "stt_model", "tts_voice")
    @classmethod
    def _bundled(cls, value: str, info) -> str:
        choices = {"wake_word": (models.WAKE_WORDS, "wake word"),
                   "stt_model": (models.STT_MODELS, "STT model"),
                   "tts_voice": (models.TTS_VOICES, "TTS voice")}
        known, what = choices[info.field_name]
        if value not in known:
            raise ValueError(f"unknown {what} '{value}'; bundled: {', '.join(known)}")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone '{value}'") from exc
        return value


class SettingsError(ValueError):
    """settings.json cannot be used; the message says which field and why."""


def settings_path(data_dir: Path) -> Path:
    return Path(data_dir) / "settings.json"


def managed_path(data_dir: Path) -> Path:
    return Path(data_dir) / "managed.json"


def _read_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{path} is not valid JSON ({exc}); fix or delete it") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"{path} must hold a JSON object")
    return data


def local_settings(data_dir: Path) -> dict:
    """The device's own choices, as stored (not validated)."""
    return _read_json(settings_path(data_dir))


def managed_settings(data_dir: Path) -> tuple[int | None, dict]:
    """The cloud's applied desired configuration: (version, fields it manages)."""
    data = _read_json(managed_path(data_dir))
    return data.get("version"), dict(data.get("config") or {})


def build_settings(stored: dict, where: Path | str = "settings") -> DeviceSettings:
    try:
        return DeviceSettings(**stored)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(f"invalid device settings ({where}): {problems}") from exc


def load_settings(data_dir: Path, **overrides: object) -> DeviceSettings:
    """The effective settings: ``settings.json``, the cloud's managed fields, then ``overrides``."""
    stored = local_settings(data_dir)
    stored.update(managed_settings(data_dir)[1])
    stored.update({k: v for k, v in overrides.items() if v is not None})
    return build_settings(stored, settings_path(data_dir))


def save_managed(data_dir: Path, version: int, config: dict) -> None:
    """Record the cloud configuration now in force (atomically: a power cut keeps old or new)."""
    write_atomic(managed_path(data_dir), json.dumps({"version": version, "config": config}, indent=2))


def save_settings(data_dir: Path, settings: DeviceSettings) -> None:
    write_atomic(settings_path(data_dir), settings.model_dump_json(indent=2))
