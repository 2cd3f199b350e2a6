"""The MQTT contract shared by ``device`` and ``cloud`` (see docs/design.md, "The wire", and
docs/protocol.md): topics, message schemas and their version, event ids."""
