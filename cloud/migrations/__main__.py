"""``python -m cloud.migrations revision|upgrade|downgrade|current --url URL``: for developers."""

from __future__ import annotations

import argparse

from alembic import command

from cloud.migrations import alembic_config


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m cloud.migrations")
    parser.add_argument("action", choices=["revision", "upgrade", "downgrade", "current"])
    parser.add_argument("--url", required=True)
    parser.add_argument("-m", "--message", default="")
    parser.add_argument("--autogenerate", action="store_true")
    parser.add_argument("--rev-id")
    parser.add_argument("target", nargs="?", default="head")
    args = parser.parse_args()
    from cloud.db.session import make_engine

    engine = make_engine(args.url)
    with engine.begin() as connection:
        config = alembic_config(connection)
        if args.action == "revision":
            command.revision(config, message=args.message, autogenerate=args.autogenerate, rev_id=args.rev_id)
        elif args.action == "upgrade":
            command.upgrade(config, args.target)
        elif args.action == "downgrade":
            command.downgrade(config, args.target)
        else:
            command.current(config)


if __name__ == "__main__":
    main()
