"""Piper makes no network attempt: ovos-tts-plugin-piper would fetch its voice list from Hugging Face
at import and on every voice lookup, logging ``ERROR - Failed to download .../voices.json`` on a device
(device/voice/piper.py). Each check runs in a fresh interpreter, as a service starts, with an audit
hook that records every name lookup and connection the process tries."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from device import models

WATCH = textwrap.dedent("""
    import sys
    attempts = []

    def watch(event, args):
        if event in ("socket.getaddrinfo", "socket.connect", "socket.gethostbyname", "urllib.Request"):
            attempts.append(f"{event} {args[:2]!r}")

    sys.addaudithook(watch)
""")
REPORT = "\nimport json\nprint(json.dumps({'attempts': attempts}))\n"


def _run(body: str) -> tuple[dict, str]:
    done = subprocess.run([sys.executable, "-c", WATCH + textwrap.dedent(body) + REPORT],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_ovos_audio_loading_our_piper_plugin_tries_no_network(tmp_path):
    """As ovos-audio does it: OPM imports every TTS entry point (ours, then the plugin's own legacy
    one), then the chosen plugin is made from mycroft.conf's settings and speaks."""
    voice = models.tts_voice()
    report, log = _run(f"""
        from ovos_plugin_manager.tts import load_tts_plugin
        from ovos_plugin_manager.utils import find_plugins, PluginTypes
        assert "ovos-tts-plugin-piper" in find_plugins(PluginTypes.TTS)
        plugin = load_tts_plugin("voxfleet-tts-piper")
        tts = plugin(config={{"voice": "{models.DEFAULT_TTS_VOICE}", "model": "{voice.model}",
                             "model_config": "{voice.config}", "lang": "en-US"}})
        tts.get_tts("The timer is set.", "{tmp_path / 'said.wav'}")
    """)
    assert report["attempts"] == []
    assert "Failed to download" not in log and "ERROR" not in log, log
    assert (tmp_path / "said.wav").stat().st_size > 10_000


def test_the_sample_voice_and_the_setup_pages_preview_try_no_network():
    report, log = _run("""
        from device.voice.samples import PiperVoice
        assert PiperVoice().speak("What time is it?").seconds > 0.5
        from device.web import voice_checks
        assert voice_checks.preview("en_US-joe-medium", "Hello there.")[:4] == b"RIFF"
    """)
    assert report["attempts"] == []
    assert "Failed to download" not in log and "ERROR" not in log, log


def test_a_voice_that_is_not_bundled_is_a_clear_error_not_a_download():
    report, log = _run("""
        from device.voice.piper import PiperTTSPlugin
        from device.voice import piper_voices
        try:
            piper_voices.get_voice_files("en_GB-alan-low")
        except piper_voices.VoiceNotFoundError as exc:
            print(exc, file=sys.stderr)
        else:
            raise SystemExit("found a voice that is not on this machine")
    """)
    assert report["attempts"] == []
    assert "'en_GB-alan-low' is not on this device: voices are bundled, never downloaded" in log


def test_the_shipped_voice_list_is_the_plugins_own():
    """The stand-in reads the list ovos-tts-plugin-piper ships, so languages and short names match."""
    from device.voice import piper_voices

    assert piper_voices.SHORTNAMES["joe-medium"] == "en_US-joe-medium"
    assert "joe-medium" in piper_voices.LANG2VOICES["en-US"]
    assert piper_voices.get_default_voice("en-US") in piper_voices.VOICES
    with pytest.raises(piper_voices.VoiceNotFoundError, match="given as a URL"):
        piper_voices.add_local_model("x", "https://example.invalid/x.onnx", "x.onnx.json", "en-US")
