"""The device a request of the setup web is about: its data folder, set once by ``create_app``."""

from __future__ import annotations

from flask import current_app

from device.paths import DevicePaths


def device_paths() -> DevicePaths:
    """The data folder of the device this app serves."""
    return current_app.config["DEVICE_PATHS"]
