"""The billing pages through Flask's test client, on SQLite and PostgreSQL: the operator's revenue figures
are the ledger's (MRR/ARR per currency, usage revenue apart, outstanding, by plan, the trend), invoice and
plan actions do what they say and are audited, bad input (negative or absurd prices, unknown or changed
currencies, deleting a plan in use) is refused beside the field with the input kept and nothing stored;
the tenant sees its plan, usage bars in the colour and words of the thresholds, its issued invoices
(printable page, CSV with a formula guard) and changes its plan for the next period.

Usage is stored as ingest stores it (UsageRecord rows, one per device event) and invoices are made by
the ledger's own functions (close_period, finalize, mark_paid)."""

from __future__ import annotations

import csv
import html as markup
import io
import re
import uuid
from datetime import timedelta

import pytest

from cloud import admin
from cloud.billing import invoices as ledger
from cloud.billing.periods import Period
from cloud.billing.plans import create_plan
from cloud.billing.subscriptions import subscribe
from cloud.db import AuditEntry, Device, UsageRecord, utcnow
from cloud.db.billing import Invoice, Plan, Subscription
from cloud.scoping import PlatformScope, TenantScope
from tests.cloud.web.tenant.test_fixtures import Org, Portal, portal_fixture, post  # noqa: F401
from tests.cloud.web.tenant.test_fixtures import text as raw_text

NOW = utcnow()
THIS = Period.of(NOW)
LAST = THIS.previous()


def text(response) -> str:
    """What a person reads: tags dropped, entities (&#39;) read back as characters."""
    return markup.unescape(raw_text(response))


def _operator(portal: Portal):
    with portal.sessions() as db:
        op = admin.create_operator(db, f"op-{uuid.uuid4().hex[:6]}@example.com", "a-long-password-1")
        db.commit()
        op_id = op.id
    return portal.client(op_id), op_id


def _plan(portal: Portal, code: str, price: int = 2900, currency: str = "EUR", meters: dict | None = None,
          name: str | None = None) -> uuid.UUID:
    with portal.sessions() as db:
        plan = create_plan(db, {"name": name or code.title(), "code": code, "currency": currency,
                                "monthly_price": price, "meters": meters or {}})
        db.commit()
        return plan.id


def _device(portal: Portal, org: Org) -> uuid.UUID:
    with portal.sessions() as db:
        scope = TenantScope(db, org.id)
        device = scope.add(Device(project_id=org.project_id, name="Lobby",
                                  device_key=f"dk-{uuid.uuid4().hex[:10]}",
                                  paired_at=NOW - timedelta(days=400)))
        db.commit()
        return device.id


def _usage(portal: Portal, org: Org, device_id: uuid.UUID, when, **values) -> None:
    """One device event's usage, stored as ingest stores it."""
    with portal.sessions() as db:
        TenantScope(db, org.id).add(UsageRecord(device_id=device_id, project_id=org.project_id,
                                                event_id=uuid.uuid4(), ts=when, received_at=when, **values))
        db.commit()


def _subscribed(portal: Portal, org: Org, plan_id: uuid.UUID, at=None) -> None:
    with portal.sessions() as db:
        subscribe(db, org.id, plan_id, at=at or LAST.start + timedelta(days=2))
        db.commit()


def _close(portal: Portal, org: Org, then: str | None = None) -> uuid.UUID:
    """Close last period into its invoice; then finalize (and pay) it as asked."""
    with portal.sessions() as db:
        invoice = ledger.close_period(db, org.id, LAST)
        if then in ("finalized", "paid"):
            ledger.finalize(db, org.id, invoice.id)
        if then == "paid":
            ledger.mark_paid(db, org.id, invoice.id)
        db.commit()
        return invoice.id


def _invoice(portal: Portal, invoice_id: uuid.UUID) -> Invoice:
    with portal.sessions() as db:
        return PlatformScope(db).get(Invoice, invoice_id)


def _audit(portal: Portal, action: str) -> list[AuditEntry]:
    return portal.rows(AuditEntry, AuditEntry.action == action)


# --- plans --------------------------------------------------------------------------------------------

