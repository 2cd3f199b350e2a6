"""What a device can do, as the cloud must assume it: its announcement, or release 0.1.0's.

Devices from 0.2.0 on announce their capabilities with every ``online`` presence (stored on the
device row by ingest). A device that announced nothing runs 0.1.0: it applies the seven desired-config
fields and runs the six commands 0.1.0 had, reads only what 0.1.0 read (``protocol.versions.LEGACY``),
and said nothing of its models, voices, wake words or skills, so those values cannot be checked.

The cloud offers and sends a device only what this says it supports: ``config_problems`` and
``command_problem`` name what a desired config or a command asks that the device cannot do, in words
for the person who asked; ``peer`` is what the downlink encodes for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from protocol import messages
from protocol.versions import LEGACY, Peer

# What release 0.1.0 could do: the fields and actions of its wire contract (git tag v0.1.0).
LEGACY_CONFIG_FIELDS = frozenset({"wake_word", "wake_threshold", "stt_model", "tts_voice", "lang",
                                  "silence_end", "enabled_skills"})
LEGACY_COMMANDS = frozenset({"end_session", "speak", "tap_start", "tap_stop", "reload", "report_now"})
LEGACY_RELEASE = "0.1.0"


@dataclass(frozen=True)
class Abilities:
    """``announced`` False: assumed from the device's release (0.1.0), not said by the device."""

    announced: bool
    release: str
    peer: Peer
    config_fields: frozenset[str]
    commands: frozenset[str]
    # Choices the device listed, per config field ("wake_word" -> its wake words); a field missing here
    # is not checked (the device did not say), so the device itself judges the value.
    choices: dict[str, frozenset[str]] = field(default_factory=dict)
    details: messages.Capabilities | None = None


LEGACY_ABILITIES = Abilities(announced=False, release=LEGACY_RELEASE, peer=LEGACY,
                             config_fields=LEGACY_CONFIG_FIELDS, commands=LEGACY_COMMANDS)


def parse(stored: dict[str, Any] | None) -> Abilities:
    """From ``devices.capabilities`` (NULL or unreadable: the 0.1.0 assumption)."""
    if not stored:
        return LEGACY_ABILITIES
    try:
        caps = messages.Capabilities.model_validate(stored)
    except ValidationError:
        return LEGACY_ABILITIES
    choices = {"wake_word": frozenset(caps.wake_words), "stt_model": frozenset(caps.stt_models),
               "tts_voice": frozenset(caps.voices), "enabled_skills": frozenset(s.id for s in caps.skills)}
    return Abilities(announced=True, release=caps.release,
                     peer=Peer(release=caps.release, reads=frozenset(caps.protocol)),
                     config_fields=frozenset(caps.config_fields), commands=frozenset(caps.commands),
                     choices=choices, details=caps)


def of(device: Any) -> Abilities:
    """A device row's abilities (anything with a ``capabilities`` attribute)."""
    return parse(getattr(device, "capabilities", None))


def config_problems(abilities: Abilities, config: dict[str, Any]) -> list[dict[str, str]]:
    """What in ``config`` the device cannot apply: ``[{"field": ..., "message": ...}]``, empty if none."""
    problems = []
    for name in sorted(config):
        if name not in abilities.config_fields:
            problems.append({"field": name, "message": f"release {abilities.release} of this device does "
                                                       f"not support {name}"})
            continue
        allowed = abilities.choices.get(name)
        if allowed is None:
            continue
        asked = config[name] if isinstance(config[name], list) else [config[name]]
        missing = [str(value) for value in asked if value not in allowed]
        if missing:
            have = ", ".join(sorted(allowed)) or "none"
            problems.append({"field": name, "message": f"not on this device: {', '.join(missing)} "
                                                       f"(it has {have})"})
    return problems


def command_problem(abilities: Abilities, action: str) -> str | None:
    if action in abilities.commands:
        return None
    return f"release {abilities.release} of this device does not run the {action} command"
