"""A STAND-IN for a Lago server, for tests only (Lago itself cannot be installed here).

It serves just the endpoints cloud/billing/lago/ calls through lago-python-client, under ``/api/v1``,
with the shapes Lago documents, Bearer authentication (401 for any other key) and Lago's error body
``{"status", "error", "code", "error_details"}``:

- ``GET/POST /billable_metrics`` (a code exists once: 422 ``value_already_exist``)
- ``POST /customers`` (creates or updates by ``external_id``)
- ``POST /subscriptions`` (customer and plan must exist: 404 ``customer_not_found``/``plan_not_found``;
  an existing ``external_id`` with another plan code changes its plan) and
  ``DELETE /subscriptions/{external_id}`` (terminates; 404 ``not_found`` when none is active)
- ``POST /events/batch``: at most 100 events; validated as a whole and stored all or nothing, as Lago's
  PostgreSQL store does. A ``transaction_id`` already stored for the subscription (or twice in the
  batch) is ``value_already_exist``, an unknown metric code ``metric_not_found``; any error answers 422
  with ``error_details`` keyed by the event's index and stores none of the batch.
- ``POST /plans`` (a code exists once: 422 ``value_already_exist``) and ``PUT /plans/{code}`` (404
  ``plan_not_found``; the body may rename the code), validated as Lago documents them: name, code,
  interval, ``amount_cents`` >= 0 and ``amount_currency`` mandatory; each charge names an existing
  billable metric by its ``billable_metric_id`` (404 ``billable_metrics_not_found``) with the
  ``standard`` model (``amount``) or the ``graduated`` one (tiers from 0, each ``from_value`` one above
  the previous ``to_value``, the last open-ended).
- ``GET /invoices?external_customer_id=`` and ``GET /analytics/mrr?currency=`` (MRR per month from
  the subscriptions' plans). A test may also make a plan by hand (``add_plan``), as an operator does in
  Lago's UI; invoices are made by the test (``issue_invoice``), as Lago's own billing run would.

``charges_of`` prices a subscription's stored events with its plan's charges the way Lago's standard
and graduated models do (units in a tier ``from..to``: ``to - max(from, 1) + 1`` when the units pass
``to``, else ``units - from + 1``, or ``units`` in a tier from 0), so a test can compare Lago's usage
fees with the ledger's overage lines.

Faults for the tests (``fault``, for the next ``fault_times`` requests or until cleared): ``"400"``
(a refusal of the whole request, without per-event details), ``"500"``,
``"503"``, ``"hang"`` (answers nothing until past the client's timeout), ``"drop"`` (closes the
connection without answering) and ``"drop_after_store"`` (stores the batch, then closes the
connection: Lago has the events, the client never heard so).
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.conftest import free_port

PREFIX = "/api/v1"
MAX_BATCH = 100
HANG_S = 15.0  # longer than lago-python-client's timeouts (5 s for event batches, 10 s otherwise)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def _decimal(value: Any) -> Decimal | None:
    try:
        found = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return found if found.is_finite() and found >= 0 else None


def _valid_ranges(ranges: Any) -> bool:
    """Lago's rules for graduated tiers: from 0, contiguous (from = previous to + 1), the last open."""
    if not isinstance(ranges, list) or not ranges or ranges[0].get("from_value") != 0:
        return False
    for before, after in zip(ranges, ranges[1:], strict=False):
        if before.get("to_value") is None or after.get("from_value") != before["to_value"] + 1:
            return False
    if ranges[-1].get("to_value") is not None:
        return False
    return all(_decimal(r.get("per_unit_amount")) is not None and _decimal(r.get("flat_amount")) is not None
               for r in ranges)


def _aggregate(metric: dict[str, Any], events: list[StoredEvent]) -> Decimal:
    kind, name = metric["aggregation_type"], metric.get("field_name")
    if kind == "count_agg":
        return Decimal(len(events))
    if kind == "unique_count_agg":
        return Decimal(len({e.properties.get(name) for e in events}))
    return sum((Decimal(str(e.properties.get(name) or 0)) for e in events), Decimal(0))


