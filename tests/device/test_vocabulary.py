"""The whisper prompt follows the enabled skills, read from their own locale files."""

from __future__ import annotations

import pytest

from device.skill_catalog import installed_skills
from device.vocabulary import (
    MAX_PROMPT_CHARS,
    intent_examples,
    plainest_expansion,
    skill_locale_dirs,
    whisper_prompt,
)

TIMER = "voxfleet-skill-timer.voxfleet"
VOLUME = "ovos-skill-volume.openvoiceos"


@pytest.mark.parametrize(("template", "plain"), [
    ("(what|which) time is it", "what time is it"),
    ("set [the] volume to {level}", "set volume to"),
    ("turn (it|the volume) (up|louder) [please]", "turn it up"),
    ("  cancel   my timer ", "cancel my timer"),
    ("louder|more", "more"),
])
def test_templates_become_plain_sentences(template, plain):
    assert plainest_expansion(template) == plain


def test_every_installed_skill_with_intents_is_found():
    folders = skill_locale_dirs()
    assert {TIMER, VOLUME} <= set(folders)
    assert set(folders) <= set(installed_skills())
    timer = intent_examples(folders[TIMER])
    assert "cancel the timer" in timer["timer.cancel.intent"]


def test_prompt_names_the_wake_word_and_every_enabled_skill():
    prompt = whisper_prompt(wake_word="hey_jarvis")
    assert prompt.startswith("Hey Jarvis, ")
    assert len(prompt) <= MAX_PROMPT_CHARS
    assert "timer" in prompt.lower()
    assert "volume" in prompt.lower()
    assert "{" not in prompt and "(" not in prompt and "[" not in prompt


def test_a_disabled_skill_leaves_the_prompt():
    with_timer = whisper_prompt(enabled=[TIMER, VOLUME])
    without = whisper_prompt(enabled=[VOLUME])
    assert "timer" in with_timer.lower()
    assert "timer" not in without.lower()
    assert "volume" in without.lower()


def test_no_enabled_skills_gives_no_prompt():
    assert whisper_prompt(enabled=[]) == ""


def test_a_short_limit_still_gives_every_skill_a_turn():
    prompt = whisper_prompt(enabled=[TIMER, VOLUME], limit=80)
    assert len(prompt) <= 80
    assert "timer" in prompt.lower() and "volume" in prompt.lower()
