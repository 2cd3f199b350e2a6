"""The one error type of the domain layer: an action refused, with what a client and a person need.

``status`` is the HTTP status the refusal maps to, ``code`` a stable snake_case word that API clients
and the portals branch on (it never changes once published), ``message`` the sentence for people and
``details`` structured facts (the meter and limit of a plan refusal, the fields of a bad input).

The API serialises it as ``{"error": {"code", "message", "details"}}`` (cloud/errors.py); the portals
show it beside a field, in a flash or as their error page (cloud/web/refusals.py). Nothing here knows
about Flask, so a CLI or a worker handles the same error the same way.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """An action refused, e.g. ``DomainError(409, "name_taken", "a project named 'Lab' already exists")``.

    ``headers`` carries what tells an HTTP client when to try again (``Retry-After``), nothing else.
    """

    def __init__(self, status: int, code: str, message: str, *, details: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.headers = details, headers

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code!r}, {self.message!r})"


def not_found(what: str) -> DomainError:
    """404 ``<what>_not_found``: also the answer for another tenant's ids, so they reveal nothing."""
    return DomainError(404, f"{what}_not_found", f"no such {what.replace('_', ' ')}")
