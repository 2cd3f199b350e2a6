"""Piper's voice list as the plugin ships it, with no download: what ``device.voice.piper`` puts in
place of ``ovos_tts_plugin_piper.voice_models`` (see there why). The names are the ones the plugin
uses from that module; the behaviour is the plugin's own when it is offline, except that nothing is
fetched: a voice that is neither added with ``add_local_model`` nor already in Piper's data folder
raises VoiceNotFoundError saying that voices are bundled.
"""

from __future__ import annotations

import importlib.util
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from langcodes import closest_match, tag_distance
from ovos_utils.lang import standardize_lang_tag
from ovos_utils.xdg_utils import xdg_data_home

PLUGIN = "ovos_tts_plugin_piper"
DATA_DIR = f"{xdg_data_home()}/piper_tts"

LANG2VOICES: defaultdict[str, list[str]] = defaultdict(list)
SHORTNAMES: dict[str, str] = {}
LOCALMODELS: dict[str, list[Any]] = {}


class VoiceNotFoundError(FileNotFoundError):
    pass


def _shipped_list() -> dict[str, Any]:
    spec = importlib.util.find_spec(PLUGIN)  # locates the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{PLUGIN} is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "voices.json"
    return json.loads(path.read_text(encoding="utf-8"))


VOICES = _shipped_list()
for _key, _data in VOICES.items():
    _code = _data["language"]["code"]
    LANG2VOICES[standardize_lang_tag(_code)].append(_key.replace(_code + "-", ""))
    SHORTNAMES[_key.replace(_code + "-", "")] = _key


def get_available_voices(update_voices: bool = False) -> dict[str, Any]:
    """The shipped list; ``update_voices`` is accepted for the plugin's sake and ignored."""
    return VOICES


def find_voice(name: str) -> tuple[Path, Path]:
    for key in (name, SHORTNAMES.get(name) or name):
        if key in LOCALMODELS:
            model, config = LOCALMODELS[key]
            return Path(model), Path(config)
    name = SHORTNAMES.get(name) or name
    onnx, config = Path(DATA_DIR) / f"{name}.onnx", Path(DATA_DIR) / f"{name}.onnx.json"
    if onnx.exists() and config.exists():
        return onnx, config
    raise VoiceNotFoundError(f"Piper voice {name!r} is not on this device: voices are bundled, never "
                             "downloaded (`voxfleet device models` lists them)")


def get_voice_files(name: str) -> tuple[Path, Path]:
    return find_voice(name)


def get_lang_voices(lang: str) -> list[tuple[str, int]]:
    lang = standardize_lang_tag(lang)
    found = [(SHORTNAMES.get(voice, voice), tag_distance(lang, code))
             for code, voices in LANG2VOICES.items() for voice in voices if tag_distance(lang, code) < 10]
    if not found:
        raise VoiceNotFoundError("Unsupported language")
    return sorted(found, key=lambda item: item[1])


def get_default_voice(lang: str) -> str:
    return get_lang_voices(lang)[0][0]


def get_best_lang_code(desired_lang: str) -> str:
    lang, distance = closest_match(standardize_lang_tag(desired_lang), list(LANG2VOICES))
    if distance < 10:
        return lang
    raise VoiceNotFoundError("Unsupported language")


def add_local_model(voice: str, model_path: str, model_cfg: str, lang: str) -> None:
    if str(model_path).startswith("http") or str(model_cfg).startswith("http"):
        raise VoiceNotFoundError(f"Piper voice {voice!r} is given as a URL: a device uses bundled files only")
    LOCALMODELS[voice] = [model_path, model_cfg]
    LANG2VOICES[lang].append(voice)
