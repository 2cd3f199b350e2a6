"""Desired configuration: validated whole before anything changes; only affected services restart."""

from __future__ import annotations

import json

from device.settings import DeviceSettings, load_settings, managed_path, save_settings
from device.sync.desired import ConfigApplier, RestartError, affected_services
from protocol import messages


def desired(version: int, **config) -> messages.DesiredConfig:
    return messages.DesiredConfig(version=version, config=messages.VoiceConfig(**config))


class RestartLog:
    """The restart callable's contract, recorded; fails the first request when told to, as the real
    supervisor does when a service dies. The real supervisor path: tests/device/sync/test_agent_service.py."""

    def __init__(self, fail: str | None = None) -> None:
        self.requests: list[list[str]] = []
        self.fail = fail

    def __call__(self, services: list[str]) -> None:
        self.requests.append(services)
        if self.fail and len(self.requests) == 1:
            raise RestartError(self.fail)


def device(tmp_path, **local):
    save_settings(tmp_path, DeviceSettings(timezone="UTC", **local))
    return tmp_path


def test_each_field_restarts_only_the_services_that_read_it():
    assert affected_services({"wake_word"}) == ["listener"]
    assert affected_services({"tts_voice"}) == ["audio"]
    assert affected_services({"enabled_skills"}) == ["core"]
    assert affected_services({"lang", "wake_word"}) == ["core", "audio", "listener"]
    assert affected_services(set()) == []


def test_applied_fields_win_over_local_ones_and_only_changes_restart(tmp_path):
    data = device(tmp_path, wake_word="hey_jarvis", name="kitchen")
    supervisor = RestartLog()
    applier = ConfigApplier(data, supervisor)
    ack = applier.apply(desired(1, wake_word="alexa", wake_threshold=0.6))
    assert ack.status == "applied" and ack.version == 1
    assert supervisor.requests == [["listener"]]
    effective = load_settings(data)
    assert (effective.wake_word, effective.wake_threshold, effective.name) == ("alexa", 0.6, "kitchen")
    # The same version again (a retained message after a reconnect): acknowledged, nothing restarted.
    assert applier.apply(desired(1, wake_word="alexa", wake_threshold=0.6)).status == "applied"
    assert supervisor.requests == [["listener"]]
    # A version that changes nothing the services read restarts nothing.
    same = desired(2, wake_word="alexa", wake_threshold=0.6, silence_end=0.4)
    assert applier.apply(same).status == "applied"
    assert supervisor.requests == [["listener"]]
    # An older version is ignored: the cloud has superseded it.
    assert applier.apply(desired(1, wake_word="hey_mycroft")) is None
    assert load_settings(data).wake_word == "alexa"


def test_a_field_the_cloud_stops_managing_returns_to_the_local_value(tmp_path):
    data = device(tmp_path, wake_word="hey_mycroft")
    supervisor = RestartLog()
    applier = ConfigApplier(data, supervisor)
    applier.apply(desired(1, wake_word="alexa"))
    assert applier.apply(desired(2, stt_model="tiny.en")).status == "applied"
    assert load_settings(data).wake_word == "hey_mycroft"
    assert supervisor.requests == [["listener"], ["listener"]]


def test_invalid_values_are_rejected_with_the_reason_and_change_nothing(tmp_path):
    data = device(tmp_path)
    supervisor = RestartLog()
    applier = ConfigApplier(data, supervisor)
    applier.apply(desired(1, wake_word="alexa"))
    before = managed_path(data).read_text()
    ack = applier.apply(desired(2, wake_word="hey_siri"))
    assert ack.status == "rejected" and "unknown wake word 'hey_siri'" in ack.reason
    assert "keeping v1" in ack.reason
    ack = applier.apply(desired(3, stt_model="large-v3"))
    assert ack.status == "rejected" and "large-v3" in ack.reason
    ack = applier.apply(desired(4, enabled_skills=["ovos-skill-date-time.openvoiceos", "no-such-skill.x"]))
    assert ack.status == "rejected" and "no-such-skill.x" in ack.reason
    assert managed_path(data).read_text() == before
    assert supervisor.requests == [["listener"]]


def test_a_configuration_that_breaks_a_service_is_rolled_back(tmp_path):
    data = device(tmp_path)
    supervisor = RestartLog(fail="listener exited with code 1 while starting")
    applier = ConfigApplier(data, supervisor)
    ack = applier.apply(desired(1, wake_word="alexa"))
    assert ack.status == "rejected"
    assert "listener exited with code 1" in ack.reason and "device's own settings" in ack.reason
    assert not managed_path(data).exists()  # the previous (local) configuration is back
    assert load_settings(data).wake_word == "hey_jarvis"
    assert supervisor.requests == [["listener"], ["listener"]]  # and the listener restarted on it


def test_enabled_skills_become_the_disabled_list_in_mycroft_conf(tmp_path):
    from device.paths import DevicePaths
    from device.skill_catalog import installed_skills
    from device.stack.config import render

    data = device(tmp_path)
    ConfigApplier(data, RestartLog()).apply(desired(1, enabled_skills=["ovos-skill-date-time.openvoiceos"]))
    conf = render(load_settings(data), DevicePaths.at(data))
    assert "ovos-skill-date-time.openvoiceos" not in conf["skills"]["blacklisted_skills"]
    assert set(conf["skills"]["blacklisted_skills"]) == set(installed_skills()) - {
        "ovos-skill-date-time.openvoiceos"}
    assert json.loads(managed_path(data).read_text())["version"] == 1
