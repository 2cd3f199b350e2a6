"""Commands from the cloud: what each does on the device, and the one result it earns.

Each handler returns ``(status, detail)``; ``CommandRefused`` turns bad arguments into a
``rejected`` result and any other failure into ``error``, so the cloud always learns what happened.
A command older than ``COMMAND_TTL`` when it arrives (the device was offline) is rejected rather
than run late: an announcement meant for this morning must not play tonight.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from device.sync.tap import BusTap, TapError
from protocol import messages

if TYPE_CHECKING:
    from device.sync.agent import Agent

COMMAND_TTL = 600.0
SPEAK_TIMEOUT = 30.0
VOICE_SERVICES = ["core", "audio", "listener"]


class CommandRefused(ValueError):
    """The command cannot run as given; the text says why (sent back as a ``rejected`` result)."""


def _end_session(agent: Agent, args: dict) -> tuple[str, str]:
    ended = agent.end_sessions()
    if not ended:
        return "ok", "no session was active"
    return "ok", f"ended session {', '.join(ended)}"


def _speak(agent: Agent, args: dict) -> tuple[str, str]:
    text = args.get("text")
    if not isinstance(text, str) or not text.strip():
        raise CommandRefused("speak needs a non-empty 'text'")
    if len(text) > messages.MAX_TEXT:
        raise CommandRefused(f"'text' is longer than {messages.MAX_TEXT} characters")
    lang = args.get("lang")
    if lang is not None and not isinstance(lang, str):
        raise CommandRefused("'lang' must be a language code such as en-US")
    if not agent.speak(text.strip(), lang, timeout=SPEAK_TIMEOUT):
        return "error", f"the announcement did not start playing within {SPEAK_TIMEOUT:.0f}s"
    return "ok", "announcement played"


def _tap_start(agent: Agent, args: dict) -> tuple[str, str]:
    try:
        tap = BusTap.from_args(args, time.time())
    except TapError as exc:
        raise CommandRefused(str(exc)) from exc
    agent.tap = tap
    what = ", ".join(tap.types) or "every message type"
    return "ok", f"tap on: {what}, at most {tap.rate:g}/s, for {tap.until - time.time():.0f}s"


def _tap_stop(agent: Agent, args: dict) -> tuple[str, str]:
    tap, agent.tap = agent.tap, None
    if tap is None:
        return "ok", "no tap was on"
    agent.flush_tap(tap)
    return "ok", f"tap off: {tap.forwarded} messages forwarded"


def _reload(agent: Agent, args: dict) -> tuple[str, str]:
    agent.restart_services(VOICE_SERVICES)
    return "ok", f"configuration re-read; restarted {', '.join(VOICE_SERVICES)}"


def _report_now(agent: Agent, args: dict) -> tuple[str, str]:
    depth = agent.report_now()
    return "ok", f"heartbeat sent; {depth} events still queued"


HANDLERS: dict[str, Callable[[Agent, dict], tuple[str, str]]] = {
    "end_session": _end_session,
    "speak": _speak,
    "tap_start": _tap_start,
    "tap_stop": _tap_stop,
    "reload": _reload,
    "report_now": _report_now,
}


def execute(agent: Agent, command: messages.Command, now: datetime | None = None) -> messages.CommandResult:
    now = now or datetime.now(UTC)
    age = (now - command.issued_at).total_seconds()
    if age > COMMAND_TTL:
        return messages.CommandResult(command_id=command.command_id, status="rejected",
                                      detail=f"expired: issued {age:.0f}s ago (limit {COMMAND_TTL:.0f}s)")
    try:
        status, detail = HANDLERS[command.action](agent, dict(command.args))
    except CommandRefused as exc:
        status, detail = "rejected", str(exc)
    except Exception as exc:  # reported to the cloud; the agent carries on
        status, detail = "error", f"{type(exc).__name__}: {exc}"
    return messages.CommandResult(command_id=command.command_id, status=status,
                                  detail=detail[: messages.MAX_TEXT])
