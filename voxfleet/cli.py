"""The ``voxfleet`` command. Each side of the product brings its own command group."""

from __future__ import annotations

import importlib.util

import click

from voxfleet import __version__

CLOUD_EXTRA = ("sqlalchemy", "alembic", "amqtt", "psycopg")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
        return False


@click.group()
@click.version_option(__version__, prog_name="voxfleet")
def main() -> None:
    """VoxFleet: an edge voice appliance with cloud sync."""


def _register() -> None:
    # device/ and cloud/ never import each other; the CLI is the one place that knows both. A device
    # installs only the `device` extra: its `voxfleet device ...` must work without the cloud's packages.
    from device.cli import device

    main.add_command(device)
    # The cloud extra's own packages, looked for (not imported: `voxfleet --help` stays quick) before
    # its commands are offered; cloud.cli imports them inside each command, so its import proves nothing.
    missing = next((name for name in CLOUD_EXTRA if not _installed(name)), None)
    if missing is None:
        from cloud.cli import cloud
        from voxfleet.demo import demo
    else:

        @main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
        def cloud() -> None:
            """The cloud (not installed here: needs the `cloud` extra)."""
            raise click.ClickException(f"the cloud's packages are not installed ({missing} is missing): "
                                       "pip install 'voxfleet[cloud]'")
        return
    main.add_command(cloud)
    main.add_command(demo)


_register()
