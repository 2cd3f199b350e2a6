"""The ``voxfleet`` command. Each side of the product brings its own command group."""

from __future__ import annotations

import click

from voxfleet import __version__


@click.group()
@click.version_option(__version__, prog_name="voxfleet")
def main() -> None:
    """VoxFleet: an edge voice appliance with cloud sync."""


def _register() -> None:
    # device/ and cloud/ never import each other; the CLI is the one place that knows both. A device
    # installs only the `device` extra: its `voxfleet device ...` must work without the cloud's packages.
    from device.cli import device

    main.add_command(device)
    try:
        from cloud.cli import cloud
        from voxfleet.demo import demo
    except ModuleNotFoundError as exc:
        missing = exc.name

        @main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
        def cloud() -> None:
            """The cloud (not installed here: needs the `cloud` extra)."""
            raise click.ClickException(f"the cloud's packages are not installed ({missing} is missing): "
                                       "pip install 'voxfleet[cloud]'")
        return
    main.add_command(cloud)
    main.add_command(demo)


_register()
