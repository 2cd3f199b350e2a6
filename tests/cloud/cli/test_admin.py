"""``voxfleet cloud admin ...`` and ``db upgrade`` as an operator uses them, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import socket
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from cloud.cli import cloud
from cloud.db import ApiKey, AuditEntry, Project, Tenant, User
from cloud.scoping import PlatformScope
from cloud.security import verify_password
from tests.conftest import VOXFLEET

GOOD_PASSWORD = "correct horse battery staple"


@pytest.fixture
def cli(database, tmp_path):
    """Runs `voxfleet cloud ...` in-process against the test database."""
    env = {"VOXFLEET_DATA_DIR": str(tmp_path / "cloud"), "VOXFLEET_DATABASE_URL": database.url}

    def run(*args: str, input: str | None = None):
        return CliRunner().invoke(cloud, list(args), input=input, env=env, catch_exceptions=False)

    return run


def _every_stored_value(database) -> str:
    """Every row of every table, as text: what a leaked database dump would show."""
    from cloud.db import Base

    chunks = []
    with database.owner.connect() as conn:
        for table in Base.metadata.sorted_tables:
            chunks += [repr(tuple(row)) for row in conn.execute(table.select())]
    return "\n".join(chunks)


def _read_elsewhere(path: Path) -> bytes:
    """A database file's bytes, read by another process. Opening and closing it here would drop every
    POSIX lock this process's SQLite connections hold on it (sqlite.org/howtocorrupt.html, 2.2), after
    which they stop seeing what other processes write (later tests run `voxfleet cloud webhooks run`)."""
    return subprocess.run(["cat", str(path)], capture_output=True, check=True, timeout=60).stdout


def test_create_operator_refuses_a_short_password(cli, database):
    result = cli("admin", "create-operator", "--email", "op@example.com", input="short\nshort\n")
    assert result.exit_code != 0
    assert "password too short: at least 12 characters" in result.stderr
    with database.sessions() as db:
        assert PlatformScope(db).all(User) == []


def test_create_operator_refuses_mismatched_passwords(cli, database):
    result = cli("admin", "create-operator", "--email", "op@example.com",
                 input=f"{GOOD_PASSWORD}\n{GOOD_PASSWORD}!\n")
    assert result.exit_code != 0
    assert "passwords do not match" in result.stderr
    with database.sessions() as db:
        assert PlatformScope(db).all(User) == []


def test_create_operator_stores_an_argon2_hash_and_refuses_a_duplicate(cli, database):
    result = cli("admin", "create-operator", "--email", "Op@Example.com", input=f"{GOOD_PASSWORD}\n" * 2)
    assert result.exit_code == 0, result.stderr
    with database.sessions() as db:
        user = PlatformScope(db).first(User)
        assert (user.email, user.role, user.tenant_id) == ("op@example.com", "platform_admin", None)
        assert user.password_hash.startswith("$argon2id$")
        assert verify_password(user.password_hash, GOOD_PASSWORD)
        assert not verify_password(user.password_hash, GOOD_PASSWORD + "x")
    assert GOOD_PASSWORD not in _every_stored_value(database)
    again = cli("admin", "create-operator", "--email", "op@example.com", input=f"{GOOD_PASSWORD}\n" * 2)
    assert again.exit_code == 1 and "already exists" in again.stderr


def test_tenant_then_api_key_prints_the_key_once_and_stores_only_its_hash(cli, database, tmp_path):
    made = cli("admin", "create-tenant", "Acme Voice", "--owner-email", "owner@acme.example")
    assert made.exit_code == 0, made.stderr
    assert "slug acme-voice" in made.stdout
    assert "/invite/" in made.stdout
    result = cli("admin", "create-api-key", "--tenant", "acme-voice", "--scope", "write", "--name", "ci")
    assert result.exit_code == 0, result.stderr
    key = result.stdout.strip()
    assert key.startswith("vfk_") and len(key) > 40
    assert (result.stdout + result.stderr).count(key) == 1
    with database.sessions() as db:
        platform = PlatformScope(db)
        tenant = platform.first(Tenant, Tenant.slug == "acme-voice")
        row = platform.first(ApiKey)
        assert row.tenant_id == tenant.id and row.scope == "write" and row.name == "ci"
        assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
        assert key.split("_")[1] == row.prefix
        owner = platform.first(User)
        assert (owner.role, owner.tenant_id, owner.password_hash) == ("tenant_owner", tenant.id, None)
        assert [p.name for p in platform.all(Project)] == ["Default"]
        actions = sorted(a.action for a in platform.all(AuditEntry))
        assert actions == ["api_key.create", "tenant.create"]
    secret_part = key.split("_", 2)[2]
    dump = _every_stored_value(database)
    assert key not in dump and secret_part not in dump
    if database.backend == "sqlite":
        files = [Path(database.owner.url.database)]
        files += [f.with_name(f.name + suffix) for f in files for suffix in ("-wal", "-journal")]
        for path in files:
            if path.exists():
                assert secret_part.encode() not in _read_elsewhere(path), path


def test_create_api_key_for_an_unknown_tenant_is_a_clear_error(cli):
    result = cli("admin", "create-api-key", "--tenant", "nobody", "--scope", "read")
    assert result.exit_code == 1
    assert "no tenant 'nobody'" in result.stderr


def test_db_upgrade_is_repeatable(cli):
    result = cli("db", "upgrade")
    assert result.exit_code == 0
    assert "already at revision" in result.stderr


def test_admin_commands_on_an_unmigrated_database_say_what_to_run(tmp_path):
    env = {"VOXFLEET_DATA_DIR": str(tmp_path / "fresh")}
    result = CliRunner().invoke(cloud, ["admin", "create-api-key", "--tenant", "x", "--scope", "read"],
                                env=env)
    assert result.exit_code == 1
    assert "voxfleet cloud db upgrade" in result.stderr


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("url,expected", [
    ("postgresql://vf:hunter2secret@127.0.0.1:{port}/voxfleet",
     "cannot use database 'postgresql://vf:***@127.0.0.1:{port}/voxfleet'"),
    ("postgresql://vf:hunter2secret@127.0.0.1:notaport/voxfleet",
     "invalid database URL 'postgresql://vf:***@127.0.0.1:notaport/voxfleet'"),
    ("mysql://vf:hunter2secret@127.0.0.1/voxfleet",
     "database_url: must be a sqlite:/// or postgresql:// URL, not 'mysql://vf:***@127.0.0.1/voxfleet'"),
])
def test_bad_database_urls_are_named_without_their_password(tmp_path, url, expected):
    port = _closed_port()
    env = {"VOXFLEET_DATA_DIR": str(tmp_path), "VOXFLEET_DATABASE_URL": url.format(port=port)}
    result = CliRunner().invoke(cloud, ["db", "upgrade"], env=env)
    assert result.exit_code != 0
    assert expected.format(port=port) in result.stderr
    assert "hunter2secret" not in result.output


def test_the_voxfleet_command_sets_up_a_cloud_from_scratch(tmp_path):
    """The real console script, as a provisioning script would run it, on the embedded default."""
    data_dir = str(tmp_path / "cloud")

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        done = subprocess.run([VOXFLEET, "cloud", *args, "--data-dir", data_dir], input=stdin,
                              capture_output=True, text=True, timeout=120)
        return done

    assert run("db", "upgrade").returncode == 0
    short = run("admin", "create-operator", "--email", "op@example.com", "--password-stdin",
                stdin="tooshort\n")
    assert short.returncode != 0 and "too short" in short.stderr
    made = run("admin", "create-operator", "--email", "op@example.com", "--password-stdin",
               stdin=GOOD_PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    assert run("admin", "create-tenant", "Kitchen Co", "--owner-email", "k@kitchen.example").returncode == 0
    key = run("admin", "create-api-key", "--tenant", "kitchen-co", "--scope", "read")
    assert key.returncode == 0, key.stderr
    printed = key.stdout.strip()
    assert printed.startswith("vfk_")
    db_file = Path(data_dir) / "cloud.db"
    stored = b"".join(p.read_bytes() for p in db_file.parent.glob("cloud.db*"))
    assert printed.encode() not in stored and printed.split("_", 2)[2].encode() not in stored
    assert GOOD_PASSWORD.encode() not in stored
    secret_file = Path(data_dir) / "secret_key"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    secret = secret_file.read_text().strip()
    for done in (made, key):
        assert secret not in done.stdout + done.stderr
    from cloud.db.session import make_engine

    engine = make_engine(f"sqlite:///{db_file}")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM api_keys")).scalar_one() == 1
    engine.dispose()


def test_a_tenant_is_found_by_its_name_as_well_as_its_slug_or_id(cli, database):
    made = cli("admin", "create-tenant", "Acme", "--owner-email", "owner@acme.example")
    assert made.exit_code == 0, made.stderr
    with database.sessions() as db:
        tenant = PlatformScope(db).first(Tenant, Tenant.slug == "acme")
        tenant_id = str(tenant.id)
    for ref in ("Acme", " acme ", "ACME", "acme", tenant_id):
        result = cli("admin", "create-api-key", "--tenant", ref, "--scope", "read", "--name", ref)
        assert result.exit_code == 0, (ref, result.stderr)
        assert result.stdout.strip().startswith("vfk_")
    with database.sessions() as db:
        keys = PlatformScope(db).all(ApiKey)
        assert len(keys) == 5 and {k.tenant_id for k in keys} == {tenant.id}
    suspended = cli("admin", "suspend-tenant", "Acme", "--reason", "test")
    assert suspended.exit_code == 0, suspended.stderr
    with database.sessions() as db:
        assert PlatformScope(db).first(Tenant, Tenant.slug == "acme").status == "suspended"


def test_a_name_two_tenants_share_is_refused_with_their_slugs(cli, database):
    for email in ("one@acme.example", "two@acme.example"):
        assert cli("admin", "create-tenant", "Acme", "--owner-email", email).exit_code == 0
    result = cli("admin", "create-api-key", "--tenant", "Acme", "--scope", "read")
    assert result.exit_code == 1
    assert "2 tenants are named 'Acme': give one of their slugs (acme, acme-2)" in result.stderr
    assert result.stdout == ""
    with database.sessions() as db:
        assert PlatformScope(db).all(ApiKey) == []
    by_slug = cli("admin", "create-api-key", "--tenant", "acme-2", "--scope", "read")
    assert by_slug.exit_code == 0, by_slug.stderr


def test_a_slug_wins_over_another_tenants_name(cli, database):
    """Slugs are unique, names are not: a tenant named like another's slug does not shadow it."""
    assert cli("admin", "create-tenant", "Kitchen", "--owner-email", "a@kitchen.example").exit_code == 0
    assert cli("admin", "create-tenant", "kitchen", "--slug", "other",
               "--owner-email", "b@kitchen.example").exit_code == 0
    result = cli("admin", "create-api-key", "--tenant", "kitchen", "--scope", "read")
    assert result.exit_code == 0, result.stderr
    with database.sessions() as db:
        platform = PlatformScope(db)
        assert platform.first(ApiKey).tenant_id == platform.first(Tenant, Tenant.slug == "kitchen").id


