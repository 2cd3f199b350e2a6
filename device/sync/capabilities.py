"""What this device can do, as it announces it to the cloud (``presence.capabilities``).

The cloud offers a tenant only what a device supports and sends it nothing else: the desired-config
fields this release applies, the commands it runs, the models, voices and wake words whose packages are
installed, the skills installed and the speech engines present. Everything is read from what is
installed, never from a list kept by hand, so a device upgraded or given a new skill says so the next
time it connects.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from device import models
from device.settings import DeviceSettings
from device.skill_catalog import SKILL_GROUP
from device.sync import commands
from device.sync.desired import AFFECTS
from protocol import messages
from protocol.versions import READS, release

# OVOS plugin groups of each engine kind, and the engine our own plugins wrap (others by plugin name).
ENGINE_GROUPS = {"stt": "opm.stt", "tts": "opm.tts", "wake_word": "opm.wake_word"}
OUR_PLUGINS = {"voxfleet-stt-whisper": "faster-whisper", "voxfleet-tts-piper": "piper",
               "voxfleet-ww-openwakeword": "openwakeword"}


def engines() -> dict[str, list[str]]:
    return {kind: sorted({OUR_PLUGINS.get(ep.name, ep.name) for ep in entry_points(group=group)})
            for kind, group in ENGINE_GROUPS.items()}


def skills() -> list[messages.SkillInfo]:
    found = {}
    for ep in entry_points(group=SKILL_GROUP):
        found[ep.name] = messages.SkillInfo(id=ep.name, version=ep.dist.version if ep.dist else None)
    return [found[name] for name in sorted(found)]


def features(settings: DeviceSettings) -> list[str]:
    """Abilities beyond the commands and fields: what the portal may offer for this device."""
    found = ["bus_tap"]
    if settings.setup_web:
        found.append("setup_web")
    if settings.stt_device == "cuda":
        found.append("cuda")
    return sorted(found)


def announce(settings: DeviceSettings) -> messages.Capabilities:
    installed = models.installed()
    return messages.Capabilities(
        release=release(),
        protocol=sorted(READS),
        config_fields=sorted(name for name in messages.VoiceConfig.model_fields if name in AFFECTS),
        commands=sorted(commands.HANDLERS),
        engines=engines(),
        stt_models=installed["stt"],
        voices=installed["tts"],
        wake_words=installed["wake_word"],
        skills=skills(),
        features=features(settings),
    )
