"""Billing's errors: each says what was wrong in words an operator can act on."""

from __future__ import annotations

from cloud.db.billing import InvoiceLocked


class BillingError(ValueError):
    """A billing request that cannot be carried out as asked."""


class PlanInvalid(BillingError):
    """A plan's terms failed validation (negative or absurd price, unknown currency, ...)."""


class PlanInUse(BillingError):
    """The plan is referenced by a subscription or an invoice: archive it instead of deleting it."""


class CurrencyMismatch(BillingError):
    """Amounts in two currencies were about to be added together."""


class PeriodNotOver(BillingError):
    """A period was asked to close before it ended."""


__all__ = ["BillingError", "CurrencyMismatch", "InvoiceLocked", "PeriodNotOver", "PlanInUse", "PlanInvalid"]
