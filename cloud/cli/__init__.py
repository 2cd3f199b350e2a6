"""``voxfleet cloud ...``: set up and run the cloud from a shell or a script.

Every command takes ``--data-dir`` (or $VOXFLEET_DATA_DIR): the folder that holds cloud.toml, the
secret key and, on embedded defaults, the SQLite database. Results go to stdout (an API key alone
on its line, so ``KEY=$(voxfleet cloud admin create-api-key ...)`` works); messages to stderr.
Heavy imports (SQLAlchemy, Flask) happen inside the commands so ``voxfleet --help`` stays quick.
"""

from __future__ import annotations

import click

from cloud.cli.admin import admin
from cloud.cli.billing import billing
from cloud.cli.db import db
from cloud.cli.serve import ingest, serve
from cloud.cli.webhooks import webhooks


@click.group()
def cloud() -> None:
    """The VoxFleet cloud: database, accounts, API."""


for _command in (db, admin, serve, ingest, billing, webhooks):
    cloud.add_command(_command)
