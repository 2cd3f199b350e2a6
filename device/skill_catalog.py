"""Which OVOS skills are installed on this device: the ids a desired config may enable."""

from __future__ import annotations

from importlib.metadata import entry_points

# The entry point group OVOS's skill loader (ovos-plugin-manager) scans for pip-installed skills.
SKILL_GROUP = "ovos.plugin.skill"


def installed_skills() -> list[str]:
    return sorted({ep.name for ep in entry_points(group=SKILL_GROUP)})


def disabled_skills(enabled: list[str] | None) -> list[str]:
    """Installed skills left out of ``enabled`` (OVOS's ``blacklisted_skills``); none when None."""
    if enabled is None:
        return []
    return [skill for skill in installed_skills() if skill not in set(enabled)]


def unknown_skills(enabled: list[str]) -> list[str]:
    known = set(installed_skills())
    return [skill for skill in enabled if skill not in known]
