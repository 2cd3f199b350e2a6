"""The intent pipeline without the stack: installed skills and pipeline plugins on one FakeBus.

Skills register their intents on the bus exactly as they do in ovos-core, so every matcher here
sees the same registrations as on a device; ``IntentLab.match`` then walks the VoxFleet pipeline
order (stop high, padacioso high, adapt high, stop medium, padacioso medium, adapt medium,
semantic, padacioso low, adapt low). Used to calibrate the semantic stage (bench/semantic.py) and
by its tests; no listener, no audio, no processes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from importlib.metadata import entry_points

from device.voice.plugins import semantic

LOG = logging.getLogger("voxfleet.intent_lab")

SKILLS = (
    "ovos-skill-date-time.openvoiceos",
    "ovos-skill-volume.openvoiceos",
    "voxfleet-skill-timer.voxfleet",
    "voxfleet-skill-device-info.voxfleet",
)


@dataclass
class LabMatch:
    intent: str | None
    stage: str | None
    confidence: float | None
    data: dict
    ms: float


class IntentLab:
    def __init__(self, skills: tuple[str, ...] = SKILLS, semantic_config: dict | None = None,
                 use_semantic: bool = True) -> None:
        from ovos_adapt.opm import AdaptPipeline
        from ovos_core.intent_services.stop_service import StopService
        from ovos_utils.fakebus import FakeBus

        from device.voice.plugins.intents import InProcessPadaciosoPipeline

        self.bus = FakeBus()
        self.padacioso = InProcessPadaciosoPipeline(self.bus, {"conf_high": 0.95, "conf_med": 0.8,
                                                               "conf_low": 0.5, "fuzz": False})
        self.adapt = AdaptPipeline(self.bus, {})
        self.stop = StopService(self.bus, {})
        config = {"enabled": True, **(semantic_config or {})}
        self.semantic = semantic.SemanticPipeline(self.bus, config) if use_semantic else None
        self.skills = []
        found = {ep.name: ep for ep in entry_points(group="ovos.plugin.skill")}
        for skill_id in skills:
            if skill_id not in found:
                LOG.warning("skill %s is not installed", skill_id)
                continue
            cls = found[skill_id].load()
            self.skills.append(cls(bus=self.bus, skill_id=skill_id))
        if self.semantic is not None:
            self.semantic.index.wait_ready(600)

    def stages(self):
        p, a = self.padacioso, self.adapt
        yield "stop_high", self.stop.match_high
        yield "padacioso_high", p.match_high
        yield "adapt_high", a.match_high
        yield "stop_medium", self.stop.match_medium
        yield "padacioso_medium", p.match_medium
        yield "adapt_medium", a.match_medium
        if self.semantic is not None:
            yield semantic.STAGE, self.semantic.match
        yield "padacioso_low", p.match_low
        yield "adapt_low", a.match_low

    def match(self, utterance: str, lang: str = "en-US") -> LabMatch:
        from ovos_bus_client.message import Message

        message = Message("recognizer_loop:utterance", {"utterances": [utterance], "lang": lang})
        started = time.perf_counter()
        for stage, func in self.stages():
            found = func([utterance], lang, message)
            if found:
                data = dict(found.match_data or {})
                info = data.get("voxfleet_match") or {}
                confidence = info.get("confidence", data.get("confidence"))
                return LabMatch(found.match_type, stage, confidence, data,
                                (time.perf_counter() - started) * 1000)
        return LabMatch(None, None, None, {}, (time.perf_counter() - started) * 1000)

    def close(self) -> None:
        for skill in self.skills:
            try:
                skill.default_shutdown()
            except Exception:  # a skill that cannot shut down cleanly must not hide results
                LOG.exception("skill shutdown failed")
        if self.semantic is not None:
            self.semantic.shutdown()
