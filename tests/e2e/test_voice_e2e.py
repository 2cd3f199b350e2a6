"""End to end through `voxfleet device listen`: real speech, the real OVOS stack, bundled models.

Commands are spoken by the bundled Piper voice and by espeak-ng (a voice nobody tuned for), played
through the listener at real-time pace, and every answer is checked as a person would: was I heard
right, did the right skill take it, and did it say the right thing.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from device.voice import audio, samples
from device.voice.samples import SampleCommand

pytestmark = pytest.mark.voice

PIPER_SET = samples.commands_for("piper")
ESPEAK_SET = samples.commands_for("espeak")


def words(text: str) -> list[str]:
    text = text.lower().replace("five", "5").replace("ten", "10")
    return re.findall(r"[a-z0-9']+", text)


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = words(reference), words(hypothesis)
    dist = np.arange(len(hyp) + 1)
    for i, r in enumerate(ref, 1):
        prev, dist[0] = dist[0], i
        for j, h in enumerate(hyp, 1):
            prev, dist[j] = dist[j], min(dist[j] + 1, dist[j - 1] + 1, prev + (r != h))
    return float(dist[len(hyp)]) / max(1, len(ref))


def expected_answer(command: SampleCommand, heard_at: float, tz: str) -> list[str]:
    """Words the answer must contain; for clock questions, derived from the clock itself."""
    from ovos_date_parser import nice_time

    now = datetime.fromtimestamp(heard_at, ZoneInfo(tz))
    if command.intent and command.intent.endswith("what.time.is.it.intent"):
        hours = {nice_time(now - timedelta(seconds=s), lang="en-us", speech=True).split()[0]
                 for s in (0, 60, 120)}
        return [" | ".join(sorted(hours))]
    if command.intent and command.intent.endswith("what.weekday.is.it.intent"):
        return [now.strftime("%A")]
    if command.intent and command.intent.endswith(("current_date.intent", "what.day.is.it.intent")):
        return [now.strftime("%B")]
    if command.intent and command.intent.endswith("device.cloud.intent"):
        return ["paired with 127.0.0.1"]  # the test device is paired with this machine's broker
    return list(command.answer_contains)


def contains(answer: str, expected: str) -> bool:
    return any(option.strip().lower() in answer.lower() for option in expected.split("|"))


def run_set(stack, voice, commands, out_dir):
    files = [samples.synthesize(voice, c.text, out_dir) for c in commands]
    started = time.time()
    reports = stack.listen([f.path for f in files])
    by_file = {}
    for report in reports:
        by_file.setdefault(report["file"], []).append(report)
    return [(c, by_file.get(str(f.path), [])) for c, f in zip(commands, files, strict=True)], started


def check(command: SampleCommand, reports: list[dict], tz: str, max_wer: float) -> None:
    assert len(reports) == 1, f"{command.text!r}: expected one voice session, got {reports}"
    report = reports[0]
    assert report["wake_word"] == "hey_jarvis"
    assert word_error_rate(command.text, report["transcript"] or "") <= max_wer, report["transcript"]
    if command.intent and command.intent.startswith("stop:"):
        # "stop:global" with nothing to stop, "stop:skill" when a skill was recently active
        assert (report["intent"] or "").startswith("stop:"), report
    else:
        assert report["intent"] == command.intent, f"{command.text!r} heard as {report['transcript']!r}"
    if command.intent and command.intent.startswith("stop:"):
        assert report["answer"] is None  # stopping says nothing
    else:
        assert report["answer"], f"{command.text!r}: no spoken answer"
        assert report["answer_audio"] and report["answer_audio"].endswith(".wav")
        heard_at = report["started_at"]
        for expected in expected_answer(command, heard_at, tz):
            assert contains(report["answer"], expected), f"{report['answer']!r} lacks {expected!r}"
        spoken = audio.load_wav(report["answer_audio"])
        assert spoken.seconds > 0.3  # real synthesized speech, not an empty file
    timings = report["timings_ms"]
    for key in ("end_of_speech_to_transcript", "transcript_to_intent"):
        assert timings[key] is not None and timings[key] >= 0, timings
    # openWakeWord may fire a few tens of ms before the last (quiet) samples of the phrase.
    assert timings["wake_detect"] is not None and -300 < timings["wake_detect"] < 2000, timings
    if report["answer"]:
        assert timings["end_of_speech_to_first_audio"] >= timings["end_of_speech_to_transcript"] > 0


@pytest.fixture(scope="module")
def piper_results(voice_stack, piper_voice, samples_dir):
    results, _ = run_set(voice_stack, piper_voice, PIPER_SET, samples_dir / "piper")
    return results


@pytest.fixture(scope="module")
def espeak_results(voice_stack, espeak_voice, samples_dir, piper_results):
    results, _ = run_set(voice_stack, espeak_voice, ESPEAK_SET, samples_dir / "espeak")
    return results


def test_piper_set_covers_every_skill():
    skills = {c.intent.split(":")[0] for c in PIPER_SET if c.intent and ":" in c.intent}
    assert {samples.SKILL_DATE_TIME, samples.SKILL_TIMER, samples.SKILL_VOLUME, samples.SKILL_INFO,
            "stop"} <= skills
    assert any(c.intent is None for c in PIPER_SET)  # the polite "I don't understand"
    assert len(PIPER_SET) >= 15 and len(ESPEAK_SET) >= 5


@pytest.mark.parametrize("index", range(len(PIPER_SET)), ids=[c.text for c in PIPER_SET])
def test_piper_command(piper_results, voice_stack, index):
    command, reports = piper_results[index]
    check(command, reports, voice_stack.settings.timezone, max_wer=0.34)


@pytest.mark.parametrize("index", range(len(ESPEAK_SET)), ids=[c.text for c in ESPEAK_SET])
def test_espeak_command(espeak_results, voice_stack, index):
    command, reports = espeak_results[index]
    check(command, reports, voice_stack.settings.timezone, max_wer=0.5)


def test_not_understood_gets_a_polite_answer(piper_results):
    command, reports = next(r for r in piper_results if r[0].intent is None)
    assert reports[0]["end_state"] == "not_understood"
    assert re.search(r"understand|sure|help|rephrase|catch|know", reports[0]["answer"], re.I)


def test_negatives_start_no_session(voice_stack, piper_voice, tmp_path):
    """Speech without the wake word, silence and noise must not wake the device."""
    speech, _, _ = samples.compose(piper_voice, "What time is it? Set a timer for five minutes.",
                                   with_wake_word=False)
    rng = np.random.default_rng(7)
    noise = audio.Pcm((rng.normal(0, 3000, 16000 * 4)).clip(-32768, 32767).astype(np.int16))
    silence = audio.Pcm(np.zeros(16000 * 3, np.int16))
    files = []
    for name, pcm in (("speech", speech), ("noise", noise), ("silence", silence)):
        path = tmp_path / f"{name}.wav"
        samples.write_wav(path, pcm)
        files.append(path)
    assert voice_stack.listen(files) == []


def test_answers_are_kept_and_stack_is_healthy(voice_stack, piper_results):
    assert voice_stack.supervisor.healthy(), voice_stack.supervisor.health()
    kept = list(voice_stack.paths.answers.glob("*.wav"))
    assert len(kept) >= len([c for c in PIPER_SET if c.intent != "stop:global"])


def test_spoken_sessions_reach_the_broker(voice_stack, piper_voice, samples_dir, piper_results):
    """The agent turns each exchange into events and delivers them over MQTT, usage included."""
    from protocol import messages
    from protocol.topics import Channel, topic
    from tests.device.sync.test_sync import Subscriber

    sub = Subscriber(topic(voice_stack.device_id, Channel.EVENTS))
    try:
        commands = [c for c in PIPER_SET if c.text in ("What time is it?", "What is your name?")]
        files = [samples.synthesize(piper_voice, c.text, samples_dir / "piper").path for c in commands]
        reports = voice_stack.listen(files)
        deadline = time.time() + 30
        seen: list = []
        while time.time() < deadline:
            seen = [e for _, payload, _ in sub.messages for e in messages.decode(payload).events]
            ended = {e.session_id for e in seen if e.type == "usage"}
            if {r["session_id"] for r in reports} <= {s for s in ended}:
                break
            time.sleep(0.2)
    finally:
        sub.close()
    assert len(reports) == 2
    by_type: dict = {}
    for e in seen:
        by_type.setdefault(e.type, []).append(e)
    transcripts = {e.transcript for e in by_type["utterance"]}
    assert {r["transcript"] for r in reports} <= transcripts
    intents = {f"{e.skill_id}:{e.intent}" for e in by_type["intent.matched"]}
    assert {r["intent"] for r in reports} <= intents
    usage = [e for e in by_type["usage"] if e.session_id in {r["session_id"] for r in reports}]
    assert len(usage) == 2 and all(u.wake_words == 1 and u.intents_handled == 1 and u.stt_seconds > 0.5
                                   and u.tts_characters > 5 for u in usage)
    seqs = [e.seq for e in seen]
    assert seqs == sorted(seqs) and len(set(e.event_id for e in seen)) == len(seen)
    from device.sync.store import Store

    store = Store(voice_stack.paths.root / "store.db")
    assert store.depth() == 0  # everything acknowledged by the broker left the outbox
    assert len(store.recent_sessions(limit=500)) >= len(PIPER_SET)
