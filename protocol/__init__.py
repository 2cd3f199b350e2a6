"""The MQTT contract shared by ``device`` and ``cloud`` (see DESIGN.md, "The wire").

Empty until the sync agent issue lands.
"""
