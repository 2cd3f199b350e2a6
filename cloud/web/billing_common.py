"""What the operator's and the tenant's billing pages share: money as people read and type it, usage bars,
an invoice's lines as a safe CSV, and the plan form's fields and errors.

The ledger (cloud/billing/) keeps money as integer minor units. People think in major units ("29.00
EUR"), and how many minor units make one depends on the currency (JPY none, EUR two, BHD three): Babel's
CLDR data says so, rather than a table kept here by hand.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal, DecimalException, InvalidOperation, Overflow
from typing import Any

from babel.numbers import format_decimal, get_currency_precision
from flask import Blueprint
from pydantic import ValidationError

from cloud.billing.currency import NO_CURRENCY, normalise_currency
from cloud.billing.invoices import CSV_COLUMNS, METER_NAMES
from cloud.billing.limits import LimitState
from cloud.billing.plans import MAX_MONTHLY_PRICE, PlanSpec, terms
from cloud.db.billing import BILLING_METERS, InvoiceLine, Plan

METER_UNITS = {"sessions": "sessions", "stt_seconds": "seconds", "tts_characters": "characters",
               "intents_handled": "intents", "active_devices": "devices", "llm_tokens": "tokens"}
METER_FIELDS = ("included", "overage_price", "soft_limit", "hard_limit")
TOO_LARGE_DIGITS = 20   # a typed amount of more than 10**20 minor units is no price at all
METER_ROWS = [(m, METER_NAMES[m][:1].upper() + METER_NAMES[m][1:], METER_UNITS[m]) for m in BILLING_METERS]


def precision(currency: str | None) -> int:
    """Digits after the decimal point in ``currency`` (2 when there is none: free plans)."""
    if not currency or currency == NO_CURRENCY:
        return 2
    return get_currency_precision(currency)


def major(minor: int | Decimal, currency: str | None) -> Decimal:
    return Decimal(minor).scaleb(-precision(currency))


def money(minor: int | Decimal | None, currency: str | None) -> str:
    """``2900, "EUR"`` -> ``"29.00 EUR"``: the code, not a symbol, since several currencies share "$"."""
    if minor is None:
        return "—"
    digits = precision(currency)
    text = format_decimal(major(minor, currency), format=f"#,##0.{'0' * digits}" if digits else "#,##0",
                          locale="en")
    return f"{text} {currency}" if currency and currency != NO_CURRENCY else text


def unit_price(value: str | Decimal, currency: str | None) -> str:
    """An overage price (minor units, maybe fractional) per unit, in major units, without trailing zeros."""
    amount = major(Decimal(str(value)), currency)
    text = format(amount.normalize(), "f") if amount else "0"
    return f"{text} {currency}" if currency and currency != NO_CURRENCY else text


def number(value: Any) -> str:
    """A quantity as people read it: ``1234.500`` -> ``1,234.5``."""
    amount = Decimal(str(value))
    text = format(amount.normalize(), ",f") if amount else "0"
    return text


def to_minor(text: str, currency: str | None, exact: bool = True) -> Decimal:
    """A typed amount in major units (``"29.00"``) as minor units; ValueError in words for a person.

    ``exact``: the result must be whole minor units (a monthly fee); overage prices may be fractions."""
    try:
        value = Decimal(text.strip().replace(",", "").replace("_", ""))
    except InvalidOperation:
        raise ValueError("Give a number, such as 29.00.") from None
    if not value.is_finite():
        raise ValueError("Give a number, such as 29.00.")
    try:
        # Decimal arithmetic raises its own errors (Overflow for "1e999999"), which are ArithmeticErrors,
        # not ValueErrors: unanswered they would be a 500 instead of a word beside the field.
        minor = value.scaleb(precision(currency))
        # Far beyond any plan's bounds (plans.py: 10**8 a month, 10**6 a unit): refused here, since
        # turning "9e999997" into an int takes the worker tens of seconds.
        if minor.adjusted() > TOO_LARGE_DIGITS:
            raise Overflow
        whole = minor == minor.to_integral_value()
    except DecimalException:
        raise ValueError("That number is far too large for a price.") from None
    if exact and not whole:
        raise ValueError(f"{currency or 'This currency'} has {precision(currency)} decimal places at most.")
    return Decimal(int(minor)) if whole else minor.normalize()


@dataclass(frozen=True)
class MeterBar:
    """One meter's usage against the plan, with the words that say what the colour says."""

    meter: str
    name: str
    used: str
    included: int
    percent: int | None       # rounded down, for the bar's width and text
    colour: str               # green / amber / red (cloud/billing/limits.py)
    status: str               # the colour in words
    hard_limit: int | None
    hard_reached: bool
    soft_limit: int | None
    soft_reached: bool


def bars(state: LimitState) -> list[MeterBar]:
    found = []
    for name in BILLING_METERS:
        m = state.meters.get(name)
        if m is None:
            continue
        percent = None if m.percent is None else int(m.percent)
        status = {"green": "within the included units", "amber": "80 % or more of the included units used",
                  "red": "all included units used"}[m.colour]
        if m.included <= 0:
            status = "no units included: every unit is billed" if m.used else "no units included"
        found.append(MeterBar(name, METER_NAMES[name], number(m.used), m.included, percent, m.colour, status,
                              m.hard_limit, m.hard_reached, m.soft_limit, m.soft_reached))
    return found


