"""The device's side of the cloud: the agent, its SQLite outbox, the MQTT link, desired config,
commands, bus tap, heartbeat and pairing."""
