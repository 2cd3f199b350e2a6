"""openWakeWord scoring with explicit, bundled model paths.

Wraps openwakeword 0.5.1 for two callers: the OVOS wake word plugin (streaming, inside the
listener) and the setup page's wake word test (a recorded clip, scored offline). openwakeword's own
``Model.reset()`` clears only the prediction buffer; the audio feature buffers keep the wake phrase
and fire it again ~170 ms later (docs/design.md). ``reset()`` here flushes those too.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np

from device import models

FRAME_SAMPLES = 1280  # openwakeword scores 80 ms frames of 16 kHz audio


class WakeWordDetector:
    """Scores 16 kHz mono int16 audio for one wake word."""

    def __init__(self, name: str = models.DEFAULT_WAKE_WORD, model_path: str | Path | None = None,
                 threshold: float = 0.5) -> None:
        from openwakeword.model import Model

        features = models.wake_word_feature_models()
        path = Path(model_path) if model_path else models.wake_word_model(name)
        self.name = name
        self.threshold = threshold
        self._model = Model(
            wakeword_models=[str(path)],
            inference_framework="onnx",
            melspec_model_path=str(features.melspectrogram),
            embedding_model_path=str(features.embedding),
        )
        self._label = next(iter(self._model.models))
        pre = self._model.preprocessor
        self._initial_features = pre.feature_buffer.copy()
        self._pending = np.empty(0, dtype=np.int16)
        self.last_score = 0.0

    def feed(self, pcm: bytes) -> float:
        """Add audio; return the highest score among the complete frames it finished."""
        samples = np.frombuffer(pcm, dtype=np.int16)
        if self._pending.size:
            samples = np.concatenate([self._pending, samples])
        usable = samples.size - samples.size % FRAME_SAMPLES
        self._pending = samples[usable:].copy()
        best = 0.0
        for start in range(0, usable, FRAME_SAMPLES):
            scores = self._model.predict(samples[start:start + FRAME_SAMPLES])
            best = max(best, float(scores[self._label]))
        self.last_score = best
        return best

    def score_clip(self, pcm: bytes) -> float:
        """Best score over a whole clip, from a clean state (the setup page's test)."""
        self.reset()
        # Lead-in silence lets the feature buffers settle exactly as they would in a live stream.
        best = self.feed(bytes(FRAME_SAMPLES * 2 * 6) + pcm + bytes(FRAME_SAMPLES * 2 * 4))
        peak = max(self._model.prediction_buffer[self._label], default=0.0)
        self.reset()
        return max(best, float(peak))

    def reset(self) -> None:
        """Forget everything heard so far, audio features included."""
        self._model.reset()
        pre = self._model.preprocessor
        pre.raw_data_buffer = deque(maxlen=pre.raw_data_buffer.maxlen)
        pre.melspectrogram_buffer = np.ones((76, 32))
        pre.accumulated_samples = 0
        pre.raw_data_remainder = np.empty(0)
        pre.feature_buffer = self._initial_features.copy()
        self._pending = np.empty(0, dtype=np.int16)
        self.last_score = 0.0
