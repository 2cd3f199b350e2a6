"""Piper, from ovos-tts-plugin-piper, without the plugin's fetch of its voice list.

ovos-tts-plugin-piper 0.2.5 downloads ``voices.json`` from Hugging Face when its ``voice_models``
module is imported, and again on every voice lookup. A device never reaches a model hub
(docs/design.md, "Models": bundled, never downloaded at run time), so each try was a DNS lookup and
an ``ERROR - Failed to download .../voices.json`` in the log, after which the plugin used the list it
ships anyway. Our voices are packages (``device.models``) registered as local models, so nothing here
needs the hub: before the plugin is imported, this module registers ``device.voice.piper_voices`` as
its ``voice_models`` (the same names, the shipped list, no download).

Import Piper from here (``from device.voice.piper import PiperVoice``), never from
``ovos_tts_plugin_piper`` first: once the plugin's own ``voice_models`` has run, the fetch has been
tried. ovos-audio loads our TTS plugin (entry point group ``opm.tts``) before the plugin's own legacy
entry point (``mycroft.plugin.tts``), so this holds there too; tests/device/voice/test_piper_offline.py
checks both.
"""

from __future__ import annotations

import sys

from device.voice import piper_voices

VOICE_MODELS = "ovos_tts_plugin_piper.voice_models"

if sys.modules.setdefault(VOICE_MODELS, piper_voices) is not piper_voices:
    from ovos_utils.log import LOG

    LOG.warning(f"{VOICE_MODELS} was imported before device.voice.piper: Piper may try the network")

from ovos_tts_plugin_piper import PiperTTSPlugin  # noqa: E402
from ovos_tts_plugin_piper.piper import PiperConfig, PiperVoice  # noqa: E402

__all__ = ["PiperConfig", "PiperTTSPlugin", "PiperVoice"]
