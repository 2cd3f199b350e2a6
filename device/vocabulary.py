"""What the device can be asked, as a prompt that biases whisper toward it.

Whisper conditions its decoding on a "previous text" prompt. Given one short example of every
intent the enabled skills answer ("What time is it? Set a timer for five minutes. Volume up."),
it prefers those words when the audio is ambiguous: "what is today's made" becomes "what is
today's date". The prompt is built from the skills' own locale files (``.intent`` and ``.voc``)
when ``mycroft.conf`` is rendered, so it follows the installed and enabled skills: a skill added
or switched off changes the prompt at the next render, which every settings change triggers.

The examples are the skills' templates, not the evaluation set's phrasings (bench/understanding):
tuning the prompt on what it is measured with would flatter it.
"""

from __future__ import annotations

import importlib.util
import re
from importlib.metadata import entry_points
from pathlib import Path

from device.skill_catalog import SKILL_GROUP

# Whisper allows 223 prompt tokens; a command window needs few, and every token costs decode time.
MAX_PROMPT_CHARS = 360
_ENTITY = re.compile(r"\{[^{}]*\}")


def skill_locale_dirs(enabled: list[str] | None = None, lang: str = "en-us") -> dict[str, Path]:
    """Locale folder of each installed (and enabled) skill, found without importing the skill."""
    found: dict[str, Path] = {}
    for ep in sorted(entry_points(group=SKILL_GROUP), key=lambda e: e.name):
        if enabled is not None and ep.name not in enabled:
            continue
        try:
            spec = importlib.util.find_spec(ep.module.split(":")[0])
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.origin:
            continue
        folder = Path(spec.origin).parent / "locale" / lang.lower()
        if folder.is_dir():
            found[ep.name] = folder
    return found


def plainest_expansion(template: str) -> str:
    """The plainest sentence a padatious/adapt template says: its shortest expansion, slots removed.

    Expanded by padacioso's own bracket expansion (what the skills' templates are written for).
    """
    from padacioso.bracket_expansion import expand_parentheses

    try:
        sentences = expand_parentheses(template)
    except Exception:  # a template padacioso itself would choke on: read it as written
        sentences = [template]
    plain = [" ".join(_ENTITY.sub(" ", s).split()) for s in sentences]
    return min((s for s in plain if s), key=lambda s: (len(s), s), default="")


def intent_examples(folder: Path, with_slots: bool = True) -> dict[str, list[str]]:
    """Plain example sentences per intent file (``.intent``), and the synonyms of each ``.voc``.

    Sentences whose template names a slot come last, or not at all with ``with_slots=False``: with the
    slot removed they read as fragments ("how far away is"), which would teach whisper nothing.
    """
    examples: dict[str, list[str]] = {}
    for path in sorted(folder.rglob("*.intent")) + sorted(folder.rglob("*.voc")):
        plain: list[str] = []
        slotted: list[str] = []
        for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            sentence = plainest_expansion(line)
            bucket = slotted if _ENTITY.search(line) else plain
            if sentence and sentence not in plain and sentence not in slotted:
                bucket.append(sentence)
        lines = plain + (slotted if with_slots else [])
        if lines:
            examples[path.name] = lines
    return examples


def _representative(lines: list[str]) -> str:
    """The shortest slot-free sentence of three words or more: what people say most plainly."""
    return min(lines, key=lambda s: (len(s.split()) < 3, len(s), s))


def whisper_prompt(enabled: list[str] | None = None, wake_word: str = "hey_jarvis",
                   lang: str = "en-us", limit: int = MAX_PROMPT_CHARS) -> str:
    """"Hey Jarvis, what time is it. Cancel the timer. ..." for the enabled skills, within ``limit``.

    Skills take turns, one intent each, so a long skill cannot crowd a short one out of the limit.
    """
    wake = " ".join(part.capitalize() for part in wake_word.replace("_v0.1", "").split("_"))
    per_skill: list[list[str]] = []
    for folder in skill_locale_dirs(enabled, lang).values():
        examples = intent_examples(folder, with_slots=False)
        sentences = [_representative(lines) for name, lines in examples.items() if name.endswith(".intent")]
        if sentences:
            per_skill.append(sentences)
    ordered = [s for turn in range(max(map(len, per_skill), default=0))
               for skill in per_skill if turn < len(skill) for s in [skill[turn]]]
    if not ordered:
        return ""
    prompt = f"{wake}, {ordered[0].rstrip('?.!')}."
    for sentence in ordered[1:]:
        piece = f" {sentence[0].upper()}{sentence[1:].rstrip('?.!')}."
        if len(prompt) + len(piece) > limit:
            break
        prompt += piece
    return prompt
