"""cloud.domain.projects called directly, on SQLite and PostgreSQL: create, rename and delete, each
audited under the caller; duplicates, the default project and a project with devices refused with
nothing changed."""

from __future__ import annotations

import pytest

from cloud.db import AuditEntry, Project
from cloud.domain import projects
from cloud.domain.errors import DomainError
from cloud.domain.lookup import get_owned
from tests.cloud.domain.test_fixtures import ACTOR, Rig, rig_fixture  # noqa: F401


def test_create_rename_and_delete_a_project(rig: Rig) -> None:
    org = rig.tenant()
    with rig.caller(org) as caller:
        made = projects.create_project(caller, "Hotel B", "second site")
        made_id = made.id
    with rig.caller(org) as caller:
        row = get_owned(caller.scope, Project, made_id)
        projects.update_project(caller, row, name="Hotel C", description="")
    [stored] = rig.rows(Project, Project.id == made_id)
    assert (stored.name, stored.description, stored.tenant_id) == ("Hotel C", "", org.id)
    with rig.caller(org) as caller:
        projects.delete_project(caller, get_owned(caller.scope, Project, made_id))
    assert rig.rows(Project, Project.id == made_id) == []
    audit = [(e.action, e.actor, e.tenant_id, e.ip) for e in rig.rows(AuditEntry, AuditEntry.target ==
                                                                      f"project:{made_id}")]
    assert sorted(a for a, *_ in audit) == ["project.create", "project.delete", "project.rename"]
    assert {(actor, tenant, ip) for _, actor, tenant, ip in audit} == {(ACTOR, org.id, "192.0.2.10")}


def test_a_duplicate_name_is_refused_and_nothing_is_added(rig: Rig) -> None:
    org = rig.tenant()
    other = rig.tenant()
    rig.project(other, "Lab")                       # another tenant's name is no clash
    with rig.caller(org) as caller:
        lab = projects.create_project(caller, "Lab")
        with pytest.raises(DomainError) as refused:
            projects.create_project(caller, "Lab")
        assert (refused.value.status, refused.value.code) == (409, "name_taken")
        assert "'Lab' already exists" in refused.value.message
        with pytest.raises(DomainError) as renamed:
            projects.update_project(caller, get_owned(caller.scope, Project, org.project_id), name="Lab")
        assert renamed.value.code == "name_taken"
    names = sorted(p.name for p in rig.rows(Project, Project.tenant_id == org.id))
    assert names == ["Default", "Lab"] and lab.name == "Lab"


def test_the_default_project_and_one_with_devices_are_not_deleted(rig: Rig) -> None:
    org = rig.tenant()
    busy = rig.project(org, "Busy")
    rig.device(org, project_id=busy)
    with rig.caller(org) as caller:
        with pytest.raises(DomainError) as default:
            projects.delete_project(caller, get_owned(caller.scope, Project, org.project_id))
        assert (default.value.status, default.value.code) == (409, "default_project")
        with pytest.raises(DomainError) as not_empty:
            projects.delete_project(caller, get_owned(caller.scope, Project, busy))
        assert (not_empty.value.status, not_empty.value.code) == (409, "project_not_empty")
        assert "1 device(s)" in not_empty.value.message
    assert {p.id for p in rig.rows(Project, Project.tenant_id == org.id)} == {org.project_id, busy}
    assert [e.action for e in rig.rows(AuditEntry, AuditEntry.action == "project.delete")] == []


def test_another_tenants_project_is_not_found(rig: Rig) -> None:
    org, other = rig.tenant(), rig.tenant()
    with rig.caller(org) as caller:
        with pytest.raises(DomainError) as missing:
            get_owned(caller.scope, Project, other.project_id, "project")
        assert (missing.value.status, missing.value.code) == (404, "project_not_found")
        with pytest.raises(DomainError) as malformed:
            get_owned(caller.scope, Project, "not-an-id", "project")
        assert malformed.value.code == "project_not_found"
