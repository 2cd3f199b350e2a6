"""Projects: groups of a tenant's devices."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field
from sqlalchemy.exc import IntegrityError

from cloud.api.common import Input, Output, audit, endpoint, not_found, parse_body, scope
from cloud.db import Device, Project
from cloud.errors import ApiError

Name = Field(min_length=1, max_length=200)


class ProjectCreate(Input):
    name: str = Name
    description: str = Field(default="", max_length=2000)


class ProjectUpdate(Input):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)


class ProjectOut(Output):
    id: uuid.UUID
    name: str
    description: str
    is_default: bool
    created_at: datetime


class ProjectWithCount(ProjectOut):
    device_count: int


class ProjectList(Output):
    items: list[ProjectOut]


def _out(row: Project) -> dict:
    return ProjectOut.model_validate(row).model_dump(mode="json")


def _get(project_id: uuid.UUID) -> Project:
    row = scope().get(Project, project_id)
    if row is None:
        raise not_found("project")
    return row


def _commit_named(name: str) -> None:
    try:
        scope().commit()
    except IntegrityError:
        scope().db.rollback()
        raise ApiError(409, "name_taken", f"a project named {name!r} already exists") from None


@endpoint("GET", "/projects", summary="List projects", tag="projects", response=ProjectList)
def list_projects():
    return {"items": [_out(r) for r in scope().all(Project, order_by=[Project.created_at, Project.id])]}


def create(name: str, description: str = "") -> Project:
    """Create a project and commit (API and tenant portal). ApiError 409 ``name_taken`` for a duplicate."""
    if scope().first(Project, Project.name == name):
        raise ApiError(409, "name_taken", f"a project named {name!r} already exists")
    row = scope().add(Project(name=name, description=description))
    scope().flush()
    audit("project.create", f"project:{row.id}", name=name)
    _commit_named(name)
    return row


def change(row: Project, name: str | None = None, description: str | None = None) -> Project:
    """Rename a project and/or change its description, and commit. ApiError 409 for a duplicate name."""
    if name is not None and name != row.name:
        if scope().first(Project, Project.name == name):
            raise ApiError(409, "name_taken", f"a project named {name!r} already exists")
        audit("project.rename", f"project:{row.id}", old=row.name, new=name)
        row.name = name
    if description is not None:
        row.description = description
    _commit_named(row.name)
    return row


def delete(row: Project) -> None:
    """Delete an empty, non-default project and commit. A project with devices is refused (409): its
    devices would be left without a project, so they must be moved or unpaired first."""
    if row.is_default:
        raise ApiError(409, "default_project", "the default project cannot be deleted")
    devices = scope().count(Device, Device.project_id == row.id)
    if devices:
        raise ApiError(409, "project_not_empty",
                       f"the project still has {devices} device(s); move or unpair them first")
    audit("project.delete", f"project:{row.id}", name=row.name)
    scope().remove(row)
    scope().commit()


@endpoint("POST", "/projects", summary="Create a project", tag="projects", body=ProjectCreate,
          response=ProjectOut, status=201, errors=(409,))
def create_project():
    body = parse_body(ProjectCreate)
    return _out(create(body.name, body.description)), 201


@endpoint("GET", "/projects/<uuid:project_id>", summary="One project, with its number of devices",
          tag="projects", response=ProjectWithCount, errors=(404,))
def get_project(project_id: uuid.UUID):
    row = _get(project_id)
    return {**_out(row), "device_count": scope().count(Device, Device.project_id == row.id)}


@endpoint("PATCH", "/projects/<uuid:project_id>", summary="Rename a project or change its description",
          tag="projects", body=ProjectUpdate, response=ProjectOut, errors=(404, 409))
def update_project(project_id: uuid.UUID):
    body = parse_body(ProjectUpdate)
    return _out(change(_get(project_id), body.name, body.description))


@endpoint("DELETE", "/projects/<uuid:project_id>", summary="Delete an empty project", tag="projects",
          status=204, errors=(404, 409))
def delete_project(project_id: uuid.UUID):
    delete(_get(project_id))
    return "", 204
