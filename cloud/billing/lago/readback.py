"""Invoices and MRR as Lago computed them, for the billing pages when Lago bills (read only)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from cloud.billing.lago.client import LagoGateway


@dataclass(frozen=True)
class LagoInvoice:
    lago_id: str
    number: str
    status: str
    payment_status: str
    currency: str
    total_amount_cents: int
    issuing_date: str | None


@dataclass(frozen=True)
class LagoMrr:
    month: str
    amount_cents: int
    currency: str


def invoices(gateway: LagoGateway, tenant_id: uuid.UUID) -> list[LagoInvoice]:
    """The tenant's invoices in Lago (its customer's external id is the tenant id), newest first."""
    found = [LagoInvoice(lago_id=i["lago_id"], number=i["number"], status=i["status"],
                         payment_status=i["payment_status"], currency=i["currency"],
                         total_amount_cents=int(i["total_amount_cents"]), issuing_date=i.get("issuing_date"))
             for i in gateway.invoices(str(tenant_id))]
    return sorted(found, key=lambda i: (i.issuing_date or "", i.number), reverse=True)


def mrr(gateway: LagoGateway, currency: str) -> list[LagoMrr]:
    """Monthly recurring revenue per month in one currency, as Lago's analytics report it."""
    return [LagoMrr(month=m["month"], amount_cents=int(m.get("amount_cents") or 0),
                    currency=m.get("currency") or currency) for m in gateway.mrr(currency)]