def _price(model: str, properties: dict[str, Any], units: Decimal) -> Decimal:
    if model == "standard":
        return units * Decimal(properties["amount"])
    total = Decimal(0)
    for tier in properties["graduated_ranges"]:
        start, end = Decimal(tier["from_value"]), tier.get("to_value")
        if units > 0:
            total += Decimal(tier["flat_amount"])
        if end is not None and units >= end:
            in_tier = Decimal(end) - max(start, Decimal(1)) + 1
        else:
            in_tier = units if start == 0 else units - start + 1
        total += max(in_tier, Decimal(0)) * Decimal(tier["per_unit_amount"])
        if end is None or end >= units:
            break
    return total


@dataclass
class StoredEvent:
    transaction_id: str
    external_subscription_id: str
    code: str
    timestamp: str
    properties: dict[str, Any]
    lago_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: str = field(default_factory=_now)

    def representation(self) -> dict[str, Any]:
        return {"lago_id": self.lago_id, "transaction_id": self.transaction_id, "lago_customer_id": None,
                "lago_subscription_id": None, "external_subscription_id": self.external_subscription_id,
                "code": self.code, "timestamp": self.timestamp, "precise_total_amount_cents": None,
                "properties": self.properties, "created_at": self.created_at}


class LagoStandIn:
    """One stand-in Lago organisation, reachable at ``url`` with ``api_key``."""

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key or secrets.token_urlsafe(24)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.metrics: dict[str, dict[str, Any]] = {}
        self.metric_creates = 0
        self.plans: dict[str, dict[str, Any]] = {}
        self.plan_writes = 0
        self.customers: dict[str, dict[str, Any]] = {}
        self.customer_writes = 0
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.events: dict[tuple[str, str], StoredEvent] = {}
        self.batch_sizes: list[int] = []      # every /events/batch call, as received
        self.invoices: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, int]] = []
        self.fault: str | None = None
        self.fault_times: int | None = None
        self.fault_after = 0
        self.stored = 0                       # events stored, ever: a double-billed event counts twice
        self._released = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="lago-stand-in", daemon=True)

    # --- set-up by tests -----------------------------------------------------------------------

    def start(self) -> LagoStandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        self.server.shutdown()
        self.server.server_close()

    def set_fault(self, fault: str | None, times: int | None = None, after: int = 0) -> None:
        """Answer the next ``times`` requests (all, if None) with ``fault``, once ``after`` have passed."""
        assert fault in (None, "400", "500", "503", "hang", "drop", "drop_after_store"), fault
        with self.lock:
            self.fault, self.fault_times, self.fault_after = fault, times, after
        if fault is None:
            self._released.set()
        else:
            self._released.clear()

    def add_plan(self, code: str, amount_cents: int, currency: str, name: str | None = None) -> None:
        """A plan made by hand in Lago's UI, without charges."""
        self.plans[code] = {"lago_id": str(uuid.uuid4()), "code": code, "name": name or code,
                            "amount_cents": amount_cents, "amount_currency": currency, "interval": "monthly",
                            "pay_in_advance": False, "charges": [], "created_at": _now()}

    def charges_of(self, external_subscription_id: str) -> dict[str, Decimal]:
        """Per billable metric code: what the subscription's plan charges for its stored events (major
        units, unrounded), priced as Lago's standard and graduated models do."""
        with self.lock:
            sub = self.subscriptions[external_subscription_id]
            plan = self.plans[sub["plan_code"]]
            events = [e for e in self.events.values()
                      if e.external_subscription_id == external_subscription_id]
            found = {}
            for charge in plan["charges"]:
                metric = self.metrics[charge["billable_metric_code"]]
                units = _aggregate(metric, [e for e in events if e.code == metric["code"]])
                found[metric["code"]] = _price(charge["charge_model"], charge["properties"], units)
            return found

    def issue_invoice(self, external_customer_id: str, total_amount_cents: int, currency: str,
                      issuing_date: str) -> dict[str, Any]:
        """What Lago's billing run does at a period's end (the stand-in does not price usage itself)."""
        invoice = {"lago_id": str(uuid.uuid4()), "number": f"LAGO-{len(self.invoices) + 1:04d}",
                   "external_customer_id": external_customer_id, "issuing_date": issuing_date,
                   "payment_overdue": False, "net_payment_term": 0, "invoice_type": "subscription",
                   "version_number": 4, "status": "finalized", "payment_status": "pending",
                   "currency": currency, "fees_amount_cents": total_amount_cents, "coupons_amount_cents": 0,
                   "taxes_amount_cents": 0, "credit_notes_amount_cents": 0,
                   "progressive_billing_credit_amount_cents": 0,
                   "sub_total_excluding_taxes_amount_cents": total_amount_cents,
                   "sub_total_including_taxes_amount_cents": total_amount_cents,
                   "total_amount_cents": total_amount_cents, "total_due_amount_cents": total_amount_cents,
                   "prepaid_credit_amount_cents": 0}
        self.invoices.append(invoice)
        return invoice

    def events_of(self, external_subscription_id: str | None = None) -> list[StoredEvent]:
        with self.lock:
            return [e for e in self.events.values()
                    if external_subscription_id in (None, e.external_subscription_id)]

    # --- the API -------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # no request log (it would carry ids into logs)
                pass

            def do_GET(self) -> None:
                stand_in._serve(self, "GET")

            def do_POST(self) -> None:
                stand_in._serve(self, "POST")

            def do_PUT(self) -> None:
                stand_in._serve(self, "PUT")

            def do_DELETE(self) -> None:
                stand_in._serve(self, "DELETE")

        return Handler

    def _take_fault(self) -> str | None:
        with self.lock:
            fault = self.fault
            if fault is not None and self.fault_after > 0:
                self.fault_after -= 1
                return None
            if fault is not None and self.fault_times is not None:
                self.fault_times -= 1
                if self.fault_times <= 0:
                    self.fault, self.fault_times = None, None
            return fault

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        parsed = urlparse(handler.path)
        path, query = parsed.path, {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        if handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._answer(handler, method, path, 401, {"status": 401, "error": "Unauthorized"})
        fault = self._take_fault()
        if fault in ("400", "500", "503"):
            status = int(fault)
            phrase = {400: "Bad Request", 500: "Internal Server Error", 503: "Service Unavailable"}[status]
            return self._answer(handler, method, path, status, {"status": status, "error": phrase})
        if fault == "hang":
            self._released.wait(HANG_S)
            return self._drop(handler, method, path)
        if fault == "drop":
            return self._drop(handler, method, path)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return self._answer(handler, method, path, 400, {"status": 400, "error": "Bad Request"})
        status, answer = self._route(method, path, query, body)
        if fault == "drop_after_store":
            return self._drop(handler, method, path)
        self._answer(handler, method, path, status, answer)

    def _answer(self, handler: BaseHTTPRequestHandler, method: str, path: str, status: int,
                body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.requests.append((method, path, status))
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _drop(self, handler: BaseHTTPRequestHandler, method: str, path: str) -> None:
        self.requests.append((method, path, 0))
        handler.close_connection = True
        with contextlib.suppress(OSError):
            handler.connection.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _error(status: int, code: str, details: Any = None) -> tuple[int, dict[str, Any]]:
        phrases = {400: "Bad Request", 404: "Not Found", 422: "Unprocessable Entity"}
        body: dict[str, Any] = {"status": status, "error": phrases[status], "code": code}
        if details is not None:
            body["error_details"] = details
        return status, body

    def _route(self, method: str, path: str, query: dict[str, str],
               body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not path.startswith(PREFIX + "/"):
            return self._error(404, "not_found")
        route = path[len(PREFIX):]
        with self.lock:
            if route == "/billable_metrics" and method == "GET":
                return self._list("billable_metrics", list(self.metrics.values()), query)
            if route == "/billable_metrics" and method == "POST":
                return self._create_metric(body.get("billable_metric") or {})
            if route == "/plans" and method == "POST":
                return self._save_plan(None, body.get("plan") or {})
            match = re.fullmatch(r"/plans/([^/]+)", route)
            if match and method == "PUT":
                return self._save_plan(match.group(1), body.get("plan") or {})
            if route == "/customers" and method == "POST":
                return self._upsert_customer(body.get("customer") or {})
            if route == "/subscriptions" and method == "POST":
                return self._create_subscription(body.get("subscription") or {})
            match = re.fullmatch(r"/subscriptions/([^/]+)", route)
            if match and method == "DELETE":
                return self._terminate(match.group(1))
            if route == "/events/batch" and method == "POST":
                return self._batch(body.get("events"))
            if route == "/invoices" and method == "GET":
                wanted = query.get("external_customer_id")
                found = [i for i in self.invoices if wanted in (None, i["external_customer_id"])]
                return self._list("invoices", found, query)
            if route == "/analytics/mrr" and method == "GET":
                return 200, {"mrrs": self._mrr(query.get("currency"))}
        return self._error(404, "not_found")

    @staticmethod
    def _list(key: str, items: list[dict[str, Any]], query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        page, per_page = max(1, int(query.get("page", 1))), max(1, int(query.get("per_page", 20)))
        pages = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        meta = {"current_page": page, "next_page": page + 1 if page < pages else None,
                "prev_page": page - 1 if page > 1 else None, "total_pages": pages, "total_count": len(items)}
        return 200, {key: chunk, "meta": meta}

    def _create_metric(self, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        code = data.get("code")
        if not code or not data.get("name") or not data.get("aggregation_type"):
            return self._error(422, "validation_errors", {"code": ["value_is_mandatory"]})
        if code in self.metrics:
            return self._error(422, "validation_errors", {"code": ["value_already_exist"]})
        self.metric_creates += 1
        metric = {"lago_id": str(uuid.uuid4()), "name": data["name"], "code": code,
                  "description": data.get("description"), "recurring": bool(data.get("recurring")),
                  "aggregation_type": data["aggregation_type"], "field_name": data.get("field_name"),
                  "created_at": _now(), "filters": []}
        self.metrics[code] = metric
        return 200, {"billable_metric": metric}

    def _plan_problems(self, data: dict[str, Any]) -> dict[str, list[str]]:
        problems: dict[str, list[str]] = {}
        for key in ("name", "code", "interval", "amount_currency"):
            if not data.get(key):
                problems[key] = ["value_is_mandatory"]
        if not isinstance(data.get("amount_cents"), int) or data["amount_cents"] < 0:
            problems["amount_cents"] = ["value_is_invalid"]
        for charge in data.get("charges") or []:
            model, props = charge.get("charge_model"), charge.get("properties") or {}
            if model == "standard":
                valid = _decimal(props.get("amount")) is not None
            elif model == "graduated":
                valid = _valid_ranges(props.get("graduated_ranges"))
            else:
                valid = False
            if not valid:
                problems.setdefault("charges", []).append("invalid_charge")
        return problems

    def _save_plan(self, code: str | None, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if code is not None and code not in self.plans:
            return self._error(404, "plan_not_found")
        problems = self._plan_problems(data)
        if problems:
            return self._error(422, "validation_errors", problems)
        ids = {m["lago_id"]: m["code"] for m in self.metrics.values()}
        if any(c.get("billable_metric_id") not in ids for c in data.get("charges") or []):
            return self._error(404, "billable_metrics_not_found")
        if data["code"] in self.plans and data["code"] != code:
            return self._error(422, "validation_errors", {"code": ["value_already_exist"]})
        old = self.plans.pop(code) if code is not None else None
        charges = [{"lago_id": str(uuid.uuid4()), "lago_billable_metric_id": c["billable_metric_id"],
                    "billable_metric_code": ids[c["billable_metric_id"]], "charge_model": c["charge_model"],
                    "pay_in_advance": bool(c.get("pay_in_advance")), "properties": c.get("properties") or {}}
                   for c in data.get("charges") or []]
        plan = {"lago_id": old["lago_id"] if old else str(uuid.uuid4()), "code": data["code"],
                "name": data["name"], "amount_cents": data["amount_cents"],
                "amount_currency": data["amount_currency"], "interval": data["interval"],
                "pay_in_advance": bool(data.get("pay_in_advance")), "charges": charges,
                "created_at": old["created_at"] if old else _now()}
        self.plans[plan["code"]] = plan
        self.plan_writes += 1
        if code is not None and code != plan["code"]:
            for sub in self.subscriptions.values():
                if sub["plan_code"] == code:
                    sub["plan_code"] = plan["code"]
        return 200, {"plan": plan}

    def _upsert_customer(self, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        external_id = data.get("external_id")
        if not external_id:
            return self._error(422, "validation_errors", {"external_id": ["value_is_mandatory"]})
        self.customer_writes += 1
        customer = self.customers.get(external_id) or {
            "lago_id": str(uuid.uuid4()), "external_id": external_id, "created_at": _now(),
            "applicable_timezone": "UTC"}
        customer.update({k: v for k, v in data.items() if k in ("name", "currency", "email")})
        customer["updated_at"] = _now()
        self.customers[external_id] = customer
        return 200, {"customer": customer}

    def _create_subscription(self, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if data.get("external_customer_id") not in self.customers:
            return self._error(404, "customer_not_found")
        plan = self.plans.get(data.get("plan_code") or "")
        if plan is None:
            return self._error(404, "plan_not_found")
        external_id = data.get("external_id") or str(uuid.uuid4())
        sub = self.subscriptions.get(external_id)
        if sub is not None and sub["status"] == "active":
            if sub["external_customer_id"] != data["external_customer_id"]:
                return self._error(422, "validation_errors", {"external_id": ["value_already_exist"]})
            sub["plan_code"] = plan["code"]   # a plan change
            sub["plan_history"].append(plan["code"])
        else:
            sub = {"lago_id": str(uuid.uuid4()), "external_id": external_id,
                   "external_customer_id": data["external_customer_id"], "plan_code": plan["code"],
                   "status": "active", "billing_time": data.get("billing_time") or "calendar",
                   "subscription_at": data.get("subscription_at") or _now(),
                   "started_at": data.get("subscription_at") or _now(), "terminated_at": None,
                   "created_at": _now(), "plan_history": [plan["code"]]}
            self.subscriptions[external_id] = sub
        return 200, {"subscription": self._subscription(sub)}

    @staticmethod
    def _subscription(sub: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in sub.items() if k != "plan_history"}

    def _terminate(self, external_id: str) -> tuple[int, dict[str, Any]]:
        sub = self.subscriptions.get(external_id)
        if sub is None or sub["status"] != "active":
            return self._error(404, "subscription_not_found")
        sub["status"], sub["terminated_at"] = "terminated", _now()
        return 200, {"subscription": self._subscription(sub)}

    def _batch(self, events: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(events, list) or not events:
            return self._error(400, "bad_request")
        self.batch_sizes.append(len(events))
        if len(events) > MAX_BATCH:
            return self._error(422, "validation_errors", {"events": ["too_many_events"]})
        errors: dict[str, dict[str, list[str]]] = {}
        seen: set[tuple[str, str]] = set()
        for index, event in enumerate(events):
            problems: dict[str, list[str]] = {}
            if not isinstance(event, dict) or not event.get("transaction_id"):
                problems["transaction_id"] = ["value_is_mandatory"]
                errors[str(index)] = problems
                continue
            key = (str(event.get("external_subscription_id")), str(event["transaction_id"]))
            if key in self.events or key in seen:
                problems["transaction_id"] = ["value_already_exist"]
            seen.add(key)
            if event.get("code") not in self.metrics:
                problems["code"] = ["metric_not_found"]
            try:
                float(event.get("timestamp"))
            except (TypeError, ValueError):
                problems["timestamp"] = ["invalid_format"]
            if problems:
                errors[str(index)] = problems
        if errors:
            return self._error(422, "validation_errors", errors)
        stored = []
        for event in events:
            item = StoredEvent(transaction_id=str(event["transaction_id"]),
                               external_subscription_id=str(event["external_subscription_id"]),
                               code=event["code"], timestamp=str(event["timestamp"]),
                               properties=dict(event.get("properties") or {}))
            self.events[(item.external_subscription_id, item.transaction_id)] = item
            self.stored += 1
            stored.append(item.representation())
        return 200, {"events": stored}

    def _mrr(self, currency: str | None) -> list[dict[str, Any]]:
        """Per month of the last twelve: the monthly amounts of the subscriptions active in it."""
        today = datetime.now(UTC)
        months = []
        first = datetime(today.year, today.month, 1, tzinfo=UTC)
        for _ in range(12):
            months.append(first)
            first = (first - timedelta(days=1)).replace(day=1)
        found = []
        for start in reversed(months):
            end = (start + timedelta(days=32)).replace(day=1)
            total = 0
            for sub in self.subscriptions.values():
                plan = self.plans[sub["plan_code"]]
                if currency and plan["amount_currency"] != currency:
                    continue
                began = _parse(sub["started_at"])
                ended = _parse(sub["terminated_at"]) if sub["terminated_at"] else None
                if began < end and (not ended or ended >= start):
                    total += plan["amount_cents"]
            found.append({"month": start.isoformat().replace("+00:00", "Z"), "amount_cents": total,
                          "currency": currency})
        return found
