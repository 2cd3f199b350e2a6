"""Recording a few seconds through the device's own microphone, for the setup page's tests.

The wake word and STT tests are most honest with the device's microphone, in the room where it will
sit. A device configured with ``audio_in = spool`` (the default on laptops and in tests) has no
microphone at all: that is said plainly, and the page offers the browser's microphone instead.
ALSA is recorded with ``arecord`` (alsa-utils, on every Raspberry Pi OS image), PortAudio through
the ``sounddevice`` package the hardware extra installs; both are what the listener's own
microphone plugins use, so a device that can listen can record here.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np

from device.voice import audio
from device.web.voice_checks import RecordingError

MIN_SECONDS, MAX_SECONDS = 1, 10


class NoDeviceMicrophone(RecordingError):
    """The device is set up without a microphone (audio input ``spool``)."""


def has_microphone(audio_in: str) -> bool:
    return audio_in in ("alsa", "sounddevice")


def no_microphone_message(audio_in: str) -> str:
    return (f"This device has no microphone configured (audio input is '{audio_in}': it hears audio "
            "files and streams only). Record with this phone's or computer's microphone instead.")


def record(audio_in: str, seconds: int) -> audio.Pcm:
    """``seconds`` of 16 kHz mono audio from the configured microphone."""
    if not has_microphone(audio_in):
        raise NoDeviceMicrophone(no_microphone_message(audio_in))
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise RecordingError(f"record between {MIN_SECONDS} and {MAX_SECONDS} seconds, not {seconds}")
    if audio_in == "alsa":
        return _arecord(seconds)
    return _sounddevice(seconds)


def _arecord(seconds: int) -> audio.Pcm:
    if shutil.which("arecord") is None:
        raise RecordingError("arecord is not installed on this device (apt-get install alsa-utils)")
    args = ["arecord", "-q", "-D", "default", "-f", "S16_LE", "-r", str(audio.SAMPLE_RATE), "-c", "1",
            "-d", str(seconds), "-t", "wav", "-"]
    try:
        done = subprocess.run(args, capture_output=True, timeout=seconds + 5)
    except subprocess.TimeoutExpired as exc:
        raise RecordingError("the microphone did not deliver audio in time (is it in use?)") from exc
    if done.returncode != 0 or not done.stdout:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise RecordingError("the device's microphone could not be opened: "
                             f"{reason[-1] if reason else f'arecord exited with {done.returncode}'}")
    try:
        return audio.load_wav_bytes(_fix_streamed_header(done.stdout), "the device recording")
    except audio.AudioError as exc:  # arecord gave something that is not a usable WAV
        raise RecordingError(f"the device's microphone gave no usable audio: {exc}") from exc


def _fix_streamed_header(blob: bytes) -> bytes:
    # arecord writing to a pipe cannot seek back to fill in the sizes; set them from what arrived.
    data_at = blob.find(b"data")
    if blob[:4] != b"RIFF" or data_at < 0:
        return blob
    fixed = bytearray(blob)
    fixed[4:8] = (len(blob) - 8).to_bytes(4, "little")
    fixed[data_at + 4:data_at + 8] = (len(blob) - data_at - 8).to_bytes(4, "little")
    return bytes(fixed)


def _sounddevice(seconds: int) -> audio.Pcm:
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise RecordingError("the sounddevice package (or PortAudio) is missing: "
                             "pip install 'voxfleet[hardware]' and apt-get install libportaudio2") from exc
    try:
        frames = sounddevice.rec(seconds * audio.SAMPLE_RATE, samplerate=audio.SAMPLE_RATE, channels=1,
                                 dtype="int16", blocking=True)
    except Exception as exc:  # PortAudioError and friends: no device, device busy
        raise RecordingError(f"the device's microphone could not be opened: {exc}") from exc
    return audio.Pcm(np.asarray(frames, dtype=np.int16).reshape(-1))
