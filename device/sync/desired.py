"""Apply the cloud's desired configuration (a retained, versioned message, like a device shadow).

The agent validates the whole document before anything changes: every field against the same
``DeviceSettings`` rules the device uses itself, the skills against what is installed, the models
by rendering ``mycroft.conf``. Only then does it record the cloud's fields in ``managed.json`` and
ask the supervisor to restart the services those fields affect, no others. If a restarted service
does not come back, the previous configuration is put back (and those services restarted again)
and the version is rejected with the reason: a device never keeps a configuration that broke it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ovos_utils.log import LOG

from device.models import ModelNotFound
from device.paths import DevicePaths
from device.settings import (
    SettingsError,
    build_settings,
    load_settings,
    local_settings,
    managed_path,
    managed_settings,
    save_managed,
)
from device.skill_catalog import unknown_skills
from device.stack.config import render
from protocol import messages

# Which service reads which field of mycroft.conf (in stack order when restarted).
AFFECTS: dict[str, tuple[str, ...]] = {
    "wake_word": ("listener",),
    "wake_threshold": ("listener",),
    "stt_model": ("listener",),
    "silence_end": ("listener",),
    "tts_voice": ("audio",),
    "lang": ("core", "audio", "listener"),
    "enabled_skills": ("core",),
}
STACK_ORDER = ("volume", "agent", "core", "audio", "listener")


class RestartError(RuntimeError):
    """Services did not come back after a configuration change; the text says which and why."""


def affected_services(fields: set[str]) -> list[str]:
    wanted = {service for name in fields for service in AFFECTS.get(name, ())}
    return [name for name in STACK_ORDER if name in wanted]


class ConfigApplier:
    """One device's desired-config handling; ``restart(services)`` raises RestartError on failure."""

    def __init__(self, data_dir: Path, restart: Callable[[list[str]], None]) -> None:
        self.data_dir = Path(data_dir)
        self.restart = restart

    def apply(self, desired: messages.DesiredConfig,
              ignored: list[str] | None = None) -> messages.ConfigAck | None:
        """Returns the acknowledgement to send, or None for a stale version (already superseded).

        ``ignored``: fields of the document this release does not know (a newer cloud's); the rest is
        applied and the acknowledgement names them, so the cloud can say what did not take effect.
        """
        current_version, current = managed_settings(self.data_dir)
        wanted = desired.config.model_dump(exclude_none=True)
        if current_version is not None and desired.version < current_version:
            LOG.info(f"desired config v{desired.version} ignored: v{current_version} is newer")
            return None
        ignored = ignored or None
        if desired.version == current_version and wanted == current:
            return messages.ConfigAck(version=desired.version, status="applied", ignored=ignored)  # a repeat
        problem = self.check(wanted)
        if problem:
            LOG.warning(f"desired config v{desired.version} rejected: {problem}")
            return self._reject(desired.version, problem, current_version)
        before = load_settings(self.data_dir)
        after = build_settings({**local_settings(self.data_dir), **wanted})
        changed = {name for name in set(wanted) | set(current)
                   if getattr(before, name) != getattr(after, name)}
        services = affected_services(changed)
        save_managed(self.data_dir, desired.version, wanted)
        if services:
            try:
                self.restart(services)
            except RestartError as exc:
                self._roll_back(current_version, current, services)
                return self._reject(desired.version, f"{', '.join(services)} did not restart with it: {exc}",
                                    current_version)
        LOG.info(f"desired config v{desired.version} applied; restarted: {', '.join(services) or 'nothing'}"
                 + (f"; ignored (unknown here): {', '.join(ignored)}" if ignored else ""))
        return messages.ConfigAck(version=desired.version, status="applied", ignored=ignored)

    def check(self, wanted: dict) -> str | None:
        """Why this configuration cannot be used on this device, or None when it can."""
        unknown = unknown_skills(wanted.get("enabled_skills") or [])
        if unknown:
            return f"skills not installed on this device: {', '.join(unknown)}"
        try:
            candidate = build_settings({**local_settings(self.data_dir), **wanted}, "desired config")
            render(candidate, DevicePaths.at(self.data_dir))
        except (SettingsError, ModelNotFound) as exc:
            return str(exc)
        return None

    def _roll_back(self, version: int | None, config: dict, services: list[str]) -> None:
        if version is None:
            managed_path(self.data_dir).unlink(missing_ok=True)
        else:
            save_managed(self.data_dir, version, config)
        try:
            self.restart(services)
        except RestartError as exc:  # the supervisor keeps retrying crashed services on its own
            LOG.error(f"restoring the previous configuration did not restart {services}: {exc}")

    @staticmethod
    def _reject(version: int, reason: str, kept: int | None) -> messages.ConfigAck:
        keeping = f"; keeping v{kept}" if kept is not None else "; keeping the device's own settings"
        return messages.ConfigAck(version=version, status="rejected",
                                  reason=(reason + keeping)[: messages.MAX_TEXT])
