"""Personal notification preferences.

Stored in ``users.preferences`` ({key: bool}); every change is also audited
(``account.preferences``, with the whole new set).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from cloud.admin import audit
from cloud.db import User
from cloud.scoping import PlatformScope

ACTION = "account.preferences"


@dataclass(frozen=True)
class Preference:
    key: str
    label: str
    hint: str
    default: bool


PREFERENCES = (
    Preference("device_offline", "A device goes offline",
               "An email when one of your organisation's devices stops reporting.", True),
    Preference("weekly_summary", "Weekly usage summary",
               "Sessions, failed intents and usage of the past week, every Monday.", False),
    Preference("security", "Security notices",
               "An email when your password changes or someone signs in to your account.", True),
)
OPERATOR_ONLY: tuple[Preference, ...] = (
    Preference("ingest_alerts", "Ingest alerts", "An email when ingest lag or rejects rise.", True),
)


def choices_for(user: User) -> tuple[Preference, ...]:
    return PREFERENCES + (OPERATOR_ONLY if user.role == "platform_admin" else ())


def load(db: Session, user: User) -> dict[str, bool]:
    """The person's preferences: their last saved choice, defaults for anything never chosen."""
    values = {p.key: p.default for p in choices_for(user)}
    saved = user.preferences or {}
    for key in values:
        if isinstance(saved.get(key), bool):
            values[key] = saved[key]
    return values


def save(db: Session, user: User, chosen: dict[str, bool], ip: str | None = None) -> dict[str, bool]:
    values = {p.key: bool(chosen.get(p.key, False)) for p in choices_for(user)}
    PlatformScope(db).flush()
    user.preferences = values
    audit(db, f"user:{user.id}", ACTION, target=f"user:{user.id}", tenant_id=user.tenant_id, ip=ip,
          preferences=values)
    return values
