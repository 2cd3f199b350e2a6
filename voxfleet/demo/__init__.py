"""``voxfleet demo``: a cloud and a device on one machine, paired, talked to, and left to look at.

command.py is the command and its steps; cloud.py keeps the demo's cloud running in the background
between runs; signins.py makes the demo's operator and tenant owner and keeps their passwords;
shell.py runs ``voxfleet`` commands as a person would type them.
"""

from voxfleet.demo.command import demo

__all__ = ["demo"]
