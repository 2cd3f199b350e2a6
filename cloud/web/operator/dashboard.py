"""The operator's dashboard and system monitoring pages."""

from __future__ import annotations

from flask import current_app, render_template, request

from cloud.db import utcnow
from cloud.web.access import OPERATOR, allow, platform
from cloud.web.operator import queries as q
from cloud.web.operator.blueprint import (
    bp,
    page_number,
)

# --- dashboard -------------------------------------------------------------------------------------

@bp.get("/")
@allow(*OPERATOR)
def dashboard() -> str:
    return render_template("operator/dashboard.html", d=q.dashboard(platform()), now=utcnow())


# --- system monitoring -----------------------------------------------------------------------------

@bp.get("/system")
@allow(*OPERATOR)
def system() -> str:
    scope = platform()
    stale_only = request.args.get("show") == "stale"
    workers = q.ingest_workers(scope)
    devices, paired, stale = q.device_health(scope, stale_only=stale_only, page=page_number())
    config = current_app.extensions["voxfleet.config"]
    return render_template(
        "operator/system.html", database=q.check_database(scope),
        broker=q.check_broker(config, current_app.extensions.get("voxfleet.broker")),
        workers=workers, ingest=q.ingest_summary(workers), unknown_fields=q.unknown_fields(workers),
        devices=devices, paired=paired, stale=stale,
        stale_only=stale_only, services=[label for label, _ in q.VOICE_SERVICES],
        stale_after=q.STALE_HEARTBEAT, worker_stale_after=q.STALE_WORKER)
