"""The previous release's wire code, run from git history in a process of its own.

A process of its own because a release's ``protocol`` package imports itself by name: loaded beside
today's in one interpreter, its imports would reach today's modules and the test would prove nothing.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

from tests.releases import Release, checkout, previous

GOLDEN = Path(__file__).resolve().parent / "golden"

# Reads [base64 payload, ...] on stdin; answers [{"ok": true, "message": {...}} | {"ok": false,
# "error": "..."}, ...]: what that release's reader makes of each payload.
_DECODE = """
import base64, json, sys
from protocol import messages
out = []
for item in json.load(sys.stdin):
    try:
        message = messages.decode(base64.b64decode(item))
        out.append({"ok": True, "message": json.loads(message.model_dump_json(exclude_none=True))})
    except Exception as exc:
        out.append({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
json.dump(out, sys.stdout)
"""


@cache
def release_dir() -> tuple[Release, Path]:
    release = previous()
    folder = Path(tempfile.mkdtemp(prefix=f"voxfleet-{release.version}-"))
    return release, checkout(release, folder, "protocol")


def decode(payloads: list[bytes]) -> list[dict]:
    """Each payload as the previous release's reader takes it (or the error it refuses it with)."""
    _, folder = release_dir()
    done = subprocess.run([sys.executable, "-c", _DECODE], cwd=folder, capture_output=True, text=True,
                          env={"PYTHONPATH": str(folder), "PATH": "/usr/bin:/bin"}, timeout=120,
                          input=json.dumps([base64.b64encode(p).decode() for p in payloads]))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def golden_releases() -> list[str]:
    return sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())
