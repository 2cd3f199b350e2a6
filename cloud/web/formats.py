"""How every portal writes a moment as "how long ago": one formatter, one style, so an operator and a
tenant reading the same device see the same words."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask

# Largest unit first: "3 days ago" rather than "72 h ago".
UNITS = ((86400, "day", "days"), (3600, "h", "h"), (60, "min", "min"), (1, "s", "s"))


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """``value`` as "4 min ago", "3 h ago", "1 day ago", "2 days ago", in the largest unit that fits;
    "never" for none, "just now" under a second or for a moment not yet reached (a clock a little
    ahead)."""
    if value is None:
        return "never"
    seconds = int(((now or datetime.now(UTC)) - value).total_seconds())
    if seconds < 1:
        return "just now"
    size, one, many = next(unit for unit in UNITS if seconds >= unit[0])
    n = seconds // size
    return f"{n} {one if n == 1 else many} ago"


def init_app(app: Flask) -> None:
    app.add_template_filter(ago, "ago")
