"""The device's local setup web (``voxfleet device setup-web``): first boot, settings, network, cloud, status.

A small Flask app served on the LAN only; see docs/setup-web.md and ``device.web.app.create_app``.
"""
