"""Writing a device file so that a reader, a power cut or a second writer never sees half of it.

The device's state files (settings, the cloud's managed config, mycroft.conf, cloud.json, the setup
web's credentials) are rewritten in place by several processes (agent, setup web, restarter,
provisioning). Each write goes to a uniquely named temp file in the same folder and is renamed over
the target, which is atomic on POSIX: readers see the old file or the new one, and two writers never
share a temp file (a fixed ``.tmp`` name let one rename the other's half-written file).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

KEEP_MODE = -1


def write_atomic(path: Path, text: str, mode: int = KEEP_MODE) -> Path:
    """Replace ``path`` with ``text`` (UTF-8) atomically.

    ``mode``: the file's permission bits; by default the mode the file already has (0644 for a new
    one), so a rewrite never changes who may read it. Secrets pass 0o600, which is set before the
    text is written, so they are never readable by others even for a moment.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == KEEP_MODE:
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # made 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
