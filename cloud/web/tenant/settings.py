"""Settings: the organisation's profile, its notification preferences and its webhooks (create with the
secret shown once, edit, test delivery with the receiver's response code, delivery log).

Notification preferences are kept as audit entries (``tenant.notifications``; the newest one is in
force) because the schema has no settings column yet: that keeps a history of who changed them for
free and needs no migration. A ``tenants.settings`` column is the cleaner home (asked of the lead).
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for

from cloud import services
from cloud.db import Webhook
from cloud.db.webhooks import WEBHOOK_EVENTS
from cloud.domain import webhooks
from cloud.domain.errors import DomainError
from cloud.web.access import TENANT_ADMINS, allow, scope
from cloud.web.refusals import sentence
from cloud.web.tenant.blueprint import bp
from cloud.web.tenant.common import caller, owned

NOTIFICATIONS = {
    "device_offline": "Email when a device goes offline for more than 10 minutes",
    "failed_intents": "Email a daily summary when intents fail",
    "usage_threshold": "Email when usage crosses 80% of the plan",
    "weekly_report": "Email a weekly fleet report",
}
RECIPIENTS = {"owners": "Owners", "admins": "Owners and admins"}
DEFAULT_NOTIFICATIONS = {
    "device_offline": True,
    "usage_threshold": True,
    "failed_intents": False,
    "weekly_report": False,
    "recipients": "owners",
}
EVENT_LABELS = {
    "session.completed": "A session completed",
    "device.online": "A device came online",
    "device.offline": "A device went offline",
    "usage.threshold": "Usage crossed a threshold",
}
assert set(EVENT_LABELS) == set(WEBHOOK_EVENTS)
DELIVERIES_SHOWN = 25


def notification_prefs() -> dict[str, Any]:
    """The organisation's choice (tenants.settings["notifications"]), defaults for the rest."""
    saved = (scope().tenant().settings or {}).get("notifications") or {}
    prefs = dict(DEFAULT_NOTIFICATIONS)
    prefs.update({k: v for k, v in saved.items() if k in DEFAULT_NOTIFICATIONS})
    return prefs


def _page(
    profile: dict | None = None,
    hook_form: dict | None = None,
    errors: dict | None = None,
    new_hook: Webhook | None = None,
    status: int = 200,
):
    current = scope()
    tenant = current.tenant()
    hooks = current.all(Webhook, order_by=[Webhook.created_at, Webhook.id])
    response = render_template(
        "tenant/settings.html",
        org=tenant,
        profile=profile or {"name": tenant.name},
        prefs=notification_prefs(),
        notifications=NOTIFICATIONS,
        recipients=RECIPIENTS,
        hooks=hooks,
        event_labels=EVENT_LABELS,
        hook_form=hook_form or {"url": "", "description": "", "events": ["session.completed"]},
        errors=errors or {},
        new_hook=new_hook,
    )
    return response, status, ({"Cache-Control": "no-store"} if new_hook else {})


@bp.get("/settings")
@allow(*TENANT_ADMINS)
def settings():
    return _page()


@bp.post("/settings/profile")
@allow(*TENANT_ADMINS)
def save_profile():
    name = request.form.get("name", "").strip()
    if not name or len(name) > 200:
        return _page(
            profile={"name": name}, errors={"org_name": "Give a name of 1 to 200 characters."}, status=400
        )
    tenant = scope().tenant()
    if name != tenant.name:
        caller().audit("tenant.renamed", target=f"tenant:{tenant.id}", old=tenant.name, new=name)
        tenant.name = name
        scope().commit()
    flash("Organisation profile saved.")
    return redirect(url_for("tenant.settings"))


