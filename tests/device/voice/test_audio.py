import io
import wave

import numpy as np
import pytest

from device.voice import audio
from device.voice.audio import AudioError, Pcm, load_wav, load_wav_bytes, speech_segments


def make_wav(samples, rate, width=2, channels=1):
    """A WAV whose frames are ``samples`` (ints of the given width; shape (n,) or (n, channels))."""
    samples = np.asarray(samples)
    if width == 2:
        frames = samples.astype("<i2").tobytes()
    elif width == 3:
        ints = samples.astype(np.int32).reshape(-1) & 0xFFFFFF
        frames = np.stack([ints & 0xFF, (ints >> 8) & 0xFF, (ints >> 16) & 0xFF], axis=1)
        frames = frames.astype(np.uint8).tobytes()
    else:
        raise ValueError(width)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(frames)
    return buf.getvalue()


def sine(freq, rate, seconds, amplitude):
    t = np.arange(int(round(rate * seconds))) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def peak_frequency(pcm):
    spectrum = np.abs(np.fft.rfft(pcm.samples.astype(np.float64)))
    return np.argmax(spectrum) * audio.SAMPLE_RATE / pcm.samples.size


def test_16k_mono_16bit_passes_through_unchanged():
    rng = np.random.default_rng(1)
    original = rng.integers(-32768, 32768, size=4000).astype(np.int16)
    original[:4] = [-32768, 32767, 0, -1]
    pcm = load_wav_bytes(make_wav(original, 16000))
    assert pcm.samples.dtype == np.int16
    np.testing.assert_array_equal(pcm.samples, original)


def test_44k1_stereo_is_converted_to_16k_mono():
    left = sine(1000, 44100, 0.3, 0.5 * 32767)
    right = sine(1000, 44100, 0.3, 0.5 * 32767)
    stereo = np.round(np.stack([left, right], axis=1))
    pcm = load_wav_bytes(make_wav(stereo, 44100, channels=2), "stereo.wav")
    assert abs(pcm.samples.size - 0.3 * 16000) <= 1
    assert pcm.seconds == pytest.approx(0.3, abs=1 / 16000)
    assert peak_frequency(pcm) == pytest.approx(1000, abs=10)
    # Both channels carry the same sine: the mix keeps its level.
    assert np.abs(pcm.samples[200:-200]).max() == pytest.approx(0.5 * 32767, rel=0.05)


def test_48k_24bit_mono_is_converted_to_16k():
    full_scale = (1 << 23) - 1
    data = np.round(sine(440, 48000, 0.25, 0.5 * full_scale))
    pcm = load_wav_bytes(make_wav(data, 48000, width=3), "24bit.wav")
    assert abs(pcm.samples.size - 0.25 * 16000) <= 1
    assert peak_frequency(pcm) == pytest.approx(440, abs=10)
    # Negative 24-bit samples decode as negative: the sine stays symmetric at half scale.
    body = pcm.samples[200:-200]
    assert body.max() == pytest.approx(0.5 * 32767, rel=0.05)
    assert body.min() == pytest.approx(-0.5 * 32767, rel=0.05)


def test_load_wav_reads_a_file(tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(make_wav(np.arange(-800, 800), 16000))
    assert load_wav(path).samples.size == 1600
    assert load_wav(str(path)).samples.size == 1600


def test_empty_bytes():
    with pytest.raises(AudioError, match="empty"):
        load_wav_bytes(b"", "upload.wav")


@pytest.mark.parametrize(
    ("blob", "kind"),
    [
        (b"\0" * 4096, "not a WAV"),
        (b"fLaC" + b"\0" * 100, "FLAC"),
        (b"OggS" + b"\0" * 100, "Ogg"),
        (b"ID3\x04" + b"\0" * 100, "MP3"),
        (b"\xff\xfb\x90\x64" + b"\0" * 100, "MP3"),
    ],
)
def test_other_formats_are_refused_by_name(blob, kind):
    with pytest.raises(AudioError, match="unsupported") as info:
        load_wav_bytes(blob, "clip")
    assert kind in str(info.value)
    assert str(info.value).startswith("clip")


def test_truncated_wav():
    blob = make_wav(np.zeros(1000), 16000)
    with pytest.raises(AudioError, match="truncated"):
        load_wav_bytes(blob[: len(blob) - 500])


def test_header_promising_more_frames_than_present():
    blob = bytearray(make_wav(np.ones(100), 16000))
    blob[40:44] = (100 * 2 * 10).to_bytes(4, "little")  # data chunk size: ten times what is there
    with pytest.raises(AudioError, match="truncated"):
        load_wav_bytes(bytes(blob))


def test_wav_without_samples():
    with pytest.raises(AudioError, match="no audio samples"):
        load_wav_bytes(make_wav(np.zeros(0), 16000))


def test_folder_is_refused(tmp_path):
    with pytest.raises(AudioError, match="folder"):
        load_wav(tmp_path)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="no such file") as info:
        load_wav(tmp_path / "nope.wav")
    assert "nope.wav" in str(info.value)


def test_pcm_to_wav_round_trips():
    pcm = Pcm(np.array([0, 1, -1, 32767, -32768, 1234], dtype=np.int16))
    np.testing.assert_array_equal(load_wav_bytes(pcm.to_wav()).samples, pcm.samples)


def test_silence_has_no_speech():
    assert speech_segments(Pcm(np.zeros(2 * 16000, np.int16))) == []


def test_speech_is_found_where_it_is():
    from device.voice.samples import PiperVoice

    spoken = PiperVoice().speak("hello there")
    pcm = spoken.padded(before=1.0, after=1.0)
    segments = speech_segments(pcm)
    assert len(segments) == 1
    (segment,) = segments
    assert 0.8 <= segment.start < 1.0 + spoken.seconds
    assert segment.start < segment.end <= 1.0 + spoken.seconds + 0.3
    assert segment.end < pcm.seconds
