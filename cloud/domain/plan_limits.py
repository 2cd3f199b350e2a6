"""Billing's hard limits as domain refusals: ``cloud.billing.enforce`` decides, this says it in the one
error type, 402 ``plan_limit_reached`` with the meter, its hard limit and the usage in ``details``."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy.orm import Session

from cloud.billing import enforce
from cloud.domain.errors import DomainError
from cloud.scoping import TenantScope

Check = Callable[[Session, uuid.UUID], None]


def within_plan(scope: TenantScope, check: Check) -> None:
    """Run one of enforce's checks (``check_speak``, ``check_new_device``) for the scope's tenant."""
    try:
        check(scope.db, scope.tenant_id)
    except enforce.PlanLimitReached as exc:
        raise DomainError(exc.status, exc.code, str(exc), details=exc.details) from None
