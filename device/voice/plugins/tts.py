"""OVOS TTS plugin (``opm.tts``): Piper that starts speaking after the first clause.

ovos-audio plays an answer only once its first chunk is synthesised, and Piper synthesises a whole
chunk at a time (~0.1 s per second of speech on a 2-core CPU). Splitting answers into sentences,
then long sentences at commas, lets the first clause play while the rest is synthesised; the
pause between clauses is where Piper would pause anyway. The voice is also run once at start-up:
the first ONNX inference is several times slower than the rest, and it should not land on the
first person to speak to the device.

Config: as ``ovos-tts-plugin-piper`` (``model``, ``model_config``, ``voice``), plus
``min_clause_words`` (default 3): a comma splits a sentence only if both sides have that many words.
"""

from __future__ import annotations

import re
import tempfile
import time

import quebra_frases
from ovos_utils.log import LOG

from device.voice.piper import PiperTTSPlugin

_CLAUSE_BREAK = re.compile(r"(?<=[,;:])\s+")


def split_clauses(text: str, min_words: int = 3) -> list[str]:
    """Sentences, and long sentences cut at commas where both parts stay speakable."""
    parts: list[str] = []
    for sentence in quebra_frases.sentence_tokenize(text) or [text]:
        pieces = [p for p in _CLAUSE_BREAK.split(sentence.strip()) if p]
        current = ""
        for piece in pieces:
            current = f"{current} {piece}".strip() if current else piece
            if len(current.split()) >= min_words:
                parts.append(current)
                current = ""
        if current:
            if parts and len(current.split()) < min_words:
                parts[-1] = f"{parts[-1]} {current}"
            else:
                parts.append(current)
    return [p for p in parts if p.strip()] or [text]


class ClausePiperTTS(PiperTTSPlugin):
    def __init__(self, config: dict | None = None) -> None:
        super().__init__(config=config)
        self.min_clause_words = int(self.config.get("min_clause_words", 3))
        started = time.monotonic()
        with tempfile.NamedTemporaryFile(suffix=".wav") as scratch:
            self.get_tts("Ready.", scratch.name)
        LOG.info(f"Piper voice warmed up in {time.monotonic() - started:.2f}s")

    def preprocess_sentence(self, sentence: str) -> list[str]:
        return split_clauses(sentence, self.min_clause_words)