def test_bad_plans_are_refused_beside_their_fields_with_the_input_kept(portal):
    client, op_id = _operator(portal)
    bad = post(client, "/operator/plans", {
        "name": "Pro", "code": "Pro Plan", "currency": "EUR", "monthly_price": "-5",
        "tts_characters-included": "1000", "tts_characters-overage_price": "abc",
        "sessions-soft_limit": "10", "sessions-hard_limit": "5"})
    assert bad.status_code == 400
    html = bad.get_data(as_text=True)
    assert 'value="-5"' in html and 'value="abc"' in html and 'value="Pro Plan"' in html   # input kept
    assert 'aria-describedby="monthly_price-error"' in html
    page = text(bad)
    assert "Cannot be negative." in page
    assert "Give a number, such as 29.00." in page
    assert "Hard limit 5 is below soft limit 10." in page
    assert "Lower-case letters, digits" in page
    absurd = post(client, "/operator/plans", {"name": "Pro", "code": "pro", "currency": "EUR",
                                              "monthly_price": "2500000"})
    assert absurd.status_code == 400
    assert "At most 1,000,000.00 EUR a month: was an amount in cents typed as units?" in text(absurd)
    unknown = post(client, "/operator/plans", {"name": "Pro", "code": "pro", "currency": "EUX",
                                               "monthly_price": "29"})
    assert unknown.status_code == 400 and "Unknown currency 'EUX'" in text(unknown)
    none = post(client, "/operator/plans", {"name": "Pro", "code": "pro", "currency": "",
                                            "monthly_price": "29"})
    assert none.status_code == 400 and "A plan with a monthly price needs a currency." in text(none)
    cents = post(client, "/operator/plans", {"name": "Yen", "code": "yen", "currency": "JPY",
                                             "monthly_price": "2900.5"})
    assert cents.status_code == 400 and "JPY has 0 decimal places at most." in text(cents)
    assert portal.rows(Plan) == []

    made = post(client, "/operator/plans", {
        "name": "Pro", "code": "pro", "currency": "eur", "monthly_price": "29.00",
        "tts_characters-included": "1,000", "tts_characters-overage_price": "0.0005",
        "llm_tokens-hard_limit": "5000"}, follow_redirects=True)
    assert made.status_code == 200 and "Plan Pro (pro) is created" in text(made)
    (plan,) = portal.rows(Plan)
    assert (plan.currency, plan.monthly_price, plan.status) == ("EUR", 2900, "active")
    assert plan.meters["tts_characters"] == {"included": 1000, "overage_price": "0.05", "soft_limit": None,
                                             "hard_limit": None}
    assert plan.meters["llm_tokens"]["hard_limit"] == 5000
    assert set(plan.meters) == {"tts_characters", "llm_tokens"}
    listed = text(client.get("/operator/plans"))
    assert "29.00 EUR" in listed and "TTS characters: 1,000 included, then 0.0005 EUR each" in listed
    again = post(client, "/operator/plans", {"name": "Pro 2", "code": "pro", "currency": "EUR",
                                             "monthly_price": "1"})
    assert again.status_code == 400 and "A plan with code 'pro' already exists" in text(again)
    (entry,) = _audit(portal, "plan.create")
    assert entry.actor == f"user:{op_id}"


