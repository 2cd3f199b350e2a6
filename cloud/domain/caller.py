"""Who takes an action: the tenant's scope it runs in and the name the audit log gives it.

The API builds one from the request's API key (``api_key:<prefix>``), the tenant portal from the
signed-in person (``user:<id>``); a CLI or a worker makes its own (``Caller(TenantScope(db, id),
"cli")``). Every domain action takes one instead of reading ``flask.g``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cloud.admin import audit as write_audit
from cloud.scoping import TenantScope


@dataclass(frozen=True)
class Caller:
    scope: TenantScope
    actor: str
    ip: str | None = None

    def audit(self, action: str, target: str | None = None, **details: Any) -> None:
        """An audit entry in the caller's transaction: it commits with the change or not at all.
        Details are names and ids, never a secret."""
        write_audit(self.scope.db, self.actor, action, target=target, tenant_id=self.scope.tenant_id,
                    ip=self.ip, **details)
