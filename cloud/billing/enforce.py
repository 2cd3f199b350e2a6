"""Hard limits, applied: what the cloud refuses once a tenant reaches a meter's hard limit.

The rule (docs/billing.md, "Limits"): billing data is never dropped -- ingest stores and meters every
event whatever the limits say, and a device finishes what it started. What stops is NEW cloud-side
work that would consume more of the plan, until the next period or a plan change:

- ``speak`` commands (an announcement is a new voice session on the device: TTS characters, a
  session) are refused while any usage meter (everything but ``active_devices``) is at its hard limit;
- pairing a new device is refused while ``active_devices`` is at its hard limit, counting both the
  devices active this period and the devices currently paired (each paired device becomes an active
  one as soon as it is used).

A refusal is a ``PlanLimitReached``: the API answers it with HTTP 402 and the stable error code
``plan_limit_reached``, naming the meter, its hard limit and the usage; the portal shows the same
facts in a red banner (templates/billing/_limit_banner.html, fed by ``blocked_meters``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from cloud.billing.errors import BillingError
from cloud.billing.invoices import METER_NAMES
from cloud.billing.limits import LimitState, MeterState, limit_state
from cloud.billing.periods import Period
from cloud.db.base import utcnow
from cloud.db.devices import Device
from cloud.scoping import TenantScope

ERROR_CODE = "plan_limit_reached"
HTTP_STATUS = 402  # Payment Required: the plan, not the request, is what has to change
DEVICE_METER = "active_devices"


class PlanLimitReached(BillingError):
    """New work refused because the tenant's plan has reached a meter's hard limit."""

    code = ERROR_CODE
    status = HTTP_STATUS

    def __init__(self, meter: str, hard_limit: int, used: str, action: str) -> None:
        self.meter, self.hard_limit, self.used, self.action = meter, hard_limit, used, action
        super().__init__(f"{action} refused: the plan's hard limit for {METER_NAMES.get(meter, meter)} "
                         f"({meter}) is {hard_limit} this period and {used} are used; "
                         "it lifts at the next period or with a plan change")

    @property
    def details(self) -> dict[str, object]:
        return {"meter": self.meter, "hard_limit": self.hard_limit, "used": self.used}


@dataclass(frozen=True)
class Blocked:
    """One meter at its hard limit, as the banner shows it."""

    meter: str
    name: str
    used: str
    hard_limit: int


def _number(value: object) -> str:
    text = format(value, "f") if not isinstance(value, int) else str(value)
    return text.rstrip("0").rstrip(".") if "." in text else text


def state(db: Session, tenant_id: uuid.UUID, now: datetime | None = None) -> LimitState:
    return limit_state(db, tenant_id, Period.of(now or utcnow()))


def blocked_meters(db: Session, tenant_id: uuid.UUID, now: datetime | None = None) -> list[Blocked]:
    """The meters at their hard limit this period (empty: nothing refused), for the portal's banner."""
    found = []
    for m in state(db, tenant_id, now).meters.values():
        used = _device_usage(db, tenant_id, m) if m.meter == DEVICE_METER else m.used
        if m.hard_limit is not None and used >= m.hard_limit:
            found.append(Blocked(m.meter, METER_NAMES.get(m.meter, m.meter), _number(used), m.hard_limit))
    return sorted(found, key=lambda b: b.meter)


def _device_usage(db: Session, tenant_id: uuid.UUID, m: MeterState) -> int:
    paired = TenantScope(db, tenant_id).count(Device, Device.status == "paired")
    return max(int(m.used), paired)


def check_speak(db: Session, tenant_id: uuid.UUID, now: datetime | None = None) -> None:
    """Raise PlanLimitReached if a ``speak`` command would consume a meter at its hard limit."""
    for m in state(db, tenant_id, now).meters.values():
        if m.meter != DEVICE_METER and m.hard_reached:
            assert m.hard_limit is not None
            raise PlanLimitReached(m.meter, m.hard_limit, _number(m.used), "speak")


def check_new_device(db: Session, tenant_id: uuid.UUID, now: datetime | None = None) -> None:
    """Raise PlanLimitReached if pairing one more device would go past the active-devices hard limit."""
    m = state(db, tenant_id, now).meters.get(DEVICE_METER)
    if m is None or m.hard_limit is None:
        return
    used = _device_usage(db, tenant_id, m)
    if used >= m.hard_limit:
        raise PlanLimitReached(DEVICE_METER, m.hard_limit, str(used), "pairing a new device")
