"""Freeze the dev/test split of bench/understanding/phrasings.json (issue 14).

    python bench/understanding/make_split.py [--seed 14] [--check]

Stratified: the phrasings of each intent (and of each kind of request that should not be understood:
not understood, skill not installed, per topic, and overheard speech) are shuffled with a random
generator seeded from ``seed`` and the group's name, then dealt alternately to dev and test; groups
with an odd count give their extra phrasing to dev and test in turn, so the split stays ~50/50.
Nothing about how the device hears or matches a phrasing goes in. ``--check`` recomputes the split
and fails if it differs from the frozen file (tests/bench/test_understanding_set.py does the same).
Never tune anything on the test split: tune on dev, report test.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PHRASINGS = HERE / "phrasings.json"
SPLIT = HERE / "split.json"
SEED = 14


def group_of(item: dict) -> str:
    if item["kind"] == "intent":
        return item["intent"]
    if item["kind"] == "not_installed":
        return f"not_installed:{item.get('topic', '')}"
    return item["kind"]


def compute_split(items: list[dict], seed: int = SEED) -> dict[str, str]:
    groups: dict[str, list[str]] = {}
    for item in items:
        groups.setdefault(group_of(item), []).append(item["id"])
    assignment: dict[str, str] = {}
    odd = 0
    for name in sorted(groups):
        ids = sorted(groups[name])
        random.Random(f"{seed}:{name}").shuffle(ids)
        first, second = ("dev", "test") if odd % 2 == 0 else ("test", "dev")
        if len(ids) % 2:
            odd += 1
        for i, item_id in enumerate(ids):
            assignment[item_id] = first if i % 2 == 0 else second
    return dict(sorted(assignment.items()))


def render(items: list[dict], seed: int = SEED) -> str:
    split = compute_split(items, seed)
    counts = {s: sum(1 for v in split.values() if v == s) for s in ("dev", "test")}
    doc = {"seed": seed, "made_by": "bench/understanding/make_split.py", "counts": counts, "split": split}
    return json.dumps(doc, indent=1) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--check", action="store_true", help="fail if the frozen split.json differs")
    args = parser.parse_args()
    items = json.loads(PHRASINGS.read_text(encoding="utf-8"))["items"]
    text = render(items, args.seed)
    if args.check:
        same = SPLIT.exists() and SPLIT.read_text(encoding="utf-8") == text
        print("split.json is up to date" if same else "split.json differs from a fresh computation")
        return 0 if same else 1
    SPLIT.write_text(text, encoding="utf-8")
    print(f"wrote {SPLIT}: {json.loads(text)['counts']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
