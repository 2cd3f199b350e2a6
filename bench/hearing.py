"""Hearing benchmark (issue 14, part 2): which whisper model, beam size and prompt hear commands best.

The real stack runs in real time, so comparing speech-to-text settings through it costs minutes per
setting. The transcription alone does not need the stack: this script takes the understanding set's
clips (bench/understanding.py builds them from its seed, in the same cache), cuts out the command as
the listener hands it to whisper (from the end of the wake phrase to a little after the speech), and
transcribes it with each setting through the device's own engine (device/voice/stt.py). All settings
run in one process, one after another on the same clips, so their figures compare.

Word error rate uses the understanding bench's normaliser (numbers spelled out). Transcription time
is the engine's alone, per clip, on this machine. Tune on ``--split dev``; ``test`` is for reporting.

    .venv/bin/python bench/hearing.py --split dev [--limit 60] \\
        [--configs tiny.en/b5/prompt,tiny.en/b5,base/b5/prompt]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from device.offline import force_offline  # noqa: E402

force_offline()

DEFAULT_CONFIGS = "tiny.en/b5/prompt,tiny.en/b5,tiny.en/b1/prompt,base/b5/prompt,base/b5"
COMMAND_TAIL = 0.3  # seconds of audio after the speech: what the listener's end-of-command cut leaves


def _understanding():
    """bench/understanding.py as a module (a script, not a package; shares the clip cache and scoring)."""
    spec = importlib.util.spec_from_file_location("understanding_bench", ROOT / "bench" / "understanding.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def parse_config(text: str) -> dict:
    """"base/b5/prompt" -> model base, beam 5, prompt on."""
    parts = text.split("/")
    config = {"name": text, "model": parts[0], "beam": 5, "prompt": False}
    for part in parts[1:]:
        if part.startswith("b") and part[1:].isdigit():
            config["beam"] = int(part[1:])
        elif part == "prompt":
            config["prompt"] = True
        else:
            raise argparse.ArgumentTypeError(f"unknown part {part!r} in {text!r} (use bN or prompt)")
    return config


def command_audio(clip: dict) -> np.ndarray:
    """The command as whisper receives it: after the wake phrase's pause, up to a short tail."""
    from device.voice import audio
    from device.voice.samples import PAUSE_AFTER_WAKE

    pcm = audio.load_wav(Path(clip["path"]))
    samples = pcm.samples.astype(np.float32) / 32768.0
    start = clip["wake_end"] + PAUSE_AFTER_WAKE * 0.5 if clip.get("wake_word") else 0.0
    end = clip["speech_end"] + COMMAND_TAIL
    return samples[int(start * audio.SAMPLE_RATE):int(end * audio.SAMPLE_RATE)]


def run(args: argparse.Namespace) -> dict:
    from device import models
    from device.vocabulary import whisper_prompt
    from device.voice.stt import WhisperEngine

    bench = _understanding()
    items = bench.limit_items(bench.load_items(args.split), args.limit, args.seed)
    items = [i for i in items if i["kind"] != "not_for_device"]  # nobody transcribes overheard speech
    builder = bench.ClipBuilder(Path(args.out), seed=args.seed)
    clips = []
    for n, item in enumerate(items, 1):
        clips.append((item, builder.clip(item)))
        if n % 25 == 0:
            print(f"  built {n}/{len(items)} clips", file=sys.stderr)
    prompt = whisper_prompt()
    results = []
    for config in args.configs:
        engine = WhisperEngine(models.stt_model_dir(config["model"]), beam_size=config["beam"],
                               cpu_threads=args.threads, prompt=prompt if config["prompt"] else "")
        engine.transcribe(np.zeros(16000, np.float32))  # load and warm before timing
        rows, times = [], []
        for item, clip in clips:
            pcm = command_audio(clip)
            started = time.perf_counter()
            heard = engine.transcribe(pcm)
            times.append((time.perf_counter() - started) * 1000.0)
            rows.append({"id": item["id"], "text": item["text"], "heard": heard, "level": clip["level"],
                         "family": clip["family"], "voice": clip["voice"], "ms": round(times[-1], 1)})
        by_level = {}
        for level in sorted({r["level"] for r in rows}):
            by_level[level] = bench.wer([r for r in rows if r["level"] == level])
        families = sorted({r["family"] for r in rows})
        by_family = {f: bench.wer([r for r in rows if r["family"] == f]) for f in families}
        results.append({
            **config, "clips": len(rows), "wer": bench.wer(rows), "wer_by_level": by_level,
            "wer_by_family": by_family, "p50_ms": round(float(np.percentile(times, 50)), 1),
            "p95_ms": round(float(np.percentile(times, 95)), 1),
            "full_window_fallbacks": engine.full_window_used, "rows": rows,
        })
        last = results[-1]
        print(f"  {config['name']}: WER {last['wer']}, p50 {last['p50_ms']} ms", file=sys.stderr)
    return {"split": args.split, "seed": args.seed, "prompt": prompt, "threads": args.threads,
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "processor": platform.processor() or platform.machine()},
            "results": results}


def print_table(report: dict) -> None:
    levels = sorted({level for r in report["results"] for level in r["wer_by_level"]})
    head = ["setting", "clips", "WER", *[f"WER {lv}" for lv in levels], "p50 ms", "p95 ms", "full-window"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in report["results"]:
        cells = [r["name"], r["clips"], r["wer"], *[r["wer_by_level"].get(lv) for lv in levels],
                 r["p50_ms"], r["p95_ms"], r["full_window_fallbacks"]]
        print("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
    print(f"\n{report['machine']['cpus']} CPUs, {report['machine']['processor']}; split {report['split']}; "
          f"whisper threads {report['threads']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("dev", "test", "all"), default="dev")
    parser.add_argument("--limit", type=int, default=None, help="a seeded spread-out subset of this many")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--configs", default=DEFAULT_CONFIGS,
                        type=lambda s: [parse_config(c) for c in s.split(",") if c],
                        help=f"model/bN[/prompt] settings, comma separated (default {DEFAULT_CONFIGS})")
    parser.add_argument("--threads", type=int, default=2,
                        help="whisper's CPU threads (the device uses min(4, cores))")
    parser.add_argument("--out", default=str(ROOT / "var" / "understanding"), help="clip cache")
    parser.add_argument("--results", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    report = run(args)
    print_table(report)
    out = Path(args.results) / f"hearing-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
