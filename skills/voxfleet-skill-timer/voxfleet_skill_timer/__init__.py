"""Kitchen timers: "set a timer for five minutes", "how long is left", "cancel the timer".

Written for VoxFleet instead of using ovos-skill-alerts: that skill's timers live among alarms,
reminders, lists and calendars, its intents need the Adapt engine plus a dozen vocabularies, and
it loads slowly on a Pi. Timers are what people use every day, so they get a small skill whose
behaviour is easy to test. Timers are kept in ``timers.json`` in the skill's own data folder
(not in settings.json, which ovos-core watches and reloads behind the skill's back) and are
rescheduled after a restart, so a device that reboots still rings.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from datetime import timedelta

from ovos_bus_client.message import Message
from ovos_date_parser import extract_duration, nice_duration
from ovos_utils import classproperty
from ovos_utils.process_utils import RuntimeRequirements
from ovos_workshop.decorators import intent_handler
from ovos_workshop.skills import OVOSSkill

MAX_SECONDS = 24 * 3600


def parse_duration(text: str, lang: str = "en-us") -> int | None:
    """Whole seconds in a spoken duration ("five minutes", "a minute and a half"), or None."""
    text = (text or "").strip().lower()
    if not text:
        return None
    for article in ("a ", "an "):
        if text.startswith(article):
            text = "one " + text[len(article):]
    text = text.replace(" and a half", " and thirty seconds") if "minute" in text else text
    duration, _ = extract_duration(text, lang=lang)
    if duration is None:
        return None
    seconds = int(round(duration.total_seconds()))
    return seconds if seconds > 0 else None


def speak_duration(seconds: float, lang: str = "en-us") -> str:
    return nice_duration(timedelta(seconds=max(1, int(round(seconds)))), lang=lang)


class TimerSkill(OVOSSkill):
    @classproperty
    def runtime_requirements(self):
        return RuntimeRequirements(internet_before_load=False, network_before_load=False,
                                   gui_before_load=False, requires_internet=False,
                                   requires_network=False, requires_gui=False,
                                   no_internet_fallback=True, no_network_fallback=True,
                                   no_gui_fallback=True)

    def initialize(self) -> None:
        self._lock = threading.Lock()
        self._path = os.path.join(self.file_system.path, "timers.json")
        try:
            with open(self._path, encoding="utf-8") as handle:
                stored = json.load(handle)
        except (OSError, ValueError):
            stored = []
        now = time.time()
        self._timers = [t for t in stored if isinstance(t, dict) and t.get("ends", 0) > now]
        for timer in self._timers:
            self._schedule(timer)
        self._save(self._timers)

    # -- helpers ----------------------------------------------------------------------------------

    @property
    def timers(self) -> list[dict]:
        return sorted(self._timers, key=lambda t: t["ends"])

    def _save(self, timers: list[dict]) -> None:
        with self._lock:
            self._timers = list(timers)
            tmp = self._path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(self._timers, handle)
            os.replace(tmp, self._path)

    def _schedule(self, timer: dict) -> None:
        self.schedule_event(self._expire, max(0.1, timer["ends"] - time.time()),
                            data={"id": timer["id"]}, name=f"timer-{timer['id']}")

    # -- intents ----------------------------------------------------------------------------------

    @intent_handler("timer.set.intent")
    def handle_set(self, message: Message) -> None:
        seconds = parse_duration(message.data.get("duration", ""), self.lang)
        if seconds is None:
            self.speak_dialog("timer.duration.unknown")
            return
        if seconds > MAX_SECONDS:
            self.speak_dialog("timer.too.long")
            return
        timer = {"id": uuid.uuid4().hex[:8], "seconds": seconds, "ends": time.time() + seconds}
        self._save(self.timers + [timer])
        self._schedule(timer)
        self.speak_dialog("timer.set", {"duration": speak_duration(seconds, self.lang)})

    @intent_handler("timer.status.intent")
    def handle_status(self, message: Message) -> None:
        timers = [t for t in self.timers if t["ends"] > time.time()]
        if not timers:
            self.speak_dialog("timer.none")
            return
        remaining = speak_duration(timers[0]["ends"] - time.time(), self.lang)
        if len(timers) == 1:
            self.speak_dialog("timer.remaining", {"remaining": remaining})
        else:
            self.speak_dialog("timer.remaining.many", {"count": len(timers), "remaining": remaining})

    @intent_handler("timer.cancel.intent")
    def handle_cancel(self, message: Message) -> None:
        timers = self.timers
        if not timers:
            self.speak_dialog("timer.none")
            return
        for timer in timers:
            self.cancel_scheduled_event(f"timer-{timer['id']}")
        self._save([])
        if len(timers) == 1:
            self.speak_dialog("timer.cancelled")
        else:
            self.speak_dialog("timer.cancelled.many", {"count": len(timers)})

    def _expire(self, message: Message) -> None:
        timer_id = message.data.get("id")
        timer = next((t for t in self.timers if t["id"] == timer_id), None)
        if timer is None:
            return  # cancelled in the meantime
        self._save([t for t in self.timers if t["id"] != timer_id])
        self.speak_dialog("timer.expired", {"duration": speak_duration(timer["seconds"], self.lang)})

    def can_stop(self, message: Message) -> bool:
        return False

    def stop(self) -> bool:
        return False
