"""The demo does what a person would do by hand, with the same ``voxfleet`` commands: these run them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import click

VOXFLEET = str(Path(sys.executable).parent / "voxfleet")


def say(text: str) -> None:
    """A progress line on stderr, time-stamped (stdout carries the results)."""
    click.echo(f"{time.strftime('%H:%M:%S')} {text}", err=True)


def run(args: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    """``voxfleet ARGS``; its stdout, or a ClickException with the end of its stderr."""
    done = subprocess.run([VOXFLEET, *args], env=env, input=stdin, capture_output=True, text=True)
    if done.returncode != 0:
        raise click.ClickException(f"voxfleet {' '.join(args[:3])} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def typed(path: Path) -> str:
    """How to type ``path`` from here: relative when it is below the current folder."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
