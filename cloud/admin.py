"""Operator tasks shared by the CLI and (later) the operator portal: create operators, tenants
and API keys. Each writes an audit entry in the same transaction as the change."""

from __future__ import annotations

import contextlib
import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_
from sqlalchemy.orm import Session

from cloud import security
from cloud.db import ApiKey, AuditEntry, Project, Tenant, User
from cloud.scoping import PlatformScope, TenantScope

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


class AdminError(ValueError):
    """A request an operator can fix (duplicate email, unknown tenant, weak password...)."""


def normalise_email(email: str) -> str:
    email = (email or "").strip().lower()
    if not EMAIL.match(email) or len(email) > 320:
        raise AdminError(f"invalid email address {email!r}")
    return email


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:48]
    return slug if len(slug) >= 2 else f"tenant-{uuid.uuid4().hex[:8]}"


def audit(db: Session, actor: str, action: str, target: str | None = None,
          tenant_id: uuid.UUID | None = None, ip: str | None = None, **details: Any) -> None:
    # Details never hold a secret: callers pass names and ids only.
    PlatformScope(db).add(AuditEntry(actor=actor, action=action, target=target, tenant_id=tenant_id,
                                     ip=ip, details=details or None))


def _email_taken(platform: PlatformScope, email: str) -> bool:
    return platform.first(User, func.lower(User.email) == email) is not None


def create_operator(db: Session, email: str, password: str, actor: str = "cli") -> User:
    email = normalise_email(email)
    password_hash = _checked_password(password)
    platform = PlatformScope(db)
    if _email_taken(platform, email):
        raise AdminError(f"a user with email {email} already exists")
    user = platform.add(User(email=email, role="platform_admin", tenant_id=None,
                             password_hash=password_hash))
    platform.flush()
    audit(db, actor, "operator.create", target=f"user:{user.id}")
    platform.commit()
    return user


@dataclass
class NewTenant:
    tenant: Tenant
    project: Project
    owner: User
    invite_token: str | None  # None when the owner's password was set at creation


def _checked_password(password: str) -> str:
    try:
        security.check_password_strength(password)
    except security.WeakPassword as exc:
        raise AdminError(str(exc)) from None
    return security.hash_password(password)


def create_tenant(db: Session, name: str, owner_email: str, secret_key: str, slug: str | None = None,
                  actor: str = "cli", owner_password: str | None = None) -> NewTenant:
    """A tenant, its default project and its owner. The owner normally sets a password through the
    invite link; ``owner_password`` sets it now instead (a scripted setup such as the demo, where
    nobody can follow a link), and then no invite is made."""
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise AdminError("tenant name must be 1-200 characters")
    owner_email = normalise_email(owner_email)
    password_hash = _checked_password(owner_password) if owner_password is not None else None
    platform = PlatformScope(db)
    if slug is not None:
        if not SLUG.match(slug):
            raise AdminError(f"invalid slug {slug!r}: 2-63 of a-z, 0-9 and '-'")
        if platform.first(Tenant, Tenant.slug == slug):
            raise AdminError(f"a tenant with slug {slug} already exists")
    else:
        base = slugify(name)
        slug, n = base, 1
        while platform.first(Tenant, Tenant.slug == slug):
            n += 1
            slug = f"{base}-{n}"
    if _email_taken(platform, owner_email):
        raise AdminError(f"a user with email {owner_email} already exists")
    tenant = platform.add(Tenant(name=name, slug=slug))
    platform.flush()
    scope = TenantScope(db, tenant.id)
    project = scope.add(Project(name="Default", is_default=True))
    owner = scope.add(User(email=owner_email, role="tenant_owner", password_hash=password_hash))
    scope.flush()
    audit(db, actor, "tenant.create", target=f"tenant:{tenant.id}", tenant_id=tenant.id,
          slug=slug, owner=f"user:{owner.id}", **({"owner_invite": False} if password_hash else {}))
    platform.commit()
    if password_hash is not None:
        return NewTenant(tenant, project, owner, None)
    token = security.invite_token(secret_key, str(owner.id), owner.password_hash)
    return NewTenant(tenant, project, owner, token)


def find_tenant(db: Session, ref: str) -> Tenant:
    """A tenant by id, slug or name: what an operator types. Ids and slugs are unique; a name is taken
    (ignoring case and surrounding spaces) only when exactly one tenant has it, and otherwise the
    error lists the slugs to choose from."""
    platform = PlatformScope(db)
    ref = (ref or "").strip()
    conditions = [Tenant.slug == ref]
    with contextlib.suppress(ValueError):
        conditions.append(Tenant.id == uuid.UUID(ref))
    tenant = platform.first(Tenant, or_(*conditions))
    if tenant is not None:
        return tenant
    named = platform.all(Tenant, func.lower(Tenant.name) == ref.lower(), order_by=Tenant.slug) if ref else []
    if len(named) == 1:
        return named[0]
    if named:
        slugs = ", ".join(t.slug for t in named)
        raise AdminError(f"{len(named)} tenants are named {ref!r}: give one of their slugs ({slugs})")
    raise AdminError(f"no tenant {ref!r} (give its slug, id or name)")


def create_api_key(db: Session, tenant_ref: str, scope_name: str, name: str = "",
                   actor: str = "cli") -> tuple[ApiKey, str]:
    """A new key for a tenant: the row (prefix and hash only) and the key, which is never stored."""
    if scope_name not in ("read", "write"):
        raise AdminError(f"invalid scope {scope_name!r}: read or write")
    tenant = find_tenant(db, tenant_ref)
    if tenant.status != "active":
        raise AdminError(f"tenant {tenant.slug} is {tenant.status}")
    made = security.new_api_key()
    tenant_id = tenant.id
    scope = TenantScope(db, tenant_id)
    row = scope.add(ApiKey(name=name, prefix=made.prefix, key_hash=made.key_hash, scope=scope_name,
                           created_by=actor))
    scope.flush()
    audit(db, actor, "api_key.create", target=f"api_key:{made.prefix}", tenant_id=tenant_id,
          scope=scope_name)
    db.commit()
    return row, made.key
