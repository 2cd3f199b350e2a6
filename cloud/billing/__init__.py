"""The built-in billing ledger: plans, subscriptions, metering, limits, invoices and revenue.

One module, one job:

- ``plans``          price lists (platform-owned), validated with pydantic; archive, never delete in use
- ``subscriptions``  a tenant on a plan; calendar-month periods in UTC; changes at the next period
- ``meter``          usage per tenant and period, a pure function of the distinct stored events
- ``limits``         80 % / 100 % thresholds (one webhook and audit entry each) and the hard limit
- ``invoices``       close a period into a draft, finalize, pay, void; outstanding totals; CSV
- ``revenue``        MRR, ARR, usage revenue and the 12-month trend

Money is always integer minor units with an ISO 4217 currency; nothing here touches floats for money.
The functions write in the caller's transaction and leave the commit to the caller, so a change,
its audit entry and its webhook commit (or roll back) together.
"""

from cloud.billing.errors import BillingError, CurrencyMismatch, PeriodNotOver, PlanInUse, PlanInvalid
from cloud.billing.periods import Period

__all__ = ["BillingError", "CurrencyMismatch", "Period", "PeriodNotOver", "PlanInUse", "PlanInvalid"]
