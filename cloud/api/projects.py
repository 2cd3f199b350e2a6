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


@endpoint("GET", "/projects", summary="List projects", tag="projects", response=ProjectList)
def list_projects():
    rows = scope().all(Project, order_by=[Project.created_at, Project.id])
    return {"items": [ProjectOut.dump(r) for r in rows]}


@endpoint("POST", "/projects", summary="Create a project", tag="projects", body=ProjectCreate,
          response=ProjectOut, status=201, errors=(409,))
def create_project():
    body = parse_body(ProjectCreate)
    return ProjectOut.dump(projects.create_project(caller(), body.name, body.description)), 201


@endpoint("GET", "/projects/<uuid:project_id>", summary="One project, with its number of devices",
          tag="projects", response=ProjectWithCount, errors=(404,))
def get_project(project_id: uuid.UUID):
    row = owned(Project, project_id, "project")
    return {**ProjectOut.dump(row), "device_count": projects.device_count(scope(), row)}


@endpoint("PATCH", "/projects/<uuid:project_id>", summary="Rename a project or change its description",
          tag="projects", body=ProjectUpdate, response=ProjectOut, errors=(404, 409))
def update_project(project_id: uuid.UUID):
    body = parse_body(ProjectUpdate)
    row = owned(Project, project_id, "project")
    changed = projects.update_project(caller(), row, name=body.name, description=body.description)
    return ProjectOut.dump(changed)


@endpoint("DELETE", "/projects/<uuid:project_id>", summary="Delete an empty project", tag="projects",
          status=204, errors=(404, 409))
def delete_project(project_id: uuid.UUID):
    projects.delete_project(caller(), owned(Project, project_id, "project"))
    return "", 204
