"""Projects: groups of devices. Create, rename, delete (refused while devices are in it: deleting would
leave them without a project; the rules are cloud/domain/projects.py's), and each project's devices."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import func, select

from cloud.db import Device, Project
from cloud.domain import projects as domain_projects
from cloud.domain.errors import DomainError
from cloud.web.access import TENANT_ADMINS, allow, scope
from cloud.web.refusals import sentence
from cloud.web.tenant.blueprint import bp
from cloud.web.tenant.common import caller, owned


def _counts() -> dict:
    current = scope()
    rows = current.execute(
        select(Device.project_id, func.count()).where(current.criterion(Device)).group_by(Device.project_id)
    ).all()
    return {project_id: n for project_id, n in rows}


def _form(errors: dict[str, str]) -> dict[str, str]:
    form = {
        "name": request.form.get("name", "").strip(),
        "description": request.form.get("description", "").strip(),
    }
    if not form["name"]:
        errors["name"] = "Give the project a name."
    elif len(form["name"]) > 200:
        errors["name"] = "At most 200 characters."
    if len(form["description"]) > 2000:
        errors["description"] = "At most 2000 characters."
    return form


def _list(form: dict[str, str] | None = None, errors: dict[str, str] | None = None, status: int = 200):
    rows = scope().all(Project, order_by=[Project.is_default.desc(), Project.name])
    return render_template(
        "tenant/projects.html",
        projects=rows,
        counts=_counts(),
        form=form or {"name": "", "description": ""},
        errors=errors or {},
    ), status


@bp.get("/projects")
@allow(*TENANT_ADMINS)
def projects():
    return _list()


@bp.post("/projects")
@allow(*TENANT_ADMINS)
def create_project():
    errors: dict[str, str] = {}
    form = _form(errors)
    status = 400
    if not errors:
        try:
            row = domain_projects.create_project(caller(), form["name"], form["description"])
        except DomainError as exc:
            scope().db.rollback()
            errors["name"] = sentence(exc)
            status = exc.status
        else:
            flash(
                f"Project “{row.name}” created. Pair devices into it from the Devices page, or move "
                "devices here from their own pages."
            )
            return redirect(url_for("tenant.project", project_id=row.id))
    return _list(form, errors, status)


@bp.get("/projects/<uuid:project_id>")
@allow(*TENANT_ADMINS)
def project(
    project_id, form: dict[str, str] | None = None, errors: dict[str, str] | None = None, status: int = 200
):
    row = owned(Project, project_id)
    devices = scope().all(
        Device, Device.project_id == row.id, order_by=[Device.status, Device.name, Device.id]
    )
    return render_template(
        "tenant/project.html",
        project=row,
        devices=devices,
        form=form or {"name": row.name, "description": row.description},
        errors=errors or {},
    ), status


@bp.post("/projects/<uuid:project_id>")
@allow(*TENANT_ADMINS)
def update_project(project_id):
    row = owned(Project, project_id)
    errors: dict[str, str] = {}
    form = _form(errors)
    if not errors:
        try:
            domain_projects.update_project(caller(), row, name=form["name"], description=form["description"])
        except DomainError as exc:
            scope().db.rollback()
            errors["name"] = sentence(exc)
        else:
            flash("Project saved.")
            return redirect(url_for("tenant.project", project_id=row.id))
    return project(project_id, form, errors, 400)


@bp.post("/projects/<uuid:project_id>/delete")
@allow(*TENANT_ADMINS)
def delete_project(project_id):
    row = owned(Project, project_id)
    name = row.name
    try:
        domain_projects.delete_project(caller(), row)
    except DomainError as exc:
        scope().db.rollback()
        reason = (
            "This project still has devices. Move each device to another project (on its page) or "
            "unpair it, then delete the project."
            if exc.code == "project_not_empty"
            else sentence(exc)
        )
        return project(project_id, None, {"delete": reason}, 409)
    flash(f"Project “{name}” deleted.")
    return redirect(url_for("tenant.projects"))
