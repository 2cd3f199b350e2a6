"""The billable metrics VoxFleet keeps in Lago, one per ledger meter (cloud.db.billing.BILLING_METERS),
and how one usage row becomes Lago events.

Lago bills an event against the billable metric whose code the event carries, so one usage row (which
holds several meters) becomes one event per meter it uses. Every usage row counts one session and
names its device (``sessions``: count; ``active_devices``: distinct device ids in the period); the
summed meters get an event only when their value is not zero.

Why the transaction ids are ``{event_id}:{meter}`` and not the bare event id: Lago keeps one event per
(subscription, transaction_id) whatever its code, so several meters' events under one id would all but
one be refused as duplicates. The id is still a pure function of our event id, so a retry of the same
usage row is the same Lago transaction and a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cloud.db.billing import BILLING_METERS


@dataclass(frozen=True)
class Metric:
    code: str
    name: str
    aggregation_type: str
    field_name: str | None
    description: str


METRICS: tuple[Metric, ...] = (
    Metric("sessions", "Voice sessions", "count_agg", None, "One per voice session with usage"),
    Metric("stt_seconds", "Speech recognised (seconds)", "sum_agg", "stt_seconds",
           "Seconds of speech transcribed"),
    Metric("tts_characters", "Speech synthesised (characters)", "sum_agg", "tts_characters",
           "Characters spoken by text to speech"),
    Metric("intents_handled", "Intents handled", "sum_agg", "intents_handled", "Commands a skill handled"),
    Metric("active_devices", "Active devices", "unique_count_agg", "device_id",
           "Distinct devices with usage in the period"),
    Metric("llm_tokens", "LLM tokens", "sum_agg", "llm_tokens", "Language model tokens used"),
)
assert {m.code for m in METRICS} == set(BILLING_METERS), "every ledger meter has its Lago metric"

SUMMED = ("stt_seconds", "tts_characters", "intents_handled", "llm_tokens")


def transaction_id(event_id: Any, code: str) -> str:
    return f"{event_id}:{code}"


def events_for(usage: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(metric code, properties) for one usage row: its session, its device, and each non-zero sum."""
    device = str(usage["device_id"])
    found: list[tuple[str, dict[str, Any]]] = [("sessions", {"device_id": device}),
                                               ("active_devices", {"device_id": device})]
    for code in SUMMED:
        value = usage[code] or 0
        if value:
            # STT seconds to the millisecond, as the ledger meters them; text so no float rounds it.
            amount: Any = int(value)
            if code == "stt_seconds":
                amount = str(Decimal(str(value)).quantize(Decimal("0.001")))
            found.append((code, {code: amount, "device_id": device}))
    return found
