"""cloud.domain.api_keys called directly, on SQLite and PostgreSQL: a key is made with only its hash
stored, rotated with an overlap that never lengthens, and revoked; a revoked key cannot be rotated."""

from __future__ import annotations

import pytest

from cloud import security
from cloud.db import ApiKey, AuditEntry
from cloud.domain import api_keys
from cloud.domain.errors import DomainError
from cloud.domain.lookup import get_owned
from tests.cloud.domain.test_fixtures import ACTOR, Rig, rig_fixture  # noqa: F401


def test_create_rotate_and_revoke_a_key(rig: Rig) -> None:
    org = rig.tenant()
    with rig.caller(org) as caller:
        made = api_keys.create_api_key(caller, "CRM sync", "write")
        assert made.key.startswith("vfk_") and made.key not in repr(made)
        first_id = made.row.id
    [stored] = rig.rows(ApiKey, ApiKey.id == first_id)
    assert security.api_key_matches(made.key, stored.key_hash) and made.key not in stored.key_hash
    assert (stored.name, stored.scope, stored.created_by) == ("CRM sync", "write", ACTOR)
    with rig.caller(org) as caller:
        old = get_owned(caller.scope, ApiKey, first_id)
        rotated = api_keys.rotate_api_key(caller, old, 3600)
        first_end = old.expires_at
        again = api_keys.rotate_api_key(caller, old, 7 * 24 * 3600)   # a second rotation: no longer life
        assert old.expires_at == first_end
        assert (rotated.row.name, rotated.row.scope) == ("CRM sync", "write") and rotated.key != made.key
        assert again.key not in (made.key, rotated.key)
        api_keys.revoke_api_key(caller, old)
        with pytest.raises(DomainError) as inactive:
            api_keys.rotate_api_key(caller, old, 0)
        assert (inactive.value.status, inactive.value.code) == (409, "api_key_inactive")
    assert len(rig.rows(ApiKey)) == 3
    actions = sorted(e.action for e in rig.rows(AuditEntry, AuditEntry.actor == ACTOR))
    assert actions == ["api_key.create", "api_key.revoke", "api_key.rotate", "api_key.rotate"]
    assert not any(made.key in str(e.details) for e in rig.rows(AuditEntry))


def test_bad_scopes_and_overlaps_are_refused_and_no_key_is_made(rig: Rig) -> None:
    org = rig.tenant()
    with rig.caller(org) as caller:
        with pytest.raises(DomainError) as scope:
            api_keys.create_api_key(caller, "x", "admin")
        assert (scope.value.status, scope.value.code) == (400, "invalid_request")
        made = api_keys.create_api_key(caller, "ok", "read")
        with pytest.raises(DomainError) as overlap:
            api_keys.rotate_api_key(caller, made.row, api_keys.MAX_OVERLAP_S + 1)
        assert overlap.value.message.startswith("overlap_seconds: ")
    assert [k.name for k in rig.rows(ApiKey)] == ["ok"]
