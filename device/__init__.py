"""The VoxFleet appliance: the OVOS voice stack, its models, and (later) sync to the cloud."""