def test_a_plan_in_use_keeps_its_currency_is_not_deleted_and_can_be_archived(portal):
    client, _ = _operator(portal)
    org = portal.tenant("Busy Co")
    used = _plan(portal, "used")
    spare = _plan(portal, "spare")
    _subscribed(portal, org, used, at=NOW)
    form = client.get(f"/operator/plans/{used}")
    assert 'value="29.00"' in form.get_data(as_text=True) and "This plan is in use" in text(form)
    moved = post(client, f"/operator/plans/{used}", {"name": "Used", "code": "used", "currency": "USD",
                                                     "monthly_price": "31"})
    assert moved.status_code == 400
    assert "its currency cannot change" in text(moved) and 'value="31"' in moved.get_data(as_text=True)
    assert 'aria-describedby="currency-error"' in moved.get_data(as_text=True)
    with portal.sessions() as db:
        assert PlatformScope(db).get(Plan, used).currency == "EUR"
    edited = post(client, f"/operator/plans/{used}", {"name": "Used More", "code": "used", "currency": "EUR",
                                                      "monthly_price": "31"}, follow_redirects=True)
    assert "Plan Used More is saved" in text(edited)
    with portal.sessions() as db:
        assert PlatformScope(db).get(Plan, used).monthly_price == 3100

    refused = post(client, f"/operator/plans/{used}/delete", follow_redirects=True)
    page = text(refused)
    assert ("Used More was not deleted: plan used is in use by subscriptions or invoices: archive it instead"
            in page)
    assert f'id="plan-{used}" data-plan="used" class="op-refused"' in refused.get_data(as_text=True)
    assert len(portal.rows(Plan)) == 2 and not _audit(portal, "plan.delete")
    archived = post(client, f"/operator/plans/{used}/archive", follow_redirects=True)
    assert "Used More is archived" in text(archived)
    with portal.sessions() as db:
        assert PlatformScope(db).get(Plan, used).status == "archived"
    # An archived plan is offered to no tenant, and cannot be chosen by posting its id either.
    owner = portal.client(org.owner_id)
    assert "Used More" not in text(owner.get("/tenant/billing")).split("Change plan")[1]
    chosen = post(owner, "/tenant/billing/plan", {"plan_id": str(used)})
    assert chosen.status_code == 400 and "Choose one of the plans offered." in text(chosen)
    post(client, f"/operator/plans/{used}/unarchive")
    with portal.sessions() as db:
        assert PlatformScope(db).get(Plan, used).status == "active"
    gone = post(client, f"/operator/plans/{spare}/delete", follow_redirects=True)
    assert "Spare is deleted" in text(gone)
    assert [p.code for p in portal.rows(Plan)] == ["used"]
    assert [e.action for e in _audit(portal, "plan.delete")] == ["plan.delete"]
    assert client.get(f"/operator/plans/{uuid.uuid4()}").status_code == 404


# --- the operator's billing overview and invoices -------------------------------------------------------

def test_billing_overview_shows_the_ledgers_revenue_and_invoice_actions_are_audited(portal):
    client, op_id = _operator(portal)
    eur = _plan(portal, "team", 2900, meters={"tts_characters": {"included": 100, "overage_price": "2"}})
    usd = _plan(portal, "us", 5000, currency="USD")
    a, b, c = portal.tenant("Alpha"), portal.tenant("Beta"), portal.tenant("Gamma")
    for org, plan in ((a, eur), (b, eur), (c, usd)):
        _subscribed(portal, org, plan)
    device = _device(portal, a)
    _usage(portal, a, device, LAST.start + timedelta(days=3), tts_characters=130)   # 30 over: 60 cents
    paid = _close(portal, a, "paid")
    due = _close(portal, b, "finalized")
    draft = _close(portal, c)

    page = client.get("/operator/billing")
    assert page.status_code == 200
    html, shown = page.get_data(as_text=True), text(page)
    # MRR from plan prices per currency; ARR = 12 x MRR.
    assert re.search(r'data-stat="mrr-EUR"><div class="value">58.00 EUR', html)
    assert re.search(r'data-stat="arr-EUR"><div class="value">696.00 EUR', html)
    assert re.search(r'data-stat="mrr-USD"><div class="value">50.00 USD', html)
    # Usage revenue apart: Alpha's overage on its paid invoice.
    assert re.search(rf'data-stat="usage-last-EUR"><div class="value">0.60 EUR</div>'
                     rf'<div class="label">overage invoiced for {LAST.label}', html)
    # Outstanding: Beta's finalized invoice only (drafts are not issued, paid ones are settled).
    assert "29.00 EUR 1 finalized, unpaid invoice(s)" in shown
    by_plan = re.search(r'<tr data-plan="team">.*?</tr>', html, re.S).group(0)
    # Subscribers, MRR, invoiced in 12 months (Alpha's 29.60 paid + Beta's 29.00 due), of which usage.
    assert text_of(by_plan) == "Team 2 58.00 EUR 58.60 EUR 0.60 EUR"
    trend = re.search(r'<table data-table="trend">.*?</table>', html, re.S).group(0)
    assert f"{LAST.label} EUR 58.00 EUR 0.60 EUR 58.60 EUR" in text_of(trend)
    assert 'id="trend-data"' in html and "uPlot.iife.min.js" in html

    # Filters, with errors beside the fields.
    only_paid = client.get("/operator/billing?status=paid")
    rows = re.findall(r'<tr data-invoice="([^"]+)"', only_paid.get_data(as_text=True))
    assert rows == [str(paid)]
    beta = client.get(f"/operator/billing?tenant={b.slug}&period={LAST.label}")
    assert re.findall(r'<tr data-invoice="([^"]+)"', beta.get_data(as_text=True)) == [str(due)]
    bad = client.get("/operator/billing?period=2026-13&tenant=nobody&status=lost")
    assert bad.status_code == 400
    for message in ("Give a month as YYYY-MM.", "No tenant with this slug or id.",
                    "Choose a status from the list."):
        assert message in text(bad)
    assert 'value="nobody"' in bad.get_data(as_text=True)

    # Actions: finalize the draft, pay the due one, void; a move the ledger forbids changes nothing.
    back = "/operator/billing?status=draft"
    done = post(client, f"/operator/billing/invoices/{draft}/finalize", {"next": back})
    assert done.status_code == 302 and done.headers["Location"] == back
    assert _invoice(portal, draft).status == "finalized"
    post(client, f"/operator/billing/invoices/{due}/pay")
    assert _invoice(portal, due).status == "paid"
    post(client, f"/operator/billing/invoices/{draft}/void")
    assert _invoice(portal, draft).status == "voided"
    refused = post(client, f"/operator/billing/invoices/{draft}/pay", follow_redirects=True)
    assert "was not changed" in text(refused) and "cannot become paid" in text(refused)
    assert _invoice(portal, draft).status == "voided"
    for action in ("invoice.finalized", "invoice.paid", "invoice.voided"):
        assert any(e.actor == f"user:{op_id}" for e in _audit(portal, action)), action
    assert post(client, f"/operator/billing/invoices/{uuid.uuid4()}/pay").status_code == 404

    # The printable invoice and its CSV, for the operator too.
    shown = text(client.get(f"/operator/billing/invoices/{paid}"))
    assert "Invoice " + LAST.label in shown and "58.60 EUR" not in shown and "29.60 EUR" in shown
    lines = list(csv.DictReader(io.StringIO(client.get(f"/operator/billing/invoices/{paid}.csv")
                                            .get_data(as_text=True))))
    assert [(r["kind"], r["amount"]) for r in lines] == [("fee", "2900"), ("overage", "60")]


