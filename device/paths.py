"""The layout of a device's data folder, so every module agrees on where things are."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_data_dir() -> Path:
    env = os.environ.get("VOXFLEET_DATA_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")) / "voxfleet"


@dataclass(frozen=True)
class DevicePaths:
    root: Path

    @classmethod
    def at(cls, data_dir: str | os.PathLike[str] | None) -> DevicePaths:
        root = Path(data_dir) if data_dir else default_data_dir()
        if " " in str(root.resolve()):
            # OVOS splits the audio player command line on spaces (ovos_utils.sound.play_audio).
            raise ValueError(f"the data folder path may not contain spaces: {root.resolve()}")
        return cls(root.resolve())

    # OVOS reads its configuration through XDG paths; each device gets private ones.
    @property
    def xdg_config(self) -> Path:
        return self.root / "xdg" / "config"

    @property
    def xdg_data(self) -> Path:
        return self.root / "xdg" / "data"

    @property
    def xdg_cache(self) -> Path:
        return self.root / "xdg" / "cache"

    @property
    def xdg_state(self) -> Path:
        return self.root / "xdg" / "state"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def mycroft_conf(self) -> Path:
        return self.xdg_config / "mycroft" / "mycroft.conf"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def spool(self) -> Path:
        """Where audio files wait to be 'heard' by the spool microphone."""
        return self.root / "mic" / "spool"

    @property
    def answers(self) -> Path:
        """Headless audio output: every played WAV is kept here."""
        return self.root / "answers"

    @property
    def run(self) -> Path:
        return self.root / "run"

    def create(self) -> DevicePaths:
        for path in (self.xdg_config / "mycroft", self.xdg_data, self.xdg_cache, self.xdg_state,
                     self.home, self.logs, self.spool, self.answers, self.run):
            path.mkdir(parents=True, exist_ok=True)
        return self
