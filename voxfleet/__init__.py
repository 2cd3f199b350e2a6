"""VoxFleet: an edge voice appliance with cloud sync."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("voxfleet")  # one place for the release: pyproject.toml
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
