"""Billing periods: calendar months in UTC, so every tenant's period, invoice and report line up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, order=True)
class Period:
    """The calendar month starting at ``start`` (midnight UTC on the 1st); ``end`` is exclusive."""

    start: datetime

    def __post_init__(self) -> None:
        s = self.start
        if s.tzinfo is None or s.utcoffset() != UTC.utcoffset(None) or (s.day, s.hour, s.minute, s.second,
                                                                          s.microsecond) != (1, 0, 0, 0, 0):
            raise ValueError(f"a period starts at midnight UTC on the 1st of a month, not {s.isoformat()}")

    @classmethod
    def of(cls, moment: datetime) -> Period:
        """The period that contains ``moment`` (an aware datetime)."""
        if moment.tzinfo is None:
            raise ValueError("naive datetime refused: give a timezone (UTC)")
        m = moment.astimezone(UTC)
        return cls(datetime(m.year, m.month, 1, tzinfo=UTC))

    @classmethod
    def parse(cls, label: str) -> Period:
        """``"2026-03"`` -> March 2026."""
        year, month = (int(part) for part in label.split("-"))
        return cls(datetime(year, month, 1, tzinfo=UTC))

    @property
    def end(self) -> datetime:
        return self.next().start

    @property
    def label(self) -> str:
        return f"{self.start.year:04d}-{self.start.month:02d}"

    def next(self) -> Period:
        y, m = self.start.year, self.start.month
        return Period(datetime(y + m // 12, m % 12 + 1, 1, tzinfo=UTC))

    def previous(self) -> Period:
        y, m = self.start.year, self.start.month
        return Period(datetime(y - (m == 1), (m - 2) % 12 + 1, 1, tzinfo=UTC))

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end
