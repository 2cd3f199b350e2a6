"""Lago, when configured: the same usage, customers and subscriptions as the built-in ledger, billed by Lago.

One module, one job:

- ``client``     the only code that calls Lago (lago-python-client); failures become three errors
- ``metrics``    the billable metrics (one per ledger meter) and a usage row's Lago events
- ``customers``  tenants and subscriptions kept in step with Lago customers and subscriptions
- ``outbox``     usage rows queued once, sent in batches of at most 100, each marked from Lago's answer
- ``readback``   invoices and MRR as Lago computed them, for the pages
- ``sync``       ``sync_once``: one pass of all of it (the billing scheduler and the CLI call it)

The rules (what is synced, the outage and duplicate policy, the settings) are in docs/billing.md, "Lago".
"""

from cloud.billing.lago.client import LagoAuthError, LagoError, LagoGateway, LagoRefused, LagoUnavailable
from cloud.billing.lago.sync import SyncReport, gateway_for, sync_once

__all__ = ["LagoAuthError", "LagoError", "LagoGateway", "LagoRefused", "LagoUnavailable", "SyncReport",
           "gateway_for", "sync_once"]
