"""From speech to an invoice line, as people run it: a cloud started with `voxfleet cloud serve`, its
tenant on a plan that includes nothing (so every unit is overage), the real voice stack paired with
`voxfleet device pair`, commands spoken to it (Piper voice through wake word, VAD, Whisper, intent,
answer), and then the ledger: the metered sessions, STT seconds, TTS characters and intents handled
equal the usage rows the device sent, and the scheduler's closing step turns them into an
invoice with the plan fee and one overage line per meter, priced from those units. Then one
`voxfleet cloud billing run --once` pass with Lago configured (its stand-in, tests/stand_ins/lago.py)
pushes the plan and delivers the same units to Lago, each event under a transaction id made from the
usage row's event id, and Lago's usage fees for them equal the invoice's overage lines.

The voice stack's own cloud.json is put back afterwards, as tests/e2e/test_cloud_e2e.py does, so the other
voice tests keep their broker.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from decimal import ROUND_HALF_UP, Decimal

import pytest

from cloud.billing import Period
from cloud.billing.lago.metrics import transaction_id
from cloud.billing.meter import meter
from cloud.billing.plans import create_plan
from cloud.billing.scheduler import close_due
from cloud.billing.subscriptions import subscribe
from cloud.config import load_config
from cloud.db import Invoice, InvoiceLine, Subscription, Tenant, UsageRecord, VoiceSession
from cloud.db.billing import BILLING_METERS
from cloud.db.session import make_engine
from cloud.scoping import PlatformScope, TenantScope, session_factory
from device.voice import samples
from tests.conftest import VOXFLEET
from tests.e2e.test_cloud_e2e import cloud as cloud_fixture  # noqa: F401  (the cloud of test_cloud_e2e)
from tests.e2e.test_cloud_e2e import sync_state
from tests.stand_ins.lago import LagoStandIn
from tests.waiting import wait_until

pytestmark = pytest.mark.voice

# Stateless questions (the voice stack is shared with tests that count timers).
COMMANDS = ["What time is it?", "What day is it today?"]
# Nothing included: every unit of every meter is overage, each at its own price (minor units, EUR).
PRICES = {"sessions": Decimal("5"), "stt_seconds": Decimal("0.5"), "tts_characters": Decimal("0.01"),
          "intents_handled": Decimal("2")}
FEE = 2900
PLAN = {"name": "Pay as you speak", "code": "pay-as-you-speak", "currency": "EUR", "monthly_price": FEE,
        "meters": {m: {"included": 0, "overage_price": str(p)} for m, p in PRICES.items()}}


def _amount(quantity: Decimal, price: Decimal) -> int:
    return int((quantity * price).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _text(value: Decimal) -> str:
    return format(value.normalize(), "f")


@pytest.mark.parametrize("cloud_fixture", ["embedded"], indirect=True)   # one stack, one cloud
def test_spoken_commands_become_metered_units_and_an_invoice_with_overage(voice_stack, piper_voice,
                                                                          cloud_fixture, tmp_path):  # noqa: F811
    stack, cloud = voice_stack, cloud_fixture
    sessions = session_factory(make_engine(load_config(environ=cloud.env).database_url))
    with sessions() as db:  # the operator puts the tenant on the plan
        tenant_id = PlatformScope(db).first(Tenant, Tenant.slug == "acme-hotels").id
        subscribe(db, tenant_id, create_plan(db, PLAN).id)
        db.commit()

    pairing_file = stack.paths.root / "cloud.json"
    original = pairing_file.read_text()
    wavs = [samples.synthesize(piper_voice, text, tmp_path / "wav").path for text in COMMANDS]
    try:
        pair = subprocess.Popen([VOXFLEET, "device", "pair", "--cloud", cloud.url, "--data-dir",
                                 str(stack.paths.root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        code = pair.stdout.readline().strip()
        claimed = cloud.call("POST", "/pairing/claim", json={"code": code, "project_id": cloud.project_id,
                                                             "name": "Front desk"})
        assert claimed.status_code == 201, claimed.text
        _, err = pair.communicate(timeout=60)
        assert pair.returncode == 0, err
        device_id = uuid.UUID(claimed.json()["id"])
        broker_url = json.loads(pairing_file.read_text())["broker_url"]
        wait_until(lambda: sync_state(stack.paths.root).get("broker_url") == broker_url
                   and sync_state(stack.paths.root).get("connected"), 60, "the agent to connect to the cloud")

        spoken = stack.listen(wavs)
        assert len(spoken) == len(COMMANDS) and all(s["answer"] for s in spoken)

        def usage_rows():
            with sessions() as db:
                scope = TenantScope(db, tenant_id)
                rows = scope.all(UsageRecord, UsageRecord.device_id == device_id)
                ended = scope.count(VoiceSession, VoiceSession.device_id == device_id,
                                    VoiceSession.end_state.is_not(None))
            return rows if len(rows) == len(COMMANDS) and ended == len(COMMANDS) else None

        rows = wait_until(usage_rows, 90, "the device's usage rows in the cloud")
    finally:
        pairing_file.write_text(original)  # back to this machine's Mosquitto for the other tests
        wait_until(lambda: sync_state(stack.paths.root).get("connected")
                   and sync_state(stack.paths.root).get("broker_url") == json.loads(original)["broker_url"],
                   60, "the agent to reconnect to the original broker")

    # The units the device sent, row by row, and what the ledger metered from them.
    [period] = {Period.of(r.ts) for r in rows}
    sent = {"sessions": Decimal(len(COMMANDS)),
            "stt_seconds": Decimal(sum(round(r.stt_seconds * 1000) for r in rows)) / 1000,
            "tts_characters": Decimal(sum(r.tts_characters for r in rows)),
            "intents_handled": Decimal(sum(r.intents_handled for r in rows))}
    assert sent["intents_handled"] == len(COMMANDS)                     # each question was answered
    assert sent["tts_characters"] == sum(len(s["answer"]) for s in spoken)   # the answers it spoke
    assert sent["stt_seconds"] > 0
    with sessions() as db:
        usage = meter(db, tenant_id, period)
    assert {m: usage.quantity(m) for m in PRICES} == sent
    assert usage.active_devices == 1

    # Closing the period makes the invoice from those units: the scheduler's closing step, run as it
    # runs at the period's end (the CLI's `close-periods --at` refuses a time still to come).
    done, failed = close_due(sessions, period.end)
    assert (tenant_id, period.label) in done and failed == 0
    with sessions() as db:
        scope = TenantScope(db, tenant_id)
        invoice = scope.first(Invoice, Invoice.period_start == period.start)
        lines = scope.all(InvoiceLine, InvoiceLine.invoice_id == invoice.id, order_by=InvoiceLine.position)
    wanted = [("fee", None, "1", FEE)] + [("overage", m, _text(sent[m]), _amount(sent[m], p))
                                          for m, p in PRICES.items()]
    assert [(li.kind, li.meter, li.quantity, li.amount) for li in lines] == wanted
    assert (invoice.status, invoice.currency, invoice.total) == ("draft", "EUR", sum(w[3] for w in wanted))

    # The same units in Lago (its stand-in): one `voxfleet cloud billing run --once` pass with Lago
    # configured, as production runs the scheduler beside the web workers.
    lago = LagoStandIn().start()
    try:
        env = {**cloud.env, "VOXFLEET_LAGO_API_URL": lago.url, "VOXFLEET_LAGO_API_KEY": lago.api_key}
        done = subprocess.run([VOXFLEET, "cloud", "billing", "run", "--once"], env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        with sessions() as db:
            subscription_id = str(TenantScope(db, tenant_id).first(Subscription).id)
        events = lago.events_of(subscription_id)
    finally:
        lago.stop()
    assert lago.subscriptions[subscription_id]["plan_code"] == PLAN["code"]
    # Every event is one of the device's usage rows, under a transaction id made from its event id
    # (cloud/billing/lago/metrics.py: one Lago event per meter a row uses), and every row is there.
    made_from = {transaction_id(r.event_id, m): r.event_id for r in rows for m in BILLING_METERS}
    assert all(e.transaction_id in made_from for e in events)
    assert {made_from[e.transaction_id] for e in events if e.code == "sessions"} == {r.event_id for r in rows}
    in_lago = {"sessions": Decimal(sum(e.code == "sessions" for e in events)),
               **{m: sum((Decimal(str(e.properties[m])) for e in events if e.code == m), Decimal(0))
                  for m in ("stt_seconds", "tts_characters", "intents_handled")}}
    assert in_lago == sent
    # The plan went to Lago with the ledger's prices, so Lago's usage fees are the invoice's overage lines.
    assert lago.plans[PLAN["code"]]["amount_cents"] == FEE
    fees = {m: int((a * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
            for m, a in lago.charges_of(subscription_id).items()}
    assert fees == {li.meter: li.amount for li in lines if li.kind == "overage"}