def text_of(html: str) -> str:
    return markup.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip())


def test_operator_puts_a_tenant_on_a_plan_and_changes_it_for_the_next_period(portal):
    client, op_id = _operator(portal)
    org = portal.tenant("Newcomer")
    basic, pro = _plan(portal, "basic", 900), _plan(portal, "pro", 4900)
    page = client.get(f"/operator/billing/tenants/{org.id}")
    assert "Newcomer is on no plan" in text(page)
    bad = post(client, f"/operator/billing/tenants/{org.id}/plan", {"plan_id": "not-a-plan"})
    assert bad.status_code == 400 and "Choose a plan from the list." in text(bad)
    assert portal.rows(Subscription) == []
    post(client, f"/operator/billing/tenants/{org.id}/plan", {"plan_id": str(basic)})
    (sub,) = portal.rows(Subscription)
    assert (sub.plan_id, sub.next_plan_id, sub.current_period_start) == (basic, None, THIS.start)
    moved = post(client, f"/operator/billing/tenants/{org.id}/plan", {"plan_id": str(pro)},
                 follow_redirects=True)
    assert f"Newcomer moves to Pro at its next period ({THIS.next().label})." in text(moved)
    (sub,) = portal.rows(Subscription)
    assert (sub.plan_id, sub.next_plan_id) == (basic, pro)
    shown = text(client.get(f"/operator/billing/tenants/{org.id}"))
    assert "Basic (9.00 EUR a month)" in shown and f"From {THIS.next().label} Pro" in shown
    found = client.get(f"/operator/billing/tenants?tenant={org.slug}")
    assert found.headers["Location"].endswith(f"/operator/billing/tenants/{org.id}")
    assert any(e.actor == f"user:{op_id}" for e in _audit(portal, "subscription.change_plan"))
    assert client.get(f"/operator/billing/tenants/{uuid.uuid4()}").status_code == 404


# --- the tenant's billing page ------------------------------------------------------------------------