def test_create_tenant_with_the_owner_password_on_stdin_makes_no_invite(cli, database):
    made = cli("admin", "create-tenant", "Acme", "--owner-email", "owner@acme.example", "--password-stdin",
               input=GOOD_PASSWORD + "\n")
    assert made.exit_code == 0, made.stderr
    assert "/invite/" not in made.output and GOOD_PASSWORD not in made.output
    assert "owner:   owner@acme.example" in made.stdout
    assert "/login with the password given" in made.stderr
    with database.sessions() as db:
        owner = PlatformScope(db).first(User)
        assert owner.role == "tenant_owner" and verify_password(owner.password_hash, GOOD_PASSWORD)
        entry = PlatformScope(db).first(AuditEntry, AuditEntry.action == "tenant.create")
        assert entry.details["owner_invite"] is False
    assert GOOD_PASSWORD not in _every_stored_value(database)


@pytest.mark.parametrize("stdin,expected", [("short\n", "password too short"), ("", "password too short"),
                                            ("aaaaaaaaaaaaaaaa\n", "password too simple")])
def test_create_tenant_refuses_a_weak_owner_password_and_creates_nothing(cli, database, stdin, expected):
    result = cli("admin", "create-tenant", "Acme", "--owner-email", "owner@acme.example", "--password-stdin",
                 input=stdin)
    assert result.exit_code == 1
    assert expected in result.stderr and "nothing was created" in result.stderr
    with database.sessions() as db:
        assert PlatformScope(db).all(Tenant) == [] and PlatformScope(db).all(User) == []


def test_create_tenant_refuses_a_weak_owner_password_through_the_function(database):
    from cloud import admin

    with database.sessions() as db, pytest.raises(admin.AdminError, match="password too short"):
        admin.create_tenant(db, "Acme", "owner@acme.example", "k" * 32, owner_password="short")
    with database.sessions() as db:
        assert PlatformScope(db).all(Tenant) == []
