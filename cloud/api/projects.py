"""Projects: groups of a tenant's devices."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from cloud.api.common import Input, Output, caller, endpoint, owned, parse_body, scope
from cloud.db import Project
from cloud.domain import projects

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


def _project(project_id: uuid.UUID) -> Project:
    return owned(Project, project_id, "project")


@endpoint("GET", "/projects", summary="List projects", tag="projects", response=ProjectList)
def list_projects():
    return {"items": [_out(r) for r in scope().all(Project, order_by=[Project.created_at, Project.id])]}


@endpoint("POST", "/projects", summary="Create a project", tag="projects", body=ProjectCreate,
          response=ProjectOut, status=201, errors=(409,))
def create_project():
    body = parse_body(ProjectCreate)
    return _out(projects.create_project(caller(), body.name, body.description)), 201


@endpoint("GET", "/projects/<uuid:project_id>", summary="One project, with its number of devices",
          tag="projects", response=ProjectWithCount, errors=(404,))
def get_project(project_id: uuid.UUID):
    row = _project(project_id)
    return {**_out(row), "device_count": projects.device_count(scope(), row)}


@endpoint("PATCH", "/projects/<uuid:project_id>", summary="Rename a project or change its description",
          tag="projects", body=ProjectUpdate, response=ProjectOut, errors=(404, 409))
def update_project(project_id: uuid.UUID):
    body = parse_body(ProjectUpdate)
    return _out(projects.update_project(caller(), _project(project_id), name=body.name,
                                        description=body.description))


@endpoint("DELETE", "/projects/<uuid:project_id>", summary="Delete an empty project", tag="projects",
          status=204, errors=(404, 409))
def delete_project(project_id: uuid.UUID):
    projects.delete_project(caller(), _project(project_id))
    return "", 204
