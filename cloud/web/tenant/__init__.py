"""The tenant portal (/tenant/...): what a tenant's owners and admins run their fleet with.

One blueprint, ``bp``, with its views split by topic (devices, sessions, projects, keys, usage, team,
settings). Views do no data work of their own where the REST API does the same: both call the domain
(cloud/domain/*.py) with the caller's TenantScope and actor (``common.caller()``: ``user:<id>`` here,
``api_key:<prefix>`` there), so a rule such as "a project with devices cannot be deleted" lives in
one place and the portal and the API cannot drift apart. A refusal (DomainError) is shown beside
its field or in a flash where a view can say where it belongs, else as the error page
(cloud/web/refusals.py).
"""

from __future__ import annotations

# The views attach themselves to ``bp`` on import.
from cloud.web.tenant import (  # noqa: E402, F401
    billing,
    dashboard,
    devices,
    keys,
    projects,
    sessions,
    settings,
    team,
    usage,
)
from cloud.web.tenant.blueprint import bp

__all__ = ["bp"]
