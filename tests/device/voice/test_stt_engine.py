import numpy as np
import pytest

from device.voice.stt import WhisperEngine, first_of_repeats, looks_repeated


@pytest.mark.parametrize("text", [
    "what is the volume what is the volume",
    "set a timer set a timer set a timer",
    "What is the volume? What is the volume?",
])
def test_repetition_is_spotted(text):
    assert looks_repeated(text, seconds=3.0)


@pytest.mark.parametrize("text", [
    "what is the volume",
    "set a timer for five minutes",
    "what time is it",
    "turn the volume down down",  # one word said twice is not a repeated phrase
    "",
])
def test_normal_commands_are_not_repeats(text):
    assert not looks_repeated(text, seconds=3.0)


@pytest.mark.parametrize(("text", "said"), [
    ("Turn the volume to high. Turn the volume to high.", "Turn the volume to high."),
    ("What month is it? What month is it? What month", "What month is it?"),
    # a pair of sentences repeated is not ours to judge (looks_repeated does)
    ("Cut it out. Stop. Cut it out. Stop.", "Cut it out. Stop. Cut it out. Stop."),
    ("Set a timer. Cancel it.", "Set a timer. Cancel it."),
    ("What time is it?", "What time is it?"),
    ("", ""),
])
def test_an_echoed_sentence_is_kept_once(text, said):
    assert first_of_repeats(text) == said


def test_too_many_words_for_the_duration():
    text = "one two three four five six seven eight nine ten eleven twelve"
    assert looks_repeated(text, seconds=1.0)
    assert not looks_repeated(text, seconds=5.0)


@pytest.fixture(scope="module")
def engine():
    return WhisperEngine()  # the bundled tiny.en


def test_transcribes_spoken_command(engine):
    from device.voice.samples import PiperVoice

    pcm = PiperVoice().speak("set a timer for five minutes").padded(0.3, 0.3)
    text = engine.transcribe(pcm.to_bytes()).lower()
    assert "timer" in text
    assert "minutes" in text
    # float input in -1..1 gives the same words
    assert engine.transcribe(pcm.samples.astype(np.float32) / 32768.0).lower() == text


def test_empty_audio_gives_empty_text(engine):
    assert engine.transcribe(b"") == ""
    assert engine.transcribe(np.zeros(0, np.float32)) == ""


def test_cuda_asked_on_a_machine_without_it_falls_back_to_the_cpu(caplog):
    """A Jetson set to `stt_device: cuda` whose CUDA libraries are gone (or a CTranslate2 built without
    CUDA) still understands commands, on the CPU, and says why in the log."""
    import ctranslate2

    if ctranslate2.get_cuda_device_count() > 0:
        pytest.skip("this machine has a CUDA device: the fallback cannot be provoked here")
    from device.voice.samples import PiperVoice

    with caplog.at_level("WARNING", logger="device.voice.stt"):
        engine = WhisperEngine(device="cuda", compute_type="float16")
    assert (engine.device, engine.compute_type) == ("cpu", "int8")
    assert "using the CPU" in caplog.text
    pcm = PiperVoice().speak("what time is it").padded(0.3, 0.3)
    assert "time" in engine.transcribe(pcm.to_bytes()).lower()


def test_the_skills_prompt_conditions_the_decoder_and_keeps_commands_intact():
    """The prompt goes in front of whisper's start-of-transcript as previous text; a plain command is
    still heard word for word with it (the bench measures whether it helps on unseen speech)."""
    from device.vocabulary import whisper_prompt
    from device.voice.samples import PiperVoice

    prompted = WhisperEngine(prompt=whisper_prompt())
    tokenizer, prefix, _ = prompted._prompt("en")
    assert prefix[0] == tokenizer.sot_prev
    assert tokenizer.decode(prefix[1:prefix.index(tokenizer.sot)]).strip() == prompted.prompt
    pcm = PiperVoice().speak("set a timer for five minutes").padded(0.3, 0.3)
    text = prompted.transcribe(pcm.to_bytes()).lower()
    assert "timer" in text and ("five" in text or "5" in text) and "minutes" in text
    assert "jarvis" not in text  # the prompt is context, never part of the transcript
