"""The operator portal (role ``platform_admin``): the whole platform at a glance, and the few actions an
operator takes on it (suspend a tenant, disable an account).

Every view is declared ``@allow(*OPERATOR)`` and reads through the PlatformScope that access.py made
for the signed-in operator (``platform()``); the queries live in ``cloud.web.operator.queries``. The
state-changing actions are POST forms (CSRF-checked by cloud/web/csrf.py) that call the same
functions as the CLI (``cloud.tenants``) and write an audit entry in the same transaction. The audit
log is shown, filtered and paged here, and never edited or deleted.
"""

from __future__ import annotations

# The views attach themselves to ``bp`` on import.
from cloud.web.operator import audit, billing, dashboard, tenants, users  # noqa: E402, F401
from cloud.web.operator.blueprint import bp

__all__ = ["bp"]
