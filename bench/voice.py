"""Voice loop benchmark: latency of every stage, accuracy, idle CPU and memory, against OVOS stock.

Runs the sample command set (bundled Piper voice, and espeak-ng as an untuned second voice) through
the real stack twice in one run: with VoxFleet's tuning, and with OVOS's stock listener, intent
pipeline, STT and TTS plugins on the same models (the baseline). Prints a table, writes
bench/results/voice-<timestamp>.json.

    .venv/bin/python bench/voice.py [--idle-seconds 60] [--configs voxfleet,stock] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from device.offline import force_offline  # noqa: E402
from device.paths import DevicePaths  # noqa: E402
from device.settings import DeviceSettings  # noqa: E402
from device.voice import samples  # noqa: E402
from device.voice.listen import Listener  # noqa: E402

force_offline()

STAGES = ("wake_detect", "end_of_speech_to_transcript", "transcript_to_intent", "intent_to_answer",
          "answer_to_first_audio", "end_of_speech_to_first_audio", "end_of_speech_to_record_end")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def words(text: str) -> list[str]:
    text = (text or "").lower().replace("five", "5").replace("ten", "10")
    return re.findall(r"[a-z0-9']+", text)


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    dist = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, dist[0] = dist[0], i
        for j, h in enumerate(hyp, 1):
            prev, dist[j] = dist[j], min(dist[j] + 1, dist[j - 1] + 1, prev + (r != h))
    return dist[len(hyp)]


def percentile(values: list[float], q: float) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(np.percentile(values, q)), 1) if values else None


def stack_processes(supervisor) -> dict[str, psutil.Process]:
    return {name: psutil.Process(svc.process.pid) for name, svc in supervisor.services.items()
            if svc.process and svc.process.poll() is None}


def idle_cpu(supervisor, seconds: float) -> dict[str, float]:
    """Share of one core used by each service while the microphone hears only silence."""
    procs = stack_processes(supervisor)
    before = {n: sum(p.cpu_times()[:2]) for n, p in procs.items()}
    started = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - started
    return {n: round(100.0 * (sum(p.cpu_times()[:2]) - before[n]) / wall, 2) for n, p in procs.items()}


def run_config(tuning: str, voices: dict, work: Path, idle_seconds: float, rounds: int,
               overrides: dict) -> dict:
    paths = DevicePaths.at(work / tuning).create()
    settings = DeviceSettings(bus_port=free_port(), tuning=tuning, timezone="UTC",
                              **(overrides if tuning == "voxfleet" else {}))
    files = {name: [(c, samples.synthesize(v, c.text, work / "samples" / name))
                    for c in samples.commands_for(name)] for name, v in voices.items()}
    results: dict = {"tuning": tuning, "sessions": [],
                     "settings": settings.model_dump(include={"silence_end", "vad_threshold", "stt_model",
                                                              "stt_beam_size", "speculate_after"})}
    with Listener(paths, settings) as listener:
        time.sleep(5)  # let start-up work (skill loading, first inference) settle
        results["idle_cpu_percent_of_one_core"] = idle_cpu(listener.supervisor, idle_seconds)
        for _ in range(rounds):
            for voice, items in files.items():
                for command, sample in items:
                    reports = listener.listen(sample.path)
                    report = reports[0].to_dict() if reports else None
                    results["sessions"].append({"voice": voice, "text": command.text,
                                                "expected_intent": command.intent, "report": report,
                                                "sessions": len(reports)})
        results["rss_mb"] = {n: h["rss_mb"] for n, h in listener.supervisor.health().items()}
    return results


def summarize(results: dict) -> dict:
    summary: dict = {"tuning": results["tuning"], "settings": results["settings"]}
    for voice in ("piper", "espeak"):
        rows = [r for r in results["sessions"] if r["voice"] == voice]
        if not rows:
            continue
        def intent_ok(row) -> bool:
            got = (row["report"] or {}).get("intent")
            want = row["expected_intent"]
            if want and want.startswith("stop:"):
                return bool(got and got.startswith("stop:"))
            return row["sessions"] == 1 and got == want
        errors = sum(edit_distance(words(r["text"]), words((r["report"] or {}).get("transcript")))
                     for r in rows)
        summary[voice] = {
            "commands": len(rows),
            "intent_accuracy": round(sum(intent_ok(r) for r in rows) / len(rows), 3),
            "wer": round(errors / max(1, sum(len(words(r["text"])) for r in rows)), 3),
            "missed_wake_words": sum(r["sessions"] == 0 for r in rows),
        }
    piper = [r["report"] for r in results["sessions"] if r["voice"] == "piper" and r["report"]]
    summary["stages_ms"] = {s: {"p50": percentile([p["timings_ms"][s] for p in piper], 50),
                                "p95": percentile([p["timings_ms"][s] for p in piper], 95)}
                            for s in STAGES}
    summary["idle_cpu_percent_of_one_core"] = results["idle_cpu_percent_of_one_core"]
    summary["idle_cpu_stack_total"] = round(sum(results["idle_cpu_percent_of_one_core"].values()), 2)
    summary["rss_mb"] = results["rss_mb"]
    summary["rss_mb_total"] = round(sum(v or 0 for v in results["rss_mb"].values()), 1)
    return summary


def print_table(summaries: list[dict]) -> None:
    names = [s["tuning"] for s in summaries]
    print(f"\n{'metric':<42}" + "".join(f"{n:>16}" for n in names))
    def row(label, get):
        values = []
        for s in summaries:
            try:
                values.append(get(s))
            except (KeyError, TypeError):
                values.append(None)
        print(f"{label:<42}" + "".join(f"{'-' if v is None else v:>16}" for v in values))
    for stage in STAGES:
        row(f"{stage} p50 ms", lambda s, st=stage: s["stages_ms"][st]["p50"])
        row(f"{stage} p95 ms", lambda s, st=stage: s["stages_ms"][st]["p95"])
    for voice in ("piper", "espeak"):
        row(f"intent accuracy ({voice})", lambda s, v=voice: s[v]["intent_accuracy"])
        row(f"word error rate ({voice})", lambda s, v=voice: s[v]["wer"])
        row(f"missed wake words ({voice})", lambda s, v=voice: s[v]["missed_wake_words"])
    row("idle CPU, listener (% of one core)", lambda s: s["idle_cpu_percent_of_one_core"]["listener"])
    row("idle CPU, whole stack (% of one core)", lambda s: s["idle_cpu_stack_total"])
    for service in ("messagebus", "volume", "core", "audio", "listener"):
        row(f"RSS {service} MB", lambda s, sv=service: s["rss_mb"][sv])
    row("RSS whole stack MB", lambda s: s["rss_mb_total"])
    if len(summaries) == 2:
        a, b = summaries
        speedup = b["stages_ms"]["end_of_speech_to_first_audio"]["p50"] / \
            a["stages_ms"]["end_of_speech_to_first_audio"]["p50"]
        print(f"\nend of speech -> first audio, p50: {a['tuning']} is {speedup:.2f}x faster "
              f"than {b['tuning']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--configs", default="voxfleet,stock")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--voices", default="piper,espeak")
    parser.add_argument("--silence-end", type=float, help="override for the voxfleet run (default 0.4 s)")
    parser.add_argument("--vad-threshold", type=float, help="override for the voxfleet run (default 0.3)")
    parser.add_argument("--stt-model", help="override for the voxfleet run (default tiny.en)")
    parser.add_argument("--speculate-after", type=float, help="override for the voxfleet run (default 0.2 s)")
    args = parser.parse_args()
    overrides = {k: v for k, v in {"silence_end": args.silence_end, "vad_threshold": args.vad_threshold,
                                   "stt_model": args.stt_model,
                                   "speculate_after": args.speculate_after}.items() if v is not None}
    voices = {}
    if "piper" in args.voices:
        voices["piper"] = samples.PiperVoice()
    if "espeak" in args.voices:
        voices["espeak"] = samples.EspeakVoice()
    machine = {"cpu": platform.processor() or platform.machine(), "cores": psutil.cpu_count(),
               "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
               "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as info:
            machine["cpu"] = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    summaries, raw = [], []
    with tempfile.TemporaryDirectory(prefix="voxfleet-bench-") as work:
        for tuning in args.configs.split(","):
            print(f"running {tuning} ...", file=sys.stderr)
            results = run_config(tuning, voices, Path(work), args.idle_seconds, args.rounds, overrides)
            raw.append(results)
            summaries.append(summarize(results))
    print(f"machine: {machine}")
    print_table(summaries)
    out = ROOT / "bench" / "results" / f"voice-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"machine": machine, "summaries": summaries, "raw": raw}, indent=2))
    print(f"\nresults written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