METERED = {"tts_characters": {"included": 100},                    # 50 used: green
           "intents_handled": {"included": 10, "overage_price": "5"},  # 8 used: amber; 5 cents each over
           "stt_seconds": {"included": 10, "hard_limit": 1000},         # 12 used: red, under the hard limit
           "llm_tokens": {"included": 0, "hard_limit": 5}}              # 5 used: hard limit reached


def test_tenant_sees_plan_usage_bars_and_issued_invoices(portal):
    org = portal.tenant("Metered Co")
    plan = _plan(portal, "metered", 1900, meters=METERED, name="=HYPERLINK(\"http://x\")")
    _subscribed(portal, org, plan)
    device = _device(portal, org)
    _usage(portal, org, device, LAST.start + timedelta(days=1), intents_handled=13)
    invoice_id = _close(portal, org)          # a draft: not the tenant's to see yet
    now = utcnow()
    _usage(portal, org, device, now, tts_characters=50, intents_handled=8, stt_seconds=12.0, llm_tokens=5)
    owner = portal.client(org.owner_id)
    page = owner.get("/tenant/billing")
    assert page.status_code == 200
    html, shown = page.get_data(as_text=True), text(page)
    assert '=HYPERLINK("http://x") , 19.00 EUR a month' in shown
    colours = dict(re.findall(r'data-meter="(\w+)" data-colour="(\w+)"', html))
    assert colours == {"tts_characters": "green", "intents_handled": "amber", "stt_seconds": "red",
                       "llm_tokens": "green"}
    found = re.findall(r'<li class="meter-bar" data-meter="(\w+)".*?>(.*?)</li>', html, re.S)
    bar = {m: text_of(b) for m, b in found}
    assert "50 of 100 included (50 %)" in bar["tts_characters"]
    assert "Within the included units" in bar["tts_characters"]
    assert "8 of 10 included (80 %)" in bar["intents_handled"] and "80 % or more" in bar["intents_handled"]
    assert "12 of 10 included (120 %)" in bar["stt_seconds"]
    assert "All included units used" in bar["stt_seconds"]
    assert "hard limit 5 reached" in bar["llm_tokens"]
    assert 'id="plan-limit-banner"' in html and "LLM tokens: 5 used, hard limit 5." in shown
    assert str(invoice_id) not in html and "No invoices yet" in shown
    assert owner.get(f"/tenant/billing/invoices/{invoice_id}").status_code == 404
    assert owner.get(f"/tenant/billing/invoices/{invoice_id}.csv").status_code == 404
    # The dashboard shows the same bars and the hard-limit banner, so 80 % is seen before an invoice.
    home = owner.get("/tenant/").get_data(as_text=True)
    assert dict(re.findall(r'data-meter="(\w+)" data-colour="(\w+)"', home)) == colours
    assert 'id="plan-limit-banner"' in home

    with portal.sessions() as db:
        ledger.finalize(db, org.id, invoice_id)
        db.commit()
    listed = owner.get("/tenant/billing")
    assert f'<tr data-invoice="{invoice_id}">' in listed.get_data(as_text=True)
    assert f"{LAST.label} 19.15 EUR due CSV" in text(listed)
    printable = owner.get(f"/tenant/billing/invoices/{invoice_id}")
    assert printable.status_code == 200
    doc = text(printable)
    assert "Invoice " + LAST.label in doc
    assert "intents handled over the included units 3 0.05 EUR 0.15 EUR" in doc
    assert "Total 19.15 EUR" in doc and "@media print" not in doc
    download = owner.get(f"/tenant/billing/invoices/{invoice_id}.csv")
    assert download.mimetype == "text/csv" and "attachment" in download.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(download.get_data(as_text=True))))
    assert rows[0]["description"].startswith("'=HYPERLINK")          # a spreadsheet will not run it
    assert [(r["kind"], r["meter"], r["quantity"], r["amount"]) for r in rows] == [
        ("fee", "", "1", "1900"), ("overage", "intents_handled", "3", "15")]


