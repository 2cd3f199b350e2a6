"""The understanding evaluation set (issue 14): complete, frozen, and measured as it claims."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


understanding = _load("bench_understanding", BENCH / "understanding.py")
make_split = _load("bench_understanding_split", BENCH / "understanding" / "make_split.py")

SKILL_PACKAGES = {
    "ovos-skill-date-time.openvoiceos": "ovos_skill_date_time",
    "ovos-skill-volume.openvoiceos": "ovos_skill_volume",
    "voxfleet-skill-timer.voxfleet": "voxfleet_skill_timer",
    "voxfleet-skill-device-info.voxfleet": "voxfleet_skill_device_info",
}


def registered_intents() -> set[str]:
    """Every intent the installed skills register: their .intent files and their Adapt IntentBuilders."""
    intents = {"stop:global"}  # ovos-core's stop pipeline
    for skill_id, package in SKILL_PACKAGES.items():
        folder = Path(importlib.import_module(package).__file__).parent
        intents |= {f"{skill_id}:{p.name}" for p in (folder / "locale" / "en-us").rglob("*.intent")}
        source = (folder / "__init__.py").read_text(encoding="utf-8")
        intents |= {f"{skill_id}:{name}" for name in re.findall(r'IntentBuilder\(\s*"([^"]+)"', source)}
    return intents


@pytest.fixture(scope="module")
def items() -> list[dict]:
    return understanding.load_items("all")


def test_every_registered_intent_has_at_least_ten_phrasings(items):
    counts = Counter(i["intent"] for i in items if i["kind"] == "intent")
    wanted = registered_intents()
    assert len(wanted) >= 30
    short = {intent: counts.get(intent, 0) for intent in wanted if counts.get(intent, 0) < 10}
    assert not short, f"intents with fewer than 10 phrasings: {short}"
    assert set(counts) <= wanted, f"phrasings expect intents no skill registers: {set(counts) - wanted}"


def test_the_set_has_requests_that_must_not_be_understood(items):
    kinds = Counter(i["kind"] for i in items)
    assert kinds["unknown"] >= 30 and kinds["not_installed"] >= 30 and kinds["not_for_device"] >= 30
    assert len(items) >= 450
    topics = {i["topic"] for i in items if i["kind"] == "not_installed"}
    assert {"weather", "music", "lights", "shopping"} <= topics


def test_ids_are_unique_and_items_well_formed(items):
    ids = [i["id"] for i in items]
    assert len(ids) == len(set(ids))
    texts = [i["text"].lower() for i in items]
    assert len(texts) == len(set(texts)), "a phrasing appears twice"
    for item in items:
        if item["kind"] == "intent":
            assert item["intent"].startswith("stop:") or item["intent"].startswith(item["skill"] + ":")
        else:
            assert item["intent"] is None
        for slot, value in (item.get("slots") or {}).items():
            assert slot in ("duration_s", "level") and isinstance(value, int)
    timer_sets = [i for i in items if (i["intent"] or "").endswith(":timer.set.intent")]
    assert all("duration_s" in i["slots"] for i in timer_sets)


def test_phrasings_are_not_copied_from_the_skills_templates(items):
    templates = set()
    for package in SKILL_PACKAGES.values():
        folder = Path(importlib.import_module(package).__file__).parent
        for path in (folder / "locale" / "en-us").rglob("*.intent"):
            templates |= {line.strip().lower() for line in path.read_text(encoding="utf-8").splitlines()}
    copied = [i["text"] for i in items if re.sub(r"[.?!,]", "", i["text"].lower()).strip() in templates]
    # A few everyday phrasings are bound to coincide with a template; most must not.
    assert len(copied) <= 0.1 * len(items), copied


def test_the_split_is_frozen_and_stratified(items):
    frozen = (BENCH / "understanding" / "split.json").read_text(encoding="utf-8")
    assert make_split.render(items, json.loads(frozen)["seed"]) == frozen, "recompute: make_split.py"
    split = json.loads(frozen)["split"]
    assert set(split) == {i["id"] for i in items}
    for group in {make_split.group_of(i) for i in items}:
        members = [split[i["id"]] for i in items if make_split.group_of(i) == group]
        assert abs(members.count("dev") - members.count("test")) <= 1, group
    assert abs(Counter(split.values())["dev"] - Counter(split.values())["test"]) <= 0.05 * len(items)


def test_plans_come_from_the_seed_alone(items):
    plans = [understanding.plan_for(i, 14) for i in items]
    assert plans == [understanding.plan_for(i, 14) for i in items]
    assert Counter(p.voice for p in plans).keys() == set(understanding.VOICE_NAMES)
    assert Counter(p.condition for p in plans).keys() == set(understanding.CONDITION_BY_NAME)
    assert all(not p.wake_word for p, i in zip(plans, items, strict=True) if i["kind"] == "not_for_device")


def test_espeak_ng_has_every_accent():
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    listed = subprocess.run(["espeak-ng", "--voices=en"], capture_output=True, text=True, check=True).stdout
    names = {line.split()[1] for line in listed.splitlines()[1:] if line.split()}
    assert set(understanding.ESPEAK_ACCENTS) <= names


@pytest.mark.parametrize("voice", understanding.VOICE_NAMES)
def test_every_voice_loads_and_speaks(voice):
    pcm = understanding.make_voice(voice, 1.0, 150, 50).speak("What time is it?")
    samples = pcm.samples.astype(np.float64)
    assert 0.5 < pcm.seconds < 4.0
    assert np.sqrt(np.mean(samples**2)) > 300, "inaudible"


@pytest.mark.parametrize("snr", [10.0, 5.0])
def test_mix_at_snr_gives_the_asked_ratio(snr):
    rng = np.random.default_rng(1)
    t = np.arange(32000) / 16000
    clean = np.zeros(48000)
    clean[8000:40000] = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    speech = slice(8000, 40000)
    for noise in (understanding.white_noise(48000, rng), understanding.pink_noise(48000, rng)):
        mixed, scaled = understanding.mix_at_snr(clean, noise, snr, speech)
        measured = understanding.snr_db(clean[speech], (mixed - clean)[speech])
        assert measured == pytest.approx(snr, abs=0.01)


@pytest.mark.parametrize("condition", ["white-10", "pink-5", "babble-10", "reverb-pink-10"])
def test_built_clips_have_the_asked_snr(tmp_path, items, condition):
    """Measured on the WAV itself: the noisy clip against the clean clip of the same phrasing."""
    from device.voice import audio

    item = next(i for i in items if i["id"] == "timer_set-01")
    builder = understanding.ClipBuilder(tmp_path, items=items)
    base = "reverb" if condition.startswith("reverb") else "clean"
    clean_clip = builder.clip(item, voice="espeak:en-gb", condition=base)
    noisy_clip = builder.clip(item, voice="espeak:en-gb", condition=condition)
    clean = audio.load_wav(clean_clip["path"]).samples.astype(np.float64)
    noisy = audio.load_wav(noisy_clip["path"]).samples.astype(np.float64)
    assert clean.size == noisy.size
    speech = slice(int(0.5 * 16000), int(noisy_clip["speech_end"] * 16000))
    gain = np.dot(noisy[speech], clean[speech]) / np.dot(
        clean[speech], clean[speech]
    )  # undo any peak scaling
    measured = understanding.snr_db(gain * clean[speech], noisy[speech] - gain * clean[speech])
    asked = understanding.CONDITION_BY_NAME[condition].snr_db
    assert measured == pytest.approx(asked, abs=0.5)
    assert noisy_clip["snr_measured_db"] == pytest.approx(asked, abs=0.05)
    assert noisy_clip["wake_end"] < noisy_clip["speech_end"] <= len(noisy) / 16000


@pytest.mark.voice
def test_text_mode_scores_through_the_real_stack(tmp_path):
    """Three phrasings the project's own samples also use, typed into a real stack and scored."""
    code = understanding.main(
        ["--mode", "text", "--ids", "timer_set-01,stop-01,unknown-02", "--results", str(tmp_path), "--quiet"]
    )
    assert code == 0
    result = json.loads(next(tmp_path.glob("understanding-*.json")).read_text())
    rows = {r["id"]: r for r in result["results"][0]["rows"]}
    assert rows["timer_set-01"]["got_intent"] == "voxfleet-skill-timer.voxfleet:timer.set.intent"
    assert rows["timer_set-01"]["got_slots"] == {"duration_s": 300} and rows["timer_set-01"]["ok"]
    assert rows["stop-01"]["got_intent"].startswith("stop:") and rows["stop-01"]["ok"]
    assert rows["unknown-02"]["got_intent"] is None and rows["unknown-02"]["ok"]
    assert result["results"][0]["summary"]["overall"]["accuracy"] == 1.0
