"""The running app's services as the API and the portals hand them to the domain (cloud/domain): its
downlink, configuration, broker and webhook policy, read from Flask's ``current_app`` in this one
place so the domain never has to."""

from __future__ import annotations

from typing import Any

from flask import current_app

from cloud import downlink as downlinks
from cloud.config import CloudConfig
from cloud.webhooks import deliver


def downlink() -> downlinks.Downlink:
    return downlinks.for_app(current_app)


def config() -> CloudConfig:
    return current_app.extensions["voxfleet.config"]


def broker() -> Any:
    """The embedded broker when this process runs one, else None (an external Mosquitto)."""
    return current_app.extensions.get("voxfleet.broker")


def webhooks_allow_private() -> bool:
    """``WEBHOOKS_ALLOW_PRIVATE`` in the app's config, else the cloud configuration's setting."""
    configured = current_app.config.get("WEBHOOKS_ALLOW_PRIVATE")
    if configured is not None:
        return bool(configured)
    return deliver.allow_private_default(current_app.extensions.get("voxfleet.config"))
