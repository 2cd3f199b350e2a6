"""The tenant portal (/tenant/...): what a tenant's owners and admins run their fleet with.

One blueprint, ``bp``, with its views split by topic (devices, sessions, projects, keys, usage, team,
settings). Views do no data work of their own where the REST API already does it: they call the same
plain functions the API routes call (cloud/api/*.py), which read the caller's TenantScope from
``flask.g.scope`` (set by cloud.web.access for a signed-in tenant user) and audit as ``g.actor``
(set in blueprint.py to ``user:<id>``). So a rule such as "a project with devices cannot be deleted" lives in
one place and the portal and the API cannot drift apart.
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