def test_tenant_changes_plan_for_the_next_period_and_cancels(portal):
    org = portal.tenant("Changer")
    basic, pro = _plan(portal, "basic", 900), _plan(portal, "pro", 4900)
    owner = portal.client(org.owner_id)
    admin_id = portal.person(org, "tenant_admin")
    started = post(owner, "/tenant/billing/plan", {"plan_id": str(basic)}, follow_redirects=True)
    assert f"You are on Basic from this period ({THIS.label})." in text(started)
    bad = post(owner, "/tenant/billing/plan", {"plan_id": "nonsense"})
    assert bad.status_code == 400 and "Choose one of the plans offered." in text(bad)
    assert 'aria-describedby="plan_id-error"' in bad.get_data(as_text=True)
    by_admin = portal.client(admin_id)
    moved = post(by_admin, "/tenant/billing/plan", {"plan_id": str(pro)}, follow_redirects=True)
    following = THIS.next()
    assert f"You move to Pro on {following.label}-01" in text(moved)
    assert f"Pro from {following.start:%Y-%m-%d}" in text(moved)
    (sub,) = portal.rows(Subscription)
    assert (sub.plan_id, sub.next_plan_id) == (basic, pro)
    assert any(e.actor == f"user:{admin_id}" for e in _audit(portal, "subscription.change_plan"))
    kept = post(owner, "/tenant/billing/plan", {"plan_id": str(basic)}, follow_redirects=True)
    assert "No change is scheduled: you stay on Basic." in text(kept)
    assert portal.rows(Subscription)[0].next_plan_id is None
    cancelled = post(owner, "/tenant/billing/cancel", follow_redirects=True)
    assert "Your subscription ends with this period" in text(cancelled)
    assert "Keep my subscription" in text(cancelled)
    assert portal.rows(Subscription)[0].cancel_at_period_end
    post(owner, "/tenant/billing/resume")
    assert not portal.rows(Subscription)[0].cancel_at_period_end
    # Members have no billing pages: prices and invoices are for owners and admins.
    member = portal.client(portal.person(org, "tenant_member"))
    assert member.get("/tenant/billing").status_code == 403


@pytest.mark.parametrize("path", ["/tenant/billing/cancel", "/tenant/billing/resume"])
def test_cancel_or_resume_without_a_subscription_says_so(portal, path):
    org = portal.tenant("Planless")
    done = post(portal.client(org.owner_id), path, follow_redirects=True)
    assert "Nothing changed: the tenant has no active subscription." in text(done)


def test_absurd_numbers_in_the_plan_form_are_refused_beside_the_field(portal):
    client, _ = _operator(portal)
    huge = post(client, "/operator/plans", {"name": "Pro", "code": "pro", "currency": "EUR",
                                            "monthly_price": "1e999999",
                                            "tts_characters-overage_price": "9e999997"})
    assert huge.status_code == 400
    html = huge.get_data(as_text=True)
    assert 'value="1e999999"' in html and 'aria-describedby="monthly_price-error"' in html
    assert text(huge).count("That number is far too large for a price.") == 2
    assert portal.rows(Plan) == []


def test_a_plan_change_or_cancellation_waits_while_the_ended_period_is_not_closed(portal):
    client, _ = _operator(portal)
    org = portal.tenant("Waiting Co")
    basic, pro = _plan(portal, "basic", 900), _plan(portal, "pro", 4900)
    _subscribed(portal, org, basic)                  # in LAST, which has ended and is not closed yet
    waiting = f"the period {LAST.label} has ended and is being invoiced"
    owner = portal.client(org.owner_id)
    changed = post(owner, "/tenant/billing/plan", {"plan_id": str(pro)})
    assert changed.status_code == 400 and waiting in text(changed)
    cancelled = post(owner, "/tenant/billing/cancel", follow_redirects=True)
    assert f"Nothing changed: {waiting}" in text(cancelled)
    assigned = post(client, f"/operator/billing/tenants/{org.id}/plan", {"plan_id": str(pro)})
    assert assigned.status_code == 400 and waiting in text(assigned)
    (sub,) = portal.rows(Subscription)
    assert (sub.plan_id, sub.next_plan_id, sub.cancel_at_period_end) == (basic, None, False)
    _close(portal, org)                              # closed: the change is for the next period again
    moved = post(owner, "/tenant/billing/plan", {"plan_id": str(pro)}, follow_redirects=True)
    assert f"You move to Pro on {THIS.next().label}-01" in text(moved)
