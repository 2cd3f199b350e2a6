"""The setup web's voice pages: wake word, voice and speech recognition, each with a test.

Choices are saved through the app's one settings path (``save_fields``), which validates them,
refuses fields the cloud manages and restarts only the services they affect. The tests run on the
device itself, with the listener's own models (voice_checks.py), on a recording made in the
browser, uploaded as a WAV file, or taken from the device's microphone (voice_mic.py).
"""

from __future__ import annotations

from flask import Blueprint, Response, flash, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from device import models
from device.settings import DeviceSettings, SettingsError, load_settings, managed_settings
from device.voice import audio
from device.web import voice_checks, voice_mic
from device.web.context import device_paths
from device.web.saving import save_fields
from device.web.voice_checks import RecordingError

bp = Blueprint("voice", __name__)

SECONDS_CHOICES = (3, 5, 8, 10)


# --- what the pages share ------------------------------------------------------------------------------


def _save(**fields: object) -> str | None:
    return save_fields(device_paths(), **fields)


def _current() -> tuple[DeviceSettings, set[str]]:
    root = device_paths().root
    return load_settings(root), set(managed_settings(root)[1])


def _page(template: str, status: int = 200, **extra: object) -> tuple[str, int]:
    settings, managed = _current()
    return render_template(
        template, settings=settings, managed=managed, models=models,
        device_mic=voice_mic.has_microphone(settings.audio_in),
        no_mic_message=voice_mic.no_microphone_message(settings.audio_in),
        seconds_choices=SECONDS_CHOICES, max_seconds=voice_checks.MAX_SECONDS,
        max_megabytes=voice_checks.MAX_UPLOAD_BYTES // 1048576,
        max_preview_chars=voice_checks.MAX_PREVIEW_CHARS, **extra,
    ), status


def _saved(endpoint: str, template: str, **fields: object):
    """Save ``fields``; back to the page with a message, or the page again with the error."""
    try:
        note = _save(**fields)
    except (SettingsError, ValueError) as exc:
        return _page(template, 400, error=str(exc))
    flash(note or "Saved.")
    return redirect(url_for(endpoint))


def _recording(settings: DeviceSettings) -> audio.Pcm:
    """The audio a test request carries: an uploaded WAV, or seconds from the device microphone."""
    if request.form.get("source") == "device":
        try:
            seconds = int(request.form.get("seconds", "5"))
        except ValueError as exc:
            raise RecordingError("the recording length must be a whole number of seconds") from exc
        return voice_mic.record(settings.audio_in, seconds)
    upload = request.files.get("audio")
    if upload is None or not (upload.filename or upload.mimetype):
        raise RecordingError("no recording was sent: record one or choose a WAV file")
    blob = upload.stream.read(voice_checks.MAX_UPLOAD_BYTES + 1)
    name = f"'{upload.filename}'" if upload.filename else "the recording"
    return voice_checks.decode_recording(blob, name)


def _too_large() -> tuple[Response, int]:
    return jsonify(error=f"the recording is larger than {voice_checks.MAX_UPLOAD_BYTES // 1048576} MB; "
                         "record a shorter clip"), 413


@bp.errorhandler(RequestEntityTooLarge)
def _request_too_large(exc: RequestEntityTooLarge):
    # Raised while the form is parsed, possibly before a view runs (the CSRF check reads the form).
    return _too_large()


def _test(run) -> tuple[Response, int]:
    """Run one test and answer JSON: the result, or ``{"error": ...}`` a person can act on."""
    try:
        settings = load_settings(device_paths().root)
        return jsonify(run(settings, _recording(settings)).as_dict()), 200
    except RequestEntityTooLarge:
        return _too_large()
    except (RecordingError, audio.AudioError) as exc:  # AudioError: a recording that cannot be decoded
        return jsonify(error=str(exc)), 400
    except models.ModelNotFound as exc:
        return jsonify(error=str(exc)), 503


def _threshold(raw: str | None) -> float:
    try:
        return float(raw or "")
    except ValueError as exc:
        raise RecordingError(f"the threshold must be a number between 0 and 1, not '{raw}'") from exc


# --- wake word -------------------------------------------------------------------------------------------


@bp.get("/wake-word")
def wake_word():
    return _page("voice_wake_word.html")


@bp.post("/wake-word")
def save_wake_word():
    fields: dict[str, object] = {}
    if "wake_word" in request.form:
        fields["wake_word"] = request.form["wake_word"]
    if "threshold" in request.form:
        try:
            fields["wake_threshold"] = _threshold(request.form["threshold"])
        except RecordingError as exc:
            return _page("voice_wake_word.html", 400, error=str(exc))
    return _saved("voice.wake_word", "voice_wake_word.html", **fields)


@bp.post("/wake-word/test")
def test_wake_word():
    def run(settings: DeviceSettings, pcm: audio.Pcm):
        wake = request.form.get("wake_word") or settings.wake_word
        threshold = _threshold(request.form["threshold"]) if request.form.get("threshold") \
            else settings.wake_threshold
        return voice_checks.score_wake_word(pcm, wake, threshold)

    return _test(run)


# --- voice ---------------------------------------------------------------------------------------------


@bp.get("/voice")
def voice():
    return _page("voice_voice.html")


@bp.post("/voice")
def save_voice():
    return _saved("voice.voice", "voice_voice.html", tts_voice=request.form.get("tts_voice", ""))


@bp.post("/voice/preview")
def preview():
    settings = load_settings(device_paths().root)
    try:
        wav = voice_checks.preview(request.form.get("voice") or settings.tts_voice,
                                   request.form.get("text", ""))
    except RecordingError as exc:
        return jsonify(error=str(exc)), 400
    except models.ModelNotFound as exc:
        return jsonify(error=str(exc)), 503
    return Response(wav, mimetype="audio/wav", headers={"Cache-Control": "no-store"})


# --- speech recognition ----------------------------------------------------------------------------------


@bp.get("/speech")
def speech():
    return _page("voice_speech.html")


@bp.post("/speech")
def save_speech():
    return _saved("voice.speech", "voice_speech.html", stt_model=request.form.get("stt_model", ""))


@bp.post("/speech/test")
def test_speech():
    def run(settings: DeviceSettings, pcm: audio.Pcm):
        model = request.form.get("stt_model") or settings.stt_model
        return voice_checks.transcribe(pcm, model, beam_size=settings.stt_beam_size)

    return _test(run)
