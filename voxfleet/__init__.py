"""VoxFleet: an edge voice appliance with cloud sync."""

__version__ = "0.1.0"
