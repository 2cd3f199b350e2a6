"""Orders from the cloud to a device with its real voice: a desired configuration that changes the
wake word (only the listener restarts, and the new word works at once), and an announcement that
is spoken through the real TTS and audio services."""

from __future__ import annotations

import time

import pytest

from device.voice import samples
from protocol import messages
from protocol.topics import Channel
from tests.device.sync.test_agent_service import Cloud

pytestmark = pytest.mark.voice


def publish_desired(cloud: Cloud, version: int, **config) -> messages.ConfigAck:
    cloud.send(Channel.DESIRED_CONFIG, messages.encode(messages.DesiredConfig(
        version=version, config=messages.VoiceConfig(**config))), retain=True)
    return cloud.wait_for(Channel.CONFIG_ACK, lambda a: a.version == version, timeout=300)[-1]


def test_desired_wake_word_restarts_only_the_listener_and_works(voice_stack, piper_voice, tmp_path):
    stack = voice_stack
    cloud = Cloud(stack.device_id)
    services = stack.supervisor.services
    before = {name: svc.process.pid for name, svc in services.items()}
    try:
        ack = publish_desired(cloud, 1, wake_word="alexa")
        assert ack.status == "applied", ack.reason
        after = {name: svc.process.pid for name, svc in services.items()}
        assert after["listener"] != before["listener"]
        assert {n: p for n, p in after.items() if n != "listener"} == \
            {n: p for n, p in before.items() if n != "listener"}
        assert stack.supervisor.healthy()

        alexa = samples.synthesize(piper_voice, "What time is it?", tmp_path, wake_word="alexa")
        jarvis = samples.synthesize(piper_voice, "What time is it?", tmp_path, wake_word="hey_jarvis")
        (heard,) = stack.listen([alexa.path])
        assert heard["wake_word"] == "alexa" and heard["intent"].endswith("what.time.is.it.intent")
        assert stack.listen([jarvis.path]) == []  # the old wake word no longer wakes it
    finally:
        ack = publish_desired(cloud, 2, wake_word="hey_jarvis")  # the other tests speak "hey jarvis"
        cloud.close()
    assert ack.status == "applied"


def test_announcement_is_spoken_and_answered_once(voice_stack):
    stack = voice_stack
    cloud = Cloud(stack.device_id)
    answers = set(stack.paths.answers.glob("*.wav"))
    try:
        command_id = cloud.command("speak", text="The meeting room is booked until noon.")
        result = cloud.result(command_id, timeout=60)
        assert result.status == "ok" and result.detail == "announcement played"
        deadline = time.time() + 30
        while time.time() < deadline and not set(stack.paths.answers.glob("*.wav")) - answers:
            time.sleep(0.2)
        assert set(stack.paths.answers.glob("*.wav")) - answers, "no announcement audio was played"
        idle = cloud.command("end_session")
        assert cloud.result(idle).detail == "no session was active"
    finally:
        cloud.close()
