"""The billing pages in Debian's Chromium against a live cloud: an operator makes a plan (a negative price is
refused beside its field first), puts a tenant on it and finalizes an invoice; the tenant sees its usage
bars in the thresholds' colours (usage stored through ingest's own validate-and-write path, from the
protocol's event batches), opens the printable invoice and downloads its lines as CSV; the page is
readable on a phone. Every page is saved to docs/screenshots/."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta

from cloud import admin
from cloud.billing import invoices as ledger
from cloud.billing.periods import Period
from cloud.billing.subscriptions import subscribe
from cloud.db import Device, Project, utcnow
from cloud.db.billing import Invoice, Plan
from cloud.ingest.store import write_cycle
from cloud.ingest.validate import Inbound, check
from cloud.scoping import PlatformScope
from protocol import messages
from protocol.ids import new_event_id
from protocol.topics import Channel, topic
from tests.cloud.browser import screenshot, sign_in

PHONE = {"width": 390, "height": 844}


def _device(cloud, slug: str) -> str:
    """A paired device of the tenant (paired long ago, so its clock is trusted for any recent month)."""
    key = f"dev-{uuid.uuid4().hex[:10]}"
    with cloud.sessions() as db:
        tenant = admin.find_tenant(db, slug)
        scope = PlatformScope(db).for_tenant(tenant.id)
        default = scope.first(Project)
        scope.add(Device(project_id=default.id, name="Front desk", device_key=key, status="paired",
                         paired_at=utcnow() - timedelta(days=400)))
        db.commit()
    return key


def _ingest(cloud, device_key: str, when, **usage) -> None:
    """One usage event, as the device's outbox sends it, through ingest's validate and write steps."""
    event = {"event_id": str(new_event_id()), "seq": 1, "type": "usage", "ts": when.isoformat(), **usage}
    payload = messages.encode(messages.EventBatch(events=[event]))
    now = utcnow()
    accepted = check(Inbound(topic(device_key, Channel.EVENTS), payload, mid=1, qos=1, received_at=now))
    with cloud.sessions() as db:
        report = write_cycle(db, [accepted], now)
        assert not report.rejected, report.rejected
        db.commit()


def test_operator_makes_and_assigns_a_plan_and_the_tenant_sees_its_bill(live_cloud, browser, chromium):
    tenant_context = chromium.new_context(viewport={"width": 1280, "height": 900})  # the owner's own cookies
    try:
        _story(live_cloud, browser, tenant_context)
    finally:
        tenant_context.close()


def _story(live_cloud, browser, tenant_context) -> None:
    operator = live_cloud.operator()
    slug, owner = live_cloud.tenant("Harbour Hotels")
    history_slug, _ = live_cloud.tenant("Lighthouse Inns")
    this = Period.of(utcnow())

    page = browser.new_page()
    sign_in(page, live_cloud, operator)
    page.get_by_role("link", name="Plans").click()
    page.get_by_role("link", name="New plan").click()
    page.get_by_label("Name").fill("Fleet Pro")
    page.get_by_label("Code").fill("fleet-pro")
    page.get_by_label("Currency (ISO 4217)").fill("EUR")
    page.get_by_label("Monthly price").fill("-10")
    page.get_by_label("TTS characters: included").fill("100")
    page.get_by_role("button", name="Create the plan").click()
    error = page.locator("#monthly_price-error")
    assert error.inner_text() == "Cannot be negative."
    assert page.get_by_label("Monthly price").input_value() == "-10"          # input kept
    assert page.get_by_label("TTS characters: included").input_value() == "100"
    screenshot(page, "operator-plan-error")
    page.get_by_label("Monthly price").fill("49.00")
    page.get_by_label("Intents handled: included").fill("10")
    page.get_by_label("Intents handled: overage price").fill("0.05")
    page.get_by_label("STT seconds: included").fill("10")
    page.get_by_label("STT seconds: hard limit").fill("1000")
    page.get_by_role("button", name="Create the plan").click()
    assert "Plan Fleet Pro (fleet-pro) is created" in page.locator(".flash").inner_text()
    row = page.locator('tr[data-plan="fleet-pro"]')
    assert "49.00 EUR" in row.inner_text()
    assert "Intents handled: 10 included, then 0.05 EUR each" in row.inner_text()
    screenshot(page, "operator-plans")

    # A tenant with a year of history on the plan (the ledger closes its periods), for the revenue page.
    with live_cloud.sessions() as db:
        plan_id = PlatformScope(db).first(Plan, Plan.code == "fleet-pro").id
        history = admin.find_tenant(db, history_slug).id
        start = this
        for _ in range(4):
            start = start.previous()
        subscribe(db, history, plan_id, at=start.start)
        db.commit()
    history_device = _device(live_cloud, history_slug)
    period = start
    while period < this:
        # 30 intents in its first two months (20 over: 1.00 EUR of usage each), 10 afterwards.
        intents = 30 if period in (start, start.next()) else 10
        _ingest(live_cloud, history_device, period.start + timedelta(days=3), intents_handled=intents)
        with live_cloud.sessions() as db:
            invoice = ledger.close_period(db, history, period)
            ledger.finalize(db, history, invoice.id)
            if period.next() < this:
                ledger.mark_paid(db, history, invoice.id)
            db.commit()
        period = period.next()

    # The operator puts Harbour Hotels on the plan from the billing page.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Billing").click()
    page.get_by_label("Tenant slug or id").first.fill(slug)
    page.get_by_role("button", name="Open its billing").click()
    assert "Harbour Hotels is on no plan" in page.inner_text("main")
    page.get_by_label("Put on a plan").select_option(label="Fleet Pro (fleet-pro, 49.00 EUR a month)")
    page.get_by_role("button", name="Save the plan").click()
    assert f"Harbour Hotels is on Fleet Pro from this period ({this.label})." in page.inner_text("main")
    assert "Fleet Pro (49.00 EUR a month)" in page.locator("[data-current-plan]").inner_text()
    screenshot(page, "operator-billing-tenant")

    # Usage this period, through ingest: TTS 50 of 100 (green), intents 8 of 10 (amber), STT 12 of 10 (red).
    device = _device(live_cloud, slug)
    _ingest(live_cloud, device, utcnow() - timedelta(seconds=5), tts_characters=50, intents_handled=8,
            stt_seconds=12.0, wake_words=1)
    tenant_page = tenant_context.new_page()
    sign_in(tenant_page, live_cloud, owner)
    tenant_page.get_by_role("navigation", name="Main").get_by_role("link", name="Billing").click()
    bars = {m: tenant_page.locator(f'.meter-bar[data-meter="{m}"]')
            for m in ("tts_characters", "intents_handled", "stt_seconds")}
    assert {m: b.get_attribute("data-colour") for m, b in bars.items()} == {
        "tts_characters": "green", "intents_handled": "amber", "stt_seconds": "red"}
    assert "50 of 100 included (50 %)" in bars["tts_characters"].inner_text()
    assert "80 % or more of the included units used" in bars["intents_handled"].inner_text()
    assert "All included units used" in bars["stt_seconds"].inner_text()
    # The colours are the ones a person sees (app.css), not only class names.
    fills = {m: b.locator(".bar > span").evaluate("e => getComputedStyle(e).backgroundColor")
             for m, b in bars.items()}
    assert fills == {"tts_characters": "rgb(29, 122, 70)", "intents_handled": "rgb(169, 100, 0)",
                     "stt_seconds": "rgb(180, 35, 24)"}
    screenshot(tenant_page, "tenant-billing")
    phone = tenant_context.new_page()
    phone.set_viewport_size(PHONE)
    phone.goto(tenant_page.url)
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert phone.locator('.meter-bar[data-meter="stt_seconds"]').is_visible()
    screenshot(phone, "tenant-billing-phone")

    # The month ends (the ledger is told the time); the operator finalizes the draft from the billing page.
    with live_cloud.sessions() as db:
        tenant_id = admin.find_tenant(db, slug).id
        draft = ledger.close_period(db, tenant_id, this, now=this.end)
        db.commit()
        draft_id = draft.id
    page.goto(f"{live_cloud.url}/operator/billing?status=draft")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f'tr[data-invoice="{draft_id}"]').get_by_role("button", name="Finalize").click()
    assert "is finalized" in page.locator(".flash").inner_text()
    with live_cloud.sessions() as db:
        assert PlatformScope(db).get(Invoice, draft_id).status == "finalized"
    page.goto(f"{live_cloud.url}/operator/billing")
    page.wait_for_function("document.querySelectorAll('.chart canvas').length > 0")
    assert "MRR" in page.inner_text("main") and "98.00 EUR" in page.inner_text("[data-stat='mrr-EUR']")
    screenshot(page, "operator-billing")

    # The tenant opens the printable invoice and downloads its lines.
    tenant_page.goto(f"{live_cloud.url}/tenant/billing")
    tenant_page.locator(f'tr[data-invoice="{draft_id}"]').get_by_role("link", name=this.label).click()
    assert "Total 49.00 EUR" in tenant_page.locator("tfoot").inner_text().replace("\t", " ")
    screenshot(tenant_page, "tenant-invoice")
    tenant_page.emulate_media(media="print")
    assert not tenant_page.locator("header.top").is_visible()
    assert not tenant_page.get_by_role("link", name="Download the lines (CSV)").is_visible()
    screenshot(tenant_page, "tenant-invoice-print")
    tenant_page.emulate_media(media="screen")
    with tenant_page.expect_download() as info:
        tenant_page.get_by_role("link", name="Download the lines (CSV)").click()
    with open(info.value.path()) as downloaded:
        rows = list(csv.DictReader(io.StringIO(downloaded.read())))
    assert [(r["kind"], r["description"], r["amount"], r["currency"]) for r in rows] == [
        ("fee", f"Fleet Pro ({this.label})", "4900", "EUR")]
