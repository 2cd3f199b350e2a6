"""Headless audio output: ovos-audio's player command when a device has no sound card.

Keeps a copy of every WAV it is asked to play in the answers folder, at the device's volume
(``run/volume.json``, see device/stack/volume.py), records it in
``answers/played.jsonl``, and takes as long as the sound lasts, so that
``recognizer_loop:audio_output_end`` comes when it would on a speaker. Kept to the standard
library: it starts for every sentence spoken.

Usage: ``python -S .../device/player.py ANSWERS_DIR FILE``. Run as a plain script without
``site`` (no package imports, no .pth processing): it starts in ~20 ms instead of ~80 ms, and that
start-up sits between the answer being ready and the first sound.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
import warnings
import wave

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop  # stdlib through 3.12; C speed matters, this runs before every sentence
    except ImportError:  # pragma: no cover - Python 3.13+
        audioop = None


def _volume(data_dir: str) -> float:
    try:
        with open(os.path.join(data_dir, "run", "volume.json"), encoding="utf-8") as handle:
            state = json.load(handle)
        return 0.0 if state.get("muted") else min(1.0, max(0.0, float(state["percent"])))
    except (OSError, ValueError, KeyError, TypeError):
        return 1.0


def _scaled_copy(source: str, target: str, factor: float) -> float:
    """Copy a WAV at the device's volume; returns its duration (0 for anything else)."""
    try:
        with wave.open(source, "rb") as wav:
            params = wav.getparams()
            frames = wav.readframes(params.nframes)
    except (wave.Error, EOFError):
        shutil.copyfile(source, target)  # not a WAV (an MP3 cue): kept as it is
        return 0.0
    if audioop is not None and factor < 0.999:
        frames = audioop.mul(frames, params.sampwidth, factor)
    with wave.open(target, "wb") as out:
        out.setparams(params)
        out.writeframes(frames)
    return params.nframes / float(params.framerate)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m device.stack.player ANSWERS_DIR FILE", file=sys.stderr)
        return 2
    answers, source = argv
    started = time.time()
    os.makedirs(answers, exist_ok=True)
    ext = os.path.splitext(source)[1] or ".wav"
    target = os.path.join(answers, f"{int(started * 1000)}-{os.getpid()}{ext}")
    try:
        seconds = _scaled_copy(source, target, _volume(os.path.dirname(os.path.abspath(answers))))
    except OSError as exc:
        print(f"player: cannot read {source}: {exc}", file=sys.stderr)
        return 1
    with open(os.path.join(answers, "played.jsonl"), "a", encoding="utf-8") as log:
        log.write(json.dumps({"path": target, "source": source, "started": started,
                              "seconds": round(seconds, 3)}) + "\n")
    _prune(answers)
    time.sleep(max(0.0, seconds - (time.time() - started)))
    return 0


KEEP_ANSWERS = 500


def _prune(answers: str) -> None:
    """Keep the newest answers only (names start with a millisecond timestamp); a device runs for years."""
    names = [n for n in os.listdir(answers) if n[:1].isdigit()]
    if len(names) <= KEEP_ANSWERS + 50:  # prune in batches, not on every sentence
        return
    for name in sorted(names, key=lambda n: int(n.split("-", 1)[0]))[:-KEEP_ANSWERS]:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(answers, name))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
