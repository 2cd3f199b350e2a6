"""OVOS wake word plugin (``opm.wake_word``) around openwakeword 0.5.1 with bundled models.

``ovos-ww-plugin-openwakeword`` 0.4.6 imports ``openwakeword.utils.download_models``, which 0.5.1
does not have, and would download models without explicit paths (docs/design.md), so we carry our own.
Config block, under ``hotwords.<name>``::

    {"module": "voxfleet-ww-openwakeword", "model": "hey_jarvis", "threshold": 0.5,
     "trigger_level": 1}

``model`` is a bundled wake word name or a path to an ONNX file; ``trigger_level`` is how many
consecutive 80 ms frames must score above the threshold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ovos_plugin_manager.templates.hotwords import HotWordEngine
from ovos_utils.log import LOG

from device import models
from device.voice.wakeword import WakeWordDetector


class OpenWakeWordEngine(HotWordEngine):
    def __init__(self, key_phrase: str = "hey_jarvis", config: dict[str, Any] | None = None,
                 lang: str = "en-us") -> None:
        super().__init__(key_phrase, config)
        model = str(self.config.get("model") or key_phrase.replace(" ", "_"))
        path = Path(model) if model.endswith(".onnx") else models.wake_word_model(model)
        self.threshold = float(self.config.get("threshold", 0.5))
        self.trigger_level = max(1, int(self.config.get("trigger_level", 1)))
        self.detector = WakeWordDetector(name=model, model_path=path, threshold=self.threshold)
        self._hits = 0
        self._found = False
        LOG.info(f"openWakeWord '{key_phrase}' loaded from {path} (threshold {self.threshold})")

    def update(self, chunk: bytes) -> None:
        score = self.detector.feed(chunk)
        if score >= self.threshold:
            self._hits += 1
            if self._hits >= self.trigger_level:
                self._found = True
        else:
            self._hits = 0

    def found_wake_word(self, frame_data: bytes | None = None) -> bool:
        if self._found:
            LOG.debug(f"wake word '{self.key_phrase}' score {self.detector.last_score:.3f}")
            self.reset()
            return True
        return False

    def reset(self) -> None:
        self._found = False
        self._hits = 0
        self.detector.reset()