@bp.post("/settings/notifications")
@allow(*TENANT_ADMINS)
def save_notifications():
    recipients = request.form.get("recipients", "owners")
    if recipients not in RECIPIENTS:
        return _page(errors={"recipients": "Choose who receives them."}, status=400)
    prefs = {key: request.form.get(key) == "on" for key in NOTIFICATIONS}
    prefs["recipients"] = recipients
    tenant = scope().tenant()
    tenant.settings = {**(tenant.settings or {}), "notifications": prefs}
    caller().audit("tenant.notifications", target=f"tenant:{scope().tenant_id}", **prefs)
    scope().commit()
    flash("Notification preferences saved.")
    return redirect(url_for("tenant.settings") + "#notifications")


def _hook_form(errors: dict[str, str]) -> dict[str, Any]:
    form = {
        "url": request.form.get("url", "").strip(),
        "description": request.form.get("description", "").strip(),
        "events": [e for e in request.form.getlist("events") if e in WEBHOOK_EVENTS],
        "active": request.form.get("active", "on") == "on",
    }
    if not form["url"].startswith(("http://", "https://")) or len(form["url"]) > 2000:
        errors["url"] = "Give the full address the events are posted to, starting with https://."
    if not form["events"]:
        errors["events"] = "Choose at least one event."
    if len(form["description"]) > 500:
        errors["description"] = "At most 500 characters."
    return form


@bp.post("/webhooks")
@allow(*TENANT_ADMINS)
def create_webhook():
    errors: dict[str, str] = {}
    form = _hook_form(errors)
    if not errors:
        try:
            row = webhooks.create_webhook(caller(), form["url"], form["events"], form["description"],
                                          allow_private=services.webhooks_allow_private())
        except DomainError as exc:
            scope().db.rollback()
            errors["url"] = sentence(exc)
        else:
            return _page(new_hook=row, status=201)
    return _page(hook_form=form, errors=errors, status=400)


@bp.get("/webhooks/<uuid:webhook_id>")
@allow(*TENANT_ADMINS)
def webhook(
    webhook_id,
    form: dict | None = None,
    errors: dict | None = None,
    test: dict | None = None,
    status: int = 200,
):
    row = owned(Webhook, webhook_id)
    deliveries = webhooks.delivery_page(scope(), row, None, DELIVERIES_SHOWN, None)
    return render_template(
        "tenant/webhook.html",
        hook=row,
        deliveries=deliveries.rows,
        more=deliveries.next_cursor is not None,
        event_labels=EVENT_LABELS,
        errors=errors or {},
        test=test,
        form=form
        or {"url": row.url, "description": row.description, "events": row.events, "active": row.active},
    ), status


@bp.post("/webhooks/<uuid:webhook_id>")
@allow(*TENANT_ADMINS)
def update_webhook(webhook_id):
    row = owned(Webhook, webhook_id)
    errors: dict[str, str] = {}
    form = _hook_form(errors)
    form["active"] = request.form.get("active") == "on"
    if not errors:
        try:
            webhooks.update_webhook(caller(), row, {k: form[k] for k in webhooks.CHANGEABLE},
                                    allow_private=services.webhooks_allow_private())
        except DomainError as exc:
            scope().db.rollback()
            errors["url"] = sentence(exc)
        else:
            flash("Webhook saved.")
            return redirect(url_for("tenant.webhook", webhook_id=row.id))
    return webhook(webhook_id, form, errors, status=400)


@bp.post("/webhooks/<uuid:webhook_id>/test")
@allow(*TENANT_ADMINS)
def test_webhook(webhook_id):
    """Send one signed test delivery now and show what the receiver answered."""
    delivery, attempt = webhooks.send_test_delivery(caller(), owned(Webhook, webhook_id),
                                                    allow_private=services.webhooks_allow_private())
    return webhook(
        webhook_id,
        test={"code": attempt.status, "ok": attempt.ok, "error": attempt.error, "delivery": delivery},
    )


@bp.post("/webhooks/<uuid:webhook_id>/delete")
@allow(*TENANT_ADMINS)
def delete_webhook(webhook_id):
    webhooks.delete_webhook(caller(), owned(Webhook, webhook_id))
    flash("Webhook deleted; no more events are sent to it.")
    return redirect(url_for("tenant.settings") + "#webhooks")
