"""The cloud's side of the broker: per-device credentials and topic confinement.

``admin.BrokerAdmin`` is what pairing and unpairing use; ``dynsec.DynsecAdmin`` implements it on
Mosquitto's Dynamic Security plugin (production), ``embedded.EmbeddedBrokerAdmin`` on the embedded
amqtt broker (the laptop default). ``acl`` holds the one policy both enforce. Import the submodule
you need: the embedded broker pulls in amqtt, which a production deployment does not need.
"""
