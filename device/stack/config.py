"""Render the device's ``mycroft.conf`` from the templates in ``firmware-config/``.

OVOS merges several config files (its packaged defaults, ``/etc/mycroft``, ``~/.mycroft``, XDG
folders). ``service_env`` points every one of those locations into the device's data folder, so
the rendered file and OVOS's own defaults are the only configuration a service ever sees: a
developer's home config cannot leak into a device, and two devices on one laptop do not collide.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import jinja2

from device import models
from device.files import write_atomic
from device.offline import force_offline
from device.paths import DevicePaths
from device.settings import DeviceSettings
from device.skill_catalog import disabled_skills
from device.vocabulary import whisper_prompt

REPO_ROOT = Path(__file__).resolve().parents[2]


def firmware_config_dir() -> Path:
    """``firmware-config/`` of this checkout, or wherever provisioning installed it."""
    return Path(os.environ.get("VOXFLEET_FIRMWARE_CONFIG") or REPO_ROOT / "firmware-config")


def _listener_sound(name: str) -> str:
    # ovos-audio 1.2.0 lacks snd/start_listening.wav; the listener ships its own (docs/design.md).
    import ovos_dinkum_listener

    return str(Path(ovos_dinkum_listener.__file__).parent / "res" / "snd" / name)


def _microphone(settings: DeviceSettings, paths: DevicePaths) -> dict:
    if settings.audio_in == "spool":
        module, cfg = "voxfleet-microphone-spool", {
            "spool_dir": str(paths.spool),
            "stream": str(paths.root / "mic" / "stream"),
            "chunk_size": 2560,
        }
    elif settings.audio_in == "alsa":
        module, cfg = "ovos-microphone-plugin-alsa", {"fallback_module": "ovos-microphone-plugin-sounddevice"}
    else:
        module, cfg = "ovos-microphone-plugin-sounddevice", {}
    return {"module": module, module: cfg}


def player_command(settings: DeviceSettings, paths: DevicePaths) -> tuple[str, str]:
    """Command lines ovos-audio runs to play WAV and MP3 files (``%1`` is the file)."""
    if settings.audio_out == "alsa":
        return "aplay -q %1", "mpg123 -q %1"
    player = Path(__file__).resolve().parent / "player.py"
    headless = f"{sys.executable} -S {player} {paths.answers} %1"
    return headless, headless


def render(settings: DeviceSettings, paths: DevicePaths) -> dict:
    """The configuration as a dict; raises ModelNotFound when a chosen model is missing."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(firmware_config_dir() / "mycroft")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    play_wav, play_mp3 = player_command(settings, paths)
    text = env.get_template("mycroft.conf.j2").render(
        s=settings,
        paths=paths,
        microphone=_microphone(settings, paths),
        vad_model=str(models.silero_vad_model()),
        wake_words=list(models.WAKE_WORDS),
        stt_model=str(models.stt_model_dir(settings.stt_model)),
        stt_prompt=(whisper_prompt(settings.enabled_skills, settings.wake_word, settings.lang)
                    if settings.stt_prompt and settings.tuning == "voxfleet" else ""),
        tts=models.tts_voice(settings.tts_voice),
        cpu_threads=max(1, min(4, os.cpu_count() or 1)),
        sounds={
            "start_listening": _listener_sound("start_listening.wav"),
            "acknowledge": _listener_sound("acknowledge.mp3"),
            "error": _listener_sound("error.mp3"),
        },
        play_wav=play_wav,
        play_mp3=play_mp3,
        disabled_skills=disabled_skills(settings.enabled_skills),
    )
    return json.loads(text)


def write_config(settings: DeviceSettings, paths: DevicePaths) -> Path:
    """Render and atomically write ``mycroft.conf``; returns its path."""
    paths.create()
    conf = render(settings, paths)
    # Byte-for-byte what provisioning writes (ansible device_config/files/voxfleet-render-config).
    return write_atomic(paths.mycroft_conf, json.dumps(conf, indent=2) + "\n")


def service_env(paths: DevicePaths, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for OVOS processes: private config locations, hub libraries offline."""
    env = dict(os.environ if base is None else base)
    empty = paths.root / "xdg" / "none"
    empty.mkdir(parents=True, exist_ok=True)
    env.update({
        "HOME": str(paths.home),
        "XDG_CONFIG_HOME": str(paths.xdg_config),
        "XDG_DATA_HOME": str(paths.xdg_data),
        "XDG_CACHE_HOME": str(paths.xdg_cache),
        "XDG_STATE_HOME": str(paths.xdg_state),
        "XDG_CONFIG_DIRS": str(empty),
        "XDG_DATA_DIRS": str(empty),
        "MYCROFT_SYSTEM_CONFIG": str(empty / "system.conf"),
        "OVOS_DISTRIBUTION_CONFIG": str(empty / "distribution.conf"),
        "OVOS_CONFIG_BASE_FOLDER": "mycroft",
        "OVOS_CONFIG_FILENAME": "mycroft.conf",
        "PYTHONUNBUFFERED": "1",
        # Model caches keep working (and stay offline) with HOME moved.
        "VOXFLEET_MODEL_CACHE": env.get("VOXFLEET_MODEL_CACHE") or str(models.model_cache_dir()),
        "VOXFLEET_DATA_DIR": str(paths.root),
    })
    # The checkout must be importable by the services for our plugins and the headless player.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return force_offline(env)
