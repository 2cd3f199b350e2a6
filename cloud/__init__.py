"""The VoxFleet cloud: Flask app, MQTT ingest, portals, billing (see docs/design.md, "The cloud").

Empty until the cloud issues land; it will never import ``device``.
"""
