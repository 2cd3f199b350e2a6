"""Which code a running process runs: asked in that process's own environment, not assumed.

``SOURCE`` runs as ``python -c`` with the environment, working folder and first ``sys.path`` entry
(the script's folder, or the working folder for ``-m``) of the process, read from ``/proc/PID``;
nothing of the tests is on its path. It reports what that process's interpreter finds: the ``voxfleet``
and skill distributions (first on ``sys.path`` wins, as for OVOS's plugin lookup, which uses the
same importlib_metadata), where the module of every entry point they register resolves, where the
``voxfleet``, ``device``, ``cloud`` and ``protocol`` packages resolve, and any modules named on its
command line (None: not importable there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.compat.install import Code

SOURCE = r"""
import importlib.util
import json
import re
import sys

sys.path[0] = sys.argv[1]  # the probed process's own first entry
try:  # what ovos_plugin_manager uses to find plugins
    import importlib_metadata as metadata
except ImportError:
    import importlib.metadata as metadata


def origin(name):
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec else None


def described(dist):
    listed = [f for f in (dist.files or ()) if f.name == "METADATA"]
    return {"version": dist.version,
            "metadata": str(listed[0].locate()) if listed else str(dist.locate_file("")),
            "entry_points": {f"{ep.group}:{ep.name}": origin(ep.module) for ep in dist.entry_points}}


found = {}
for dist in metadata.distributions():
    name = re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower()
    if (name == "voxfleet" or name.startswith("voxfleet-skill")) and name not in found:
        found[name] = described(dist)
print(json.dumps({"distributions": found,
                  "packages": {name: origin(name) for name in ("voxfleet", "device", "cloud", "protocol")},
                  "modules": {name: origin(name) for name in sys.argv[2:]}}))
"""


def in_environment(env: dict[str, str], cwd: Path, modules: tuple[str, ...] = (),
                   first: str | None = None) -> dict:
    """The report of an interpreter started with ``env`` in ``cwd`` and ``first`` (default: ``cwd``,
    as for ``python -m``) first on ``sys.path``."""
    done = subprocess.run([sys.executable, "-c", SOURCE, first or str(cwd), *modules], env=env, cwd=str(cwd),
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"the probe failed ({done.returncode}): {done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def in_process(pid: int) -> dict:
    """The report for the running process ``pid``, with its own environment and working folder."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    env = dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
    cwd = os.readlink(f"/proc/{pid}/cwd")
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[1:]
    return in_environment(env, Path(cwd), first=_first_path_entry(argv, cwd))


def _first_path_entry(argv: list[str], cwd: str) -> str:
    """What Python put first on ``sys.path`` for these interpreter arguments: the working folder for
    ``-m`` and ``-c``, else the (symlink-resolved) folder of the script."""
    for arg in argv:
        if arg in ("-m", "-c"):
            return cwd
        if not arg.startswith("-"):
            return os.path.dirname(os.path.realpath(os.path.join(cwd, arg)))
    return cwd


def foreign(report: dict, code: Code) -> list[str]:
    """What in ``report`` does not resolve under ``code.home`` (all of it for an isolated release; for
    the current checkout, its own packages and the ``voxfleet`` distribution's entry points)."""
    home = str(code.home) + os.sep
    places = {f"package {name}": path for name, path in report["packages"].items()}
    if "voxfleet" not in report["distributions"]:
        places["the voxfleet distribution"] = None
    for name, dist in report["distributions"].items():
        if not code.isolated and name != "voxfleet":
            continue  # the skills are the virtualenv's editable installs
        if code.isolated:
            places[f"{name} metadata"] = dist["metadata"]
        places.update({f"{name} entry point {ep}": path for ep, path in dist["entry_points"].items()})
    return [f"{what}: {path}" for what, path in places.items() if not (path or "").startswith(home)]