def _cell(value: Any) -> Any:
    """Keep a spreadsheet from reading a description as a formula (CSV injection), as the usage CSV does."""
    return f"'{value}" if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def lines_csv(lines: list[InvoiceLine]) -> str:
    """An invoice's lines as CSV: money in minor units, as stored, so a spreadsheet adds them exactly."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for line in lines:
        writer.writerow([line.position, line.kind, line.meter or "", _cell(line.description), line.quantity,
                         line.unit_price, line.amount, line.currency])
    return out.getvalue()


# --- the plan form ------------------------------------------------------------------------------------

def plan_form(plan: Plan | None) -> dict[str, str]:
    """The form's fields as text, filled from a plan (editing) or empty (a new one)."""
    if plan is None:
        return {"name": "", "code": "", "currency": "EUR", "monthly_price": "0",
                **{f"{m}-{f}": "" for m in BILLING_METERS for f in METER_FIELDS}}
    form = {"name": plan.name, "code": plan.code, "currency": plan.currency or "",
            "monthly_price": format(major(plan.monthly_price, plan.currency), "f")}
    plan_terms = terms(plan)
    for m in BILLING_METERS:
        t = plan_terms.get(m)
        form[f"{m}-included"] = str(t.included) if t else ""
        form[f"{m}-overage_price"] = format(major(t.overage_price, plan.currency).normalize(), "f") \
            if t and t.overage_price else ""
        form[f"{m}-soft_limit"] = "" if t is None or t.soft_limit is None else str(t.soft_limit)
        form[f"{m}-hard_limit"] = "" if t is None or t.hard_limit is None else str(t.hard_limit)
    return form


_MESSAGES = {"greater_than_equal": "Cannot be negative.", "int_parsing": "Give a whole number.",
             "int_from_float": "Give a whole number.", "decimal_max_places": "At most 6 decimal places.",
             "string_too_short": "Required.", "string_too_long": "At most 200 characters.",
             "string_pattern_mismatch": "Lower-case letters, digits, - and _ (up to 64), starting with a "
                                        "letter or digit."}


def _message(error: dict[str, Any], field: str, currency: str | None) -> str:
    kind = error["type"]
    if kind == "less_than_equal":
        if field == "monthly_price":
            return (f"At most {money(MAX_MONTHLY_PRICE, currency)} a month: was an amount in cents typed "
                    "as units?")
        return "That is far too large for a price or a number of units."
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    text = str(error["msg"]).removeprefix("Value error, ")
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def read_plan_form(data: Any) -> tuple[dict[str, str], dict[str, str], PlanSpec | None]:
    """The submitted plan form: its text (kept to show again), errors by field, and the valid spec."""
    form = {name: str(data.get(name, "")).strip() for name in plan_form(None)}
    errors: dict[str, str] = {}
    currency: str | None = None
    if form["currency"]:
        try:
            currency = normalise_currency(form["currency"])
            form["currency"] = currency
        except ValueError as exc:
            errors["currency"] = str(exc)[:1].upper() + str(exc)[1:] + "."
    spec: dict[str, Any] = {"name": form["name"], "code": form["code"], "currency": currency}
    try:
        spec["monthly_price"] = int(to_minor(form["monthly_price"] or "0", currency))
    except ValueError as exc:
        errors["monthly_price"] = str(exc)
    meters: dict[str, dict[str, Any]] = {}
    for m in BILLING_METERS:
        values = {f: form[f"{m}-{f}"] for f in METER_FIELDS}
        if not any(values.values()):
            continue
        terms_in: dict[str, Any] = {}
        for f, text in values.items():
            if not text:
                continue
            if f == "overage_price":
                try:
                    terms_in[f] = to_minor(text, currency, exact=False)
                except ValueError as exc:
                    errors[f"{m}-{f}"] = str(exc)
            else:
                terms_in[f] = text.replace(",", "").replace("_", "")
        meters[m] = terms_in
    spec["meters"] = meters
    try:
        checked = PlanSpec.model_validate(spec)
    except ValidationError as exc:
        for error in exc.errors():
            loc = [str(p) for p in error["loc"]]
            if loc[:1] == ["meters"] and len(loc) >= 3:
                field = f"{loc[1]}-{loc[2]}"
            elif loc[:1] == ["meters"] and len(loc) == 2:
                field = f"{loc[1]}-hard_limit"       # the limits-in-order check
            elif loc and loc[0] in form:
                field = loc[0]
            else:
                field = "currency"                   # the plan-wide check: charging needs a currency
            errors.setdefault(field, _message(error, field, currency))
        return form, errors, None
    return form, errors, (None if errors else checked)


def register(bp: Blueprint) -> None:
    bp.add_app_template_filter(money, "money")
    bp.add_app_template_filter(unit_price, "unit_price")
    bp.add_app_template_filter(number, "number")
