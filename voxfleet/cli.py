"""The ``voxfleet`` command. Each side of the product brings its own command group."""

from __future__ import annotations

import click

from voxfleet import __version__


@click.group()
@click.version_option(__version__, prog_name="voxfleet")
def main() -> None:
    """VoxFleet: an edge voice appliance with cloud sync."""


def _register() -> None:
    # device/ and cloud/ never import each other; the CLI is the one place that knows both.
    from cloud.cli import cloud
    from device.cli import device
    from voxfleet.demo import demo

    main.add_command(device)
    main.add_command(cloud)
    main.add_command(demo)


_register()
