"""The one place that talks to Lago, through lago-python-client; every failure becomes one of our errors.

Why a wrapper: the client raises ``LagoApiError`` for HTTP answers and lets httpx's errors (timeouts,
refused or dropped connections) through unchanged. The syncer must tell three cases apart, because
each has its own policy (docs/billing.md, "Lago"):

- ``LagoUnavailable``: 5xx, 429, a timeout, no connection. Nothing is marked; the queue stays as it
  is and is retried later with a backoff.
- ``LagoAuthError``: 401/403. The API key is wrong or revoked: nothing can succeed until an operator
  fixes the configuration, so the sync stops with that message.
- ``LagoRefused``: any other 4xx. Lago understood the request and refused it; ``details`` holds
  Lago's ``error_details`` (for a batch of events: per event index).

The API key is given to the client only; no message here ever contains it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models.billable_metric import BillableMetric
from lago_python_client.models.customer import Customer
from lago_python_client.models.event import BatchEvent, Event
from lago_python_client.models.plan import Plan
from lago_python_client.models.subscription import Subscription

MAX_BATCH = 100          # Lago's limit on events per /events/batch call
PAGE = 100


class LagoError(RuntimeError):
    """Lago could not do what was asked; the message says what and why, without the API key."""


class LagoUnavailable(LagoError):
    """Lago did not answer usefully (5xx, 429, timeout, connection): try again later."""


class LagoAuthError(LagoError):
    """Lago refused the API key (401/403)."""


class LagoRefused(LagoError):
    """Lago refused the request (4xx other than 401/403/429); ``details`` is its error_details."""

    def __init__(self, message: str, status: int, code: str | None, details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.details = details


def _describe(exc: LagoApiError) -> tuple[str | None, Any, str]:
    body = exc.response if isinstance(exc.response, Mapping) else {}
    code = body.get("code") if isinstance(body.get("code"), str) else None
    details = body.get("error_details")
    text = f"HTTP {exc.status_code}" + (f" {code}" if code else f" {exc.detail}" if exc.detail else "")
    return code, details, text


def _translate(what: str, exc: Exception) -> LagoError:
    if isinstance(exc, LagoApiError):
        code, details, text = _describe(exc)
        status = int(exc.status_code)
        if status in (401, 403):
            return LagoAuthError(f"{what}: Lago refused the API key ({text}); check lago_api_key")
        if status == 429 or status >= 500:
            return LagoUnavailable(f"{what}: Lago is unavailable ({text})")
        return LagoRefused(f"{what}: Lago refused it ({text})", status, code, details)
    if isinstance(exc, httpx.TimeoutException):
        return LagoUnavailable(f"{what}: Lago did not answer in time ({type(exc).__name__})")
    if isinstance(exc, httpx.HTTPError):
        return LagoUnavailable(f"{what}: Lago could not be reached ({type(exc).__name__})")
    # An answer the client could not read (a proxy's HTML error page, a cut body): Lago is not healthy.
    return LagoUnavailable(f"{what}: Lago's answer could not be read ({type(exc).__name__})")


class LagoGateway:
    """The Lago calls the adapter makes, and nothing else (the stand-in in tests/ serves exactly these)."""

    def __init__(self, api_url: str, api_key: str) -> None:
        # 429 is ours to retry (with the queue's backoff), not a sleep inside the client.
        self._client = Client(api_key=api_key, api_url=api_url.rstrip("/") + "/", retry_on_rate_limit=False,
                              max_retries=0)
        self.api_url = api_url

    def __repr__(self) -> str:  # never the key
        return f"LagoGateway({self.api_url!r})"

    def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LagoError:
            raise
        except Exception as exc:  # translated: every failure of a Lago call is one of three kinds
            raise _translate(what, exc) from None

    # --- billable metrics ---------------------------------------------------------------------

    def metric_ids(self) -> dict[str, str]:
        """Lago's id of each billable metric, by code (a plan's charges name metrics by these ids)."""
        ids: dict[str, str] = {}
        page = 1
        while True:
            found = self._call("listing billable metrics", self._client.billable_metrics.find_all,
                               {"page": page, "per_page": PAGE})
            ids |= {m.code: m.lago_id for m in found["billable_metrics"]}
            meta = found.get("meta") or {}
            if not meta.get("next_page"):
                return ids
            page = int(meta["next_page"])

    def create_metric(self, code: str, name: str, aggregation_type: str, field_name: str | None,
                      description: str) -> str:
        """POST /billable_metrics; returns Lago's id of the new metric."""
        made = self._call(f"creating billable metric {code}", self._client.billable_metrics.create,
                          BillableMetric(code=code, name=name, aggregation_type=aggregation_type,
                                         field_name=field_name, description=description, recurring=False))
        return str(made.lago_id)

    # --- plans ---------------------------------------------------------------------------------------

    def create_plan(self, plan: Mapping[str, Any]) -> None:
        """POST /plans; Lago answers 422 ``value_already_exist`` on ``code`` when it has the code."""
        self._call(f"creating plan {plan['code']}", self._client.plans.create, Plan(**plan))

    def update_plan(self, code: str, plan: Mapping[str, Any]) -> bool:
        """PUT /plans/{code} (the body may carry a new code); False when Lago has no plan ``code``."""
        try:
            self._call(f"updating plan {code}", self._client.plans.update, Plan(**plan), code)
        except LagoRefused as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # --- customers and subscriptions ------------------------------------------------------------

    def upsert_customer(self, external_id: str, name: str, currency: str | None) -> None:
        """Lago's POST /customers creates the customer or updates the one with this external id."""
        self._call(f"saving customer {external_id}", self._client.customers.create,
                   Customer(external_id=external_id, name=name, currency=currency))

    def create_subscription(self, external_customer_id: str, external_id: str, plan_code: str,
                            subscription_at: str) -> None:
        """POST /subscriptions; with an existing external id and another plan it changes the plan."""
        subscription = Subscription(external_customer_id=external_customer_id, external_id=external_id,
                                    plan_code=plan_code, billing_time="calendar",
                                    subscription_at=subscription_at)
        self._call(f"saving subscription {external_id} on plan {plan_code}",
                   self._client.subscriptions.create, subscription)

    def terminate_subscription(self, external_id: str) -> bool:
        """DELETE /subscriptions/{external_id}; False when Lago has no such (active) subscription."""
        try:
            self._call(f"terminating subscription {external_id}", self._client.subscriptions.destroy,
                       external_id)
        except LagoRefused as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # --- events ---------------------------------------------------------------------------------

    def send_events(self, events: Sequence[Mapping[str, Any]]) -> None:
        """POST /events/batch (at most MAX_BATCH). Raises LagoRefused with per-index details on 422."""
        if not 0 < len(events) <= MAX_BATCH:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH} events, not {len(events)}")
        batch = BatchEvent(events=[Event(**event) for event in events])
        self._call(f"sending {len(events)} event(s)", self._client.events.batch_create, batch)

    # --- read back ------------------------------------------------------------------------------

    def invoices(self, external_customer_id: str, page: int = 1) -> list[dict[str, Any]]:
        found = self._call(f"reading invoices of {external_customer_id}", self._client.invoices.find_all,
                           {"external_customer_id": external_customer_id, "page": page, "per_page": PAGE})
        return [invoice.dict() for invoice in found["invoices"]]

    def mrr(self, currency: str) -> list[dict[str, Any]]:
        found = self._call(f"reading MRR in {currency}", self._client.mrrs.find_all, {"currency": currency})
        return [entry.dict() for entry in found["mrrs"]]
