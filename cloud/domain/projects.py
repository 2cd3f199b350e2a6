"""Projects: groups of a tenant's devices. Names are unique within a tenant; the default project and
a project that still has devices cannot be deleted (its devices would be left without a project)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from cloud.db import Device, Project
from cloud.domain.caller import Caller
from cloud.domain.errors import DomainError
from cloud.scoping import TenantScope


def _name_taken(name: str) -> DomainError:
    return DomainError(409, "name_taken", f"a project named {name!r} already exists")


def _commit_named(scope: TenantScope, name: str) -> None:
    """Commit; a duplicate name that a concurrent request made meanwhile is still ``name_taken``."""
    try:
        scope.commit()
    except IntegrityError:
        scope.db.rollback()
        raise _name_taken(name) from None


def device_count(scope: TenantScope, project: Project) -> int:
    return scope.count(Device, Device.project_id == project.id)


def create_project(caller: Caller, name: str, description: str = "") -> Project:
    """Create a project, audited, and commit. DomainError 409 ``name_taken`` for a duplicate name."""
    scope = caller.scope
    if scope.first(Project, Project.name == name):
        raise _name_taken(name)
    row = scope.add(Project(name=name, description=description))
    scope.flush()
    caller.audit("project.create", f"project:{row.id}", name=name)
    _commit_named(scope, name)
    return row


def update_project(caller: Caller, project: Project, *, name: str | None = None,
                   description: str | None = None) -> Project:
    """Rename a project and/or change its description, and commit. DomainError 409 ``name_taken``."""
    scope = caller.scope
    if name is not None and name != project.name:
        if scope.first(Project, Project.name == name):
            raise _name_taken(name)
        caller.audit("project.rename", f"project:{project.id}", old=project.name, new=name)
        project.name = name
    if description is not None:
        project.description = description
    _commit_named(scope, project.name)
    return project


def delete_project(caller: Caller, project: Project) -> None:
    """Delete an empty, non-default project and commit. DomainError 409 ``default_project`` or
    ``project_not_empty`` (move or unpair its devices first)."""
    scope = caller.scope
    if project.is_default:
        raise DomainError(409, "default_project", "the default project cannot be deleted")
    devices = device_count(scope, project)
    if devices:
        raise DomainError(409, "project_not_empty",
                          f"the project still has {devices} device(s); move or unpair them first")
    caller.audit("project.delete", f"project:{project.id}", name=project.name)
    scope.remove(project)
    scope.commit()
