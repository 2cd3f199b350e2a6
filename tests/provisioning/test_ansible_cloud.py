"""The cloud playbook's files, rendered by Ansible itself and then used for real (issue 8).

`ansible-playbook cloud.yml --tags render -e voxfleet_render_only=true` runs the roles' own template
and state tasks against this machine, with every path pointed into a temporary folder: the same
Jinja, filters and variables a server gets, no hand-written rendering. Then:
- the systemd units pass `systemd-analyze verify`;
- the webhook unit's command line, with the rendered environment file, sends a queued webhook to a
  real receiver and stops cleanly on SIGTERM;
- the rendered mosquitto.conf starts a real Mosquitto; a device account made through Dynamic
  Security (cloud/broker/dynsec.py, as the cloud does at pairing) connects, a wrong password does
  not, and the TLS listener serves a client that trusts the test CA and only such a client;
- the environment file is 0600 and the cloud's own configuration loader accepts it;
- nginx accepts the rendered site (`nginx -t`) and, run for real in front of the real cloud under
  gunicorn, answers over HTTPS with HSTS and redirects plain HTTP.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cloud.broker.acl import device_client_id
from cloud.broker.dynsec import DynsecAdmin
from cloud.config import load_config
from tests.cloud.webhooks.receiver import Receiver, queue_event, receiver_fixture  # noqa: F401
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = ROOT / "ansible"
BIN = Path(sys.executable).parent
# Secrets with characters that need escaping in a URL and in a systemd environment file.
DB_PASSWORD = "db/p@ss:w%rd \"q\" " + uuid.uuid4().hex[:8]
ADMIN_PASSWORD = "admin-" + uuid.uuid4().hex
SERVICE_PASSWORD = "service-" + uuid.uuid4().hex
SECRET_KEY = 'key "quoted" \\back $HOME %n ' + uuid.uuid4().hex + uuid.uuid4().hex
SECRETS = (DB_PASSWORD, ADMIN_PASSWORD, SERVICE_PASSWORD, SECRET_KEY)


def ansible_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"), ANSIBLE_HOME=str(tmp / "ansible-home"),
               ANSIBLE_NOCOLOR="1", PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    return env


# --- test certificates -------------------------------------------------------------------------------

def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificates(folder: Path) -> dict[str, Path]:
    """A test CA and a server certificate for localhost / 127.0.0.1 signed by it."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("VoxFleet test CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"ca": folder / "ca.pem", "cert": folder / "fullchain.pem", "key": folder / "privkey.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    paths["key"].chmod(0o600)
    return paths


# --- rendering ---------------------------------------------------------------------------------------

@dataclass
class Rendered:
    folder: Path
    variables: dict
    first_run: subprocess.CompletedProcess
    certs: dict[str, Path]

    def path(self, variable: str) -> Path:
        return Path(self.variables[variable])

    def run_again(self) -> subprocess.CompletedProcess:
        return run_render(self.folder)


def run_render(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(folder / "inventory.yml"), "cloud.yml",
                           "--tags", "render", "-e", f"@{folder / 'vars.json'}"],
                          cwd=ANSIBLE, env=ansible_env(folder), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    folder = tmp_path_factory.mktemp("cloud-render")
    certs = make_certificates(folder / "tls")
    variables = {
        "voxfleet_render_only": True,
        "voxfleet_cloud_domain": "localhost",
        "cloud_postgresql_owner_password": DB_PASSWORD,
        "cloud_mosquitto_admin_password": ADMIN_PASSWORD,
        "cloud_app_database_password": DB_PASSWORD,
        "cloud_app_secret_key": SECRET_KEY,
        "cloud_app_broker_admin_password": ADMIN_PASSWORD,
        "cloud_app_broker_service_password": SERVICE_PASSWORD,
        "cloud_tls_certificate": str(certs["cert"]),
        "cloud_tls_private_key": str(certs["key"]),
        # Mosquitto: this test's own, on free ports, running as the test's user.
        "cloud_mosquitto_user": "root",
        "cloud_mosquitto_conf_path": str(folder / "mosquitto" / "mosquitto.conf"),
        "cloud_mosquitto_dynsec_state": str(folder / "mosquitto" / "dynamic-security.json"),
        "cloud_mosquitto_persistence_dir": str(folder / "mosquitto" / "data"),
        "cloud_mosquitto_log_dest": f"file {folder / 'mosquitto' / 'mosquitto.log'}",
        "cloud_mosquitto_local_port": free_port(),
        "cloud_mosquitto_tls_address": "127.0.0.1",
        "cloud_mosquitto_tls_port": free_port(),
        # The app: this checkout's venv stands where the role's venv would be.
        "cloud_app_user": "root",
        "cloud_app_group": "root",
        "cloud_app_venv": str(Path(sys.prefix)),
        "cloud_app_data_dir": str(folder / "data"),
        "cloud_app_env_file": str(folder / "etc" / "cloud.env"),
        "cloud_app_unit_dir": str(folder / "units"),
        "cloud_app_web_port": free_port(),
        "cloud_app_web_workers": 1,
        # nginx
        "cloud_proxy_site_path": str(folder / "nginx" / "voxfleet.conf"),
        "cloud_proxy_http_port": free_port(),
        "cloud_proxy_https_port": free_port(),
        "cloud_proxy_ipv6": False,
    }
    for existing in ("nginx", "units"):  # on a server these folders come with nginx and systemd
        (folder / existing).mkdir()
    (folder / "vars.json").write_text(json.dumps(variables))
    python = sys.executable
    (folder / "inventory.yml").write_text(json.dumps({"cloud": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": python}}}}))
    out = run_render(folder)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-4000:]
    return Rendered(folder, variables, out, certs)


def recap(output: str) -> dict[str, int]:
    """The numbers of the PLAY RECAP line for localhost."""
    line = next(row for row in output.splitlines() if row.startswith("localhost") and "ok=" in row)
    return {k: int(v) for k, v in (part.split("=") for part in line.split(":", 1)[1].split())}


def test_render_changes_files_then_a_second_run_changes_nothing(rendered: Rendered):
    assert recap(rendered.first_run.stdout)["changed"] > 0
    again = rendered.run_again()
    assert again.returncode == 0, again.stdout[-4000:]
    numbers = recap(again.stdout)
    assert numbers["changed"] == 0 and numbers["failed"] == 0, again.stdout[-4000:]


def test_no_secret_in_ansible_output(rendered: Rendered):
    output = rendered.first_run.stdout + rendered.first_run.stderr
    for secret in SECRETS:
        assert secret not in output


def test_a_short_secret_stops_the_run_before_anything_is_written(rendered: Rendered, tmp_path: Path):
    """A vault left with a placeholder or a weak value: a clear message, no file touched, no secret shown."""
    variables = {**rendered.variables, "cloud_mosquitto_admin_password": "short",
                 "cloud_app_unit_dir": str(tmp_path / "units"),
                 "cloud_app_env_file": str(tmp_path / "cloud.env")}
    (tmp_path / "units").mkdir()
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    shutil.copy(rendered.folder / "inventory.yml", tmp_path / "inventory.yml")
    out = run_render(tmp_path)
    assert out.returncode != 0
    assert "A cloud secret is missing or shorter than 16 characters" in out.stdout
    assert "vault.yml" in out.stdout
    assert list((tmp_path / "units").iterdir()) == [] and not (tmp_path / "cloud.env").exists()
    for secret in SECRETS:
        assert secret not in out.stdout + out.stderr

def run_tls_role(rendered: Rendered, folder: Path, **overrides: object) -> subprocess.CompletedProcess:
    variables = {**rendered.variables, "cloud_tls_key_group": "root", **overrides}
    (folder / "vars.json").write_text(json.dumps(variables))
    shutil.copy(rendered.folder / "inventory.yml", folder / "inventory.yml")
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(folder / "inventory.yml"), "cloud.yml",
                           "--tags", "tls", "-e", f"@{folder / 'vars.json'}"],
                          cwd=ANSIBLE, env=ansible_env(folder), capture_output=True, text=True, timeout=300)


def test_lab_certificate_is_made_once_with_a_private_key(rendered: Rendered, tmp_path: Path):
    cert, key = tmp_path / "tls" / "fullchain.pem", tmp_path / "tls" / "privkey.pem"
    paths = {"cloud_tls_certificate": str(cert), "cloud_tls_private_key": str(key),
             "cloud_tls_self_signed": True, "cloud_tls_common_name": "cloud.lab.example"}
    first = run_tls_role(rendered, tmp_path, **paths)
    assert first.returncode == 0, first.stdout[-4000:]
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "cloud.lab.example"
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["cloud.lab.example"]
    assert stat.S_IMODE(key.stat().st_mode) == 0o640
    loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
    assert loaded.public_key().public_numbers() == certificate.public_key().public_numbers()
    again = run_tls_role(rendered, tmp_path, **paths)
    assert again.returncode == 0 and recap(again.stdout)["changed"] == 0, again.stdout[-4000:]
    assert x509.load_pem_x509_certificate(cert.read_bytes()).serial_number == certificate.serial_number


def test_a_missing_certificate_stops_the_run_with_both_paths_named(rendered: Rendered, tmp_path: Path):
    cert, key = tmp_path / "none" / "fullchain.pem", tmp_path / "none" / "privkey.pem"
    out = run_tls_role(rendered, tmp_path, cloud_tls_certificate=str(cert), cloud_tls_private_key=str(key))
    assert out.returncode != 0
    assert f"{cert} and {key} must exist on the server" in " ".join(out.stdout.split())
    assert not (tmp_path / "none").exists()

# --- the app's environment and units -----------------------------------------------------------------

def read_env_file(path: Path) -> dict[str, str]:
    """Read it by systemd's rules for double-quoted values (\\" and \\\\ escapes, no expansion), so a
    quoting mistake in the template shows up as a wrong value."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, raw = line.partition("=")
        assert raw.startswith('"') and raw.endswith('"') and len(raw) >= 2, f"{key}: not one quoted value"
        value, chars = [], iter(raw[1:-1])
        for char in chars:
            assert char != '"', f"{key}: an unescaped quote ends the value early"
            value.append(next(chars) if char == "\\" else char)
        values[key] = "".join(value)
    return values


def test_env_file_is_root_only_and_the_cloud_accepts_it(rendered: Rendered):
    env_file = rendered.path("cloud_app_env_file")
    mode = stat.S_IMODE(env_file.stat().st_mode)
    assert mode == 0o600, oct(mode)
    environ = read_env_file(env_file)
    config = load_config(environ=environ)
    assert config.data_dir == rendered.path("cloud_app_data_dir").resolve()
    assert config.database_role == "voxfleet_app"
    assert config.broker_url == f"mqtt://127.0.0.1:{rendered.variables['cloud_mosquitto_local_port']}"
    assert config.broker_device_url == "mqtts://localhost:8883"
    assert config.public_url == "https://localhost"
    assert config.broker_admin_password.get_secret_value() == ADMIN_PASSWORD
    assert config.broker_service_password.get_secret_value() == SERVICE_PASSWORD
    assert config.secret_key.get_secret_value() == SECRET_KEY
    from sqlalchemy.engine import make_url

    url = make_url(config.database_url)
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "voxfleet", DB_PASSWORD, "127.0.0.1", 5432, "voxfleet")


def test_units_are_written_one_per_service(rendered: Rendered):
    units = sorted(p.name for p in rendered.path("cloud_app_unit_dir").iterdir())
    assert units == ["voxfleet-billing.service", "voxfleet-ingest@.service", "voxfleet-web.service",
                     "voxfleet-webhooks.service"]
    web = (rendered.path("cloud_app_unit_dir") / "voxfleet-web.service").read_text()
    assert f"--bind 127.0.0.1:{rendered.variables['cloud_app_web_port']}" in web
    assert "cloud.wsgi:app" in web and f"EnvironmentFile={rendered.variables['cloud_app_env_file']}" in web
    ingest = (rendered.path("cloud_app_unit_dir") / "voxfleet-ingest@.service").read_text()
    assert "cloud ingest --workers 1 --name %H-%i" in ingest
    webhooks = (rendered.path("cloud_app_unit_dir") / "voxfleet-webhooks.service").read_text()
    assert exec_start(rendered.path("cloud_app_unit_dir") / "voxfleet-webhooks.service") == [
        f"{rendered.variables['cloud_app_venv']}/bin/voxfleet", "cloud", "webhooks", "run"]
    assert f"EnvironmentFile={rendered.variables['cloud_app_env_file']}" in webhooks


def systemd_analyze_usable() -> str | None:
    """Why systemd-analyze cannot verify units here, or None when it can."""
    if not shutil.which("systemd-analyze"):
        return "systemd-analyze is not installed (Debian package systemd)"
    probe = subprocess.run(["systemd-analyze", "verify", "/dev/null"], capture_output=True, text=True)
    if "Failed to" in probe.stderr and "bus" in probe.stderr.lower():
        return f"systemd-analyze cannot run in this container: {probe.stderr.strip()}"
    return None


UNITS = ["voxfleet-web.service", "voxfleet-ingest@.service", "voxfleet-billing.service",
         "voxfleet-webhooks.service"]


@pytest.mark.parametrize("unit", UNITS)
def test_unit_passes_systemd_analyze_verify(rendered: Rendered, unit: str):
    reason = systemd_analyze_usable()
    if reason:
        pytest.skip(reason)
    path = rendered.path("cloud_app_unit_dir") / unit
    out = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    ours = [line for line in (out.stdout + out.stderr).splitlines() if unit.split("@")[0] in line]
    assert out.returncode == 0, out.stdout + out.stderr
    # Unknown keys and bad values are only warnings to systemd ("..., ignoring"): none in our units.
    assert not [line for line in ours if "ignoring" in line or "Unknown" in line], ours


# --- PostgreSQL --------------------------------------------------------------------------------------

def test_postgresql_role_makes_what_the_migrations_and_the_app_need(rendered: Rendered, tmp_path: Path):
    """The role applied to the test server (as its superuser over TCP, names unique to this test): the
    owner, a non-superuser that cannot create roles, migrates the real schema, and the app's
    connections run as the non-owner role row-level security binds."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from cloud.db.session import make_engine
    from tests.cloud.conftest import _admin_url

    admin_url = make_url(_admin_url())
    suffix = uuid.uuid4().hex[:10]
    database, owner = f"voxfleet_ansible_{suffix}", f"voxfleet_owner_{suffix}"
    variables = {**rendered.variables, "cloud_postgresql_database": database, "cloud_postgresql_owner": owner,
                 "cloud_postgresql_login_host": admin_url.host,
                 "cloud_postgresql_port": admin_url.port or 5432,
                 "cloud_postgresql_login_user": admin_url.username}
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    shutil.copy(rendered.folder / "inventory.yml", tmp_path / "inventory.yml")
    play = [str(BIN / "ansible-playbook"), "-i", str(tmp_path / "inventory.yml"), "cloud.yml",
            "--tags", "postgresql", "-e", f"@{tmp_path / 'vars.json'}"]
    superuser = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        first = subprocess.run(play, cwd=ANSIBLE, env=ansible_env(tmp_path), capture_output=True, text=True,
                               timeout=300)
        assert first.returncode == 0, first.stdout[-6000:]
        assert DB_PASSWORD not in first.stdout + first.stderr
        again = subprocess.run(play, cwd=ANSIBLE, env=ansible_env(tmp_path), capture_output=True, text=True,
                               timeout=300)
        assert again.returncode == 0 and recap(again.stdout)["changed"] == 0, again.stdout[-6000:]

        owner_url = admin_url.set(username=owner, password=DB_PASSWORD, database=database)
        environ = {**os.environ, "VOXFLEET_DATA_DIR": str(tmp_path / "data"),
                   "VOXFLEET_DATABASE_URL": owner_url.render_as_string(hide_password=False)}
        migrated = subprocess.run([str(BIN / "voxfleet"), "cloud", "db", "upgrade"], env=environ,
                                  capture_output=True, text=True, timeout=300)
        assert migrated.returncode == 0, migrated.stderr
        with superuser.connect() as conn:
            roles = ("SELECT rolsuper, rolcreaterole, rolcanlogin, rolbypassrls FROM pg_roles "
                     "WHERE rolname = :r")
            assert conn.execute(text(roles), {"r": owner}).one() == (False, False, True, False)
            assert conn.execute(text(roles), {"r": "voxfleet_app"}).one() == (False, False, False, False)
            assert conn.execute(text("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = :d"),
                                {"d": database}).scalar_one() == owner
        app = make_engine(owner_url, app_role="voxfleet_app")
        try:
            with app.connect() as conn:
                assert conn.execute(text("SELECT current_user")).scalar_one() == "voxfleet_app"
                # The migrations' policies apply even to the tables' owner (FORCE), so to the app role too.
                assert conn.execute(text("SELECT relforcerowsecurity FROM pg_class WHERE relname = 'devices'")
                                    ).scalar_one() is True
        finally:
            app.dispose()
    finally:
        with superuser.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{owner}"'))
        superuser.dispose()

# --- Mosquitto ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def broker(rendered: Rendered) -> Iterator[Rendered]:
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    process = subprocess.Popen([mosquitto, "-c", str(rendered.path("cloud_mosquitto_conf_path"))],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ports = (rendered.variables["cloud_mosquitto_local_port"], rendered.variables["cloud_mosquitto_tls_port"])
    deadline = time.monotonic() + 15
    try:
        for port in ports:
            while True:
                if process.poll() is not None:
                    pytest.fail(f"mosquitto exited with {process.returncode} on the rendered configuration: "
                                f"{process.stderr.read().decode(errors='replace')}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"mosquitto did not listen on {port}"
                    time.sleep(0.05)
        yield rendered
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def device_account(broker: Rendered) -> tuple[str, str, str]:
    """A device account made as the cloud makes one at pairing: through Dynamic Security, as its admin."""
    device_id = f"dev-{uuid.uuid4().hex[:10]}"
    username, password = f"device-{device_id}", "device-" + uuid.uuid4().hex
    with DynsecAdmin("127.0.0.1", broker.variables["cloud_mosquitto_local_port"], "voxfleet-admin",
                     ADMIN_PASSWORD) as admin:
        admin.add_device(device_id, username, password)
    return device_id, username, password


def connect(port: int, client_id: str, username: str | None, password: str | None,
            tls_ca: Path | None = None, tls_default_trust: bool = False) -> str:
    """Connect once and report what the broker said ('Success', 'Not authorized', ...) or the error."""
    answer: list[str] = []
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    if username is not None:
        client.username_pw_set(username, password)
    if tls_ca is not None or tls_default_trust:
        client.tls_set(ca_certs=str(tls_ca) if tls_ca else None)

    def on_connect(c, userdata, flags, reason_code, properties):
        answer.append(str(reason_code))
        done.set()

    def on_disconnect(c, userdata, flags, reason_code, properties):
        answer.append(str(reason_code))
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    try:
        client.connect("127.0.0.1", port, keepalive=10)
    except (OSError, ssl.SSLError) as exc:
        return f"error: {exc}"
    client.loop_start()
    try:
        done.wait(10)
    finally:
        client.disconnect()
        client.loop_stop()
    return answer[0] if answer else "no answer"


def test_dynsec_state_denies_by_default_and_holds_the_admin(rendered: Rendered):
    state = json.loads(rendered.path("cloud_mosquitto_dynsec_state").read_text())
    assert [c["username"] for c in state["clients"]] == ["voxfleet-admin"]
    assert ADMIN_PASSWORD not in json.dumps(state)
    assert state["defaultACLAccess"] == {"publishClientSend": False, "publishClientReceive": False,
                                         "subscribe": False, "unsubscribe": True}


def test_device_account_connects_and_wrong_password_does_not(broker: Rendered, device_account):
    device_id, username, password = device_account
    port = broker.variables["cloud_mosquitto_local_port"]
    assert connect(port, device_client_id(device_id), username, password) == "Success"
    assert connect(port, device_client_id(device_id), username, password + "x") == "Not authorized"
    assert connect(port, f"anon-{uuid.uuid4().hex[:6]}", None, None) == "Not authorized"


def test_tls_listener_serves_devices_that_trust_the_ca(broker: Rendered, device_account):
    device_id, username, password = device_account
    port = broker.variables["cloud_mosquitto_tls_port"]
    client_id = device_client_id(device_id)
    assert connect(port, client_id, username, password, tls_ca=broker.certs["ca"]) == "Success"
    assert connect(port, device_client_id(device_id), username, "wrong-" + password,
                   tls_ca=broker.certs["ca"]) == "Not authorized"
    # A client that does not trust the test CA is refused at the handshake: the listener really is TLS.
    refused = connect(port, device_client_id(device_id), username, password, tls_default_trust=True)
    assert refused.startswith("error:") and "certificate" in refused.lower(), refused


def test_plain_mqtt_on_the_tls_port_is_refused(broker: Rendered, device_account):
    device_id, username, password = device_account
    port = broker.variables["cloud_mosquitto_tls_port"]
    answer = connect(port, device_client_id(device_id), username, password)
    assert answer != "Success", answer


# --- nginx -------------------------------------------------------------------------------------------

def nginx_wrapper(rendered: Rendered, *, serve: bool) -> Path:
    """The parts of nginx.conf Debian's package provides, around the rendered site, in the test's folder."""
    folder = rendered.folder / "nginx-run"
    folder.mkdir(exist_ok=True)
    temp = "\n".join(f"    {kind}_temp_path {folder}/{kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                             "uwsgi", "scgi"))
    conf = folder / "nginx.conf"
    conf.write_text(f"""pid {folder}/nginx.pid;
error_log {folder}/error.log;
daemon {'off' if serve else 'on'};
worker_processes 1;
events {{ worker_connections 64; }}
http {{
    access_log {folder}/access.log;
{temp}
    include {rendered.path("cloud_proxy_site_path")};
}}
""")
    return conf


def nginx_missing() -> str | None:
    if shutil.which("nginx") or Path("/usr/sbin/nginx").exists():
        return None
    return "nginx is not installed (Debian package nginx; scripts/bootstrap installs it)"


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def test_nginx_accepts_the_site(rendered: Rendered):
    if reason := nginx_missing():
        pytest.skip(reason)
    conf = nginx_wrapper(rendered, serve=False)
    out = subprocess.run([nginx_binary(), "-t", "-c", str(conf)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "syntax is ok" in out.stderr and "test is successful" in out.stderr


def wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"{what} did not listen on {port} within {timeout:.0f}s"
            time.sleep(0.1)


def exec_start(unit: Path) -> list[str]:
    line = next(row for row in unit.read_text().splitlines() if row.startswith("ExecStart="))
    return line.removeprefix("ExecStart=").split()


@pytest.fixture(scope="module")
def cloud_behind_nginx(rendered: Rendered) -> Iterator[Rendered]:
    """The web unit's own command line and environment file, on a SQLite database (PostgreSQL with the
    rendered credentials is a server's, not this machine's), behind nginx with the rendered site."""
    if reason := nginx_missing():
        pytest.skip(reason)
    environ = {**os.environ, **read_env_file(rendered.path("cloud_app_env_file")),
               "VOXFLEET_DATABASE_URL": f"sqlite:///{rendered.folder / 'data' / 'cloud.db'}"}
    voxfleet = str(BIN / "voxfleet")
    migrated = subprocess.run([voxfleet, "cloud", "db", "upgrade"], env=environ, capture_output=True,
                              text=True, timeout=300)
    assert migrated.returncode == 0, migrated.stderr
    unit = rendered.path("cloud_app_unit_dir") / "voxfleet-web.service"
    web = subprocess.Popen(exec_start(unit), env=environ, cwd=rendered.path("cloud_app_data_dir"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nginx = subprocess.Popen([nginx_binary(), "-c", str(nginx_wrapper(rendered, serve=True))],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(rendered.variables["cloud_app_web_port"], web, "gunicorn")
        wait_for_port(rendered.variables["cloud_proxy_https_port"], nginx, "nginx")
        yield rendered
    finally:
        for process in (nginx, web):
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_https_reaches_the_cloud_with_hsts(cloud_behind_nginx: Rendered):
    port = cloud_behind_nginx.variables["cloud_proxy_https_port"]
    context = ssl.create_default_context(cafile=str(cloud_behind_nginx.certs["ca"]))
    url = f"https://localhost:{port}/api/v1/health"
    with urllib.request.urlopen(url, context=context, timeout=30) as answer:
        assert answer.status == 200
        body = json.loads(answer.read())
        assert (body["status"], body["database"]) == ("ok", "ok")
        assert body["protocol"]["reads"] == [1]  # what devices read through the proxy before they write
        assert answer.headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_plain_http_redirects_to_https(cloud_behind_nginx: Rendered):
    http_port = cloud_behind_nginx.variables["cloud_proxy_http_port"]
    https_port = cloud_behind_nginx.variables["cloud_proxy_https_port"]
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(f"http://localhost:{http_port}/api/v1/health?x=1", timeout=30)
    assert caught.value.code == 301
    assert caught.value.headers["Location"] == f"https://localhost:{https_port}/api/v1/health?x=1"


# --- webhook deliveries ------------------------------------------------------------------------------

def test_the_webhooks_unit_delivers_a_queued_webhook_and_stops_on_sigterm(rendered: Rendered,
                                                                         receiver: Receiver, tmp_path: Path):
    """The webhook unit's own command line and environment file (on SQLite, as above) send a queued
    delivery to a real receiver, and SIGTERM stops it cleanly. Without this unit a provisioned cloud
    queued webhooks and never sent them."""
    from cloud import admin
    from cloud.db import Webhook, WebhookDelivery
    from cloud.db.session import make_engine
    from cloud.scoping import PlatformScope, TenantScope, session_factory

    database_url = f"sqlite:///{tmp_path / 'cloud.db'}"
    # The receiver is on 127.0.0.1, which the rendered environment rightly refuses: allowed for this test.
    environ = {**os.environ, **read_env_file(rendered.path("cloud_app_env_file")),
               "VOXFLEET_DATABASE_URL": database_url, "VOXFLEET_WEBHOOKS_ALLOW_PRIVATE": "true"}
    migrated = subprocess.run([str(BIN / "voxfleet"), "cloud", "db", "upgrade"], env=environ,
                              capture_output=True, text=True, timeout=300)
    assert migrated.returncode == 0, migrated.stderr
    engine = make_engine(database_url)
    sessions = session_factory(engine)
    with sessions() as db:
        tenant = admin.create_tenant(db, "Unit Test Hotels", "it@hotels.example", "secret-key").tenant
        scope = TenantScope(db, tenant.id)
        scope.add(Webhook(url=receiver.url, events=["device.offline"], secret="whsec_" + uuid.uuid4().hex))
        scope.commit()
        tenant_id = tenant.id
    key = queue_event(sessions, tenant_id, "device.offline", {"device_id": "d-1"})
    unit = rendered.path("cloud_app_unit_dir") / "voxfleet-webhooks.service"
    worker = subprocess.Popen(exec_start(unit), env=environ, cwd=rendered.path("cloud_app_data_dir"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        got = receiver.arrived.get(timeout=60)
        assert got.headers["X-VoxFleet-Delivery"] == str(key)
        for _ in range(400):  # the worker records the answer just after the receiver saw it
            with sessions() as db:
                [row] = PlatformScope(db).all(WebhookDelivery)
            if row.status != "pending":
                break
            time.sleep(0.05)
        assert (row.status, row.response_code) == ("delivered", 200)
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        engine.dispose()
    assert worker.returncode == 0, err
    assert "stopping after the delivery in hand" in err
    for secret in SECRETS:
        assert secret not in out + err


# --- ordering that a render-only run cannot show ------------------------------------------------------

def _role_tasks(role: str, file: str = "main.yml") -> list[dict]:
    """A role's tasks in run order, include_tasks files inlined, blocks flattened."""
    import yaml

    out: list[dict] = []

    def walk(tasks: list[dict]) -> None:
        for task in tasks or []:
            out.append(task)
            for key in ("block", "rescue", "always"):
                walk(task.get(key))
            include = task.get("ansible.builtin.include_tasks")
            if include:
                name = include["file"] if isinstance(include, dict) else include
                walk(yaml.safe_load((ANSIBLE / "roles" / role / "tasks" / name).read_text()))

    walk(yaml.safe_load((ANSIBLE / "roles" / role / "tasks" / file).read_text()))
    return out


def _notifies(task: dict) -> list[str]:
    notify = task.get("notify") or []
    return [notify] if isinstance(notify, str) else list(notify)


def test_mosquitto_restarts_on_its_new_configuration_before_the_app_uses_dynsec():
    """cloud_app's migrate step talks to Dynamic Security: Mosquitto must already run the new
    mosquitto.conf, so cloud_mosquitto flushes its restart before it ends, and a failure later in
    the play does not drop a queued restart (force_handlers)."""
    import yaml

    roles = [entry["role"] for entry in yaml.safe_load((ANSIBLE / "cloud.yml").read_text())[0]["roles"]]
    assert roles.index("cloud_mosquitto") < roles.index("cloud_app")
    tasks = _role_tasks("cloud_mosquitto")
    notifying = [i for i, t in enumerate(tasks) if "Restart mosquitto" in _notifies(t)]
    flushes = [i for i, t in enumerate(tasks) if t.get("ansible.builtin.meta") == "flush_handlers"]
    assert notifying and flushes and max(flushes) > max(notifying), [t.get("name") for t in tasks]
    # ... and a broker still on an older mosquitto.conf (a run that stopped before its restart) is
    # restarted by the next run.
    assert any(t.get("ansible.builtin.systemd_service", {}).get("state") == "restarted"
               and "mtime" in str(t.get("when")) for t in tasks[max(flushes):])
    migrate = _role_tasks("cloud_app", "migrate.yml")
    assert any("ensure_service_account" in str(t) for t in migrate)
    config = (ANSIBLE / "ansible.cfg").read_text()
    assert re.search(r"(?m)^force_handlers\s*=\s*True\s*$", config), config


def test_cloud_wheel_is_built_fresh_and_reinstalled_by_checksum():
    """Never `sort | last` over a folder of old builds (0.9.0 > 0.10.0, a downgrade keeps the newer
    wheel); the reinstall follows the installed wheel's checksum, not the copy having changed."""
    tasks = _role_tasks("cloud_app", "install.yml")
    names = [t.get("name", "") for t in tasks]
    text = (ANSIBLE / "roles" / "cloud_app" / "tasks" / "install.yml").read_text()
    vars_text = (ANSIBLE / "roles" / "cloud_app" / "vars" / "main.yml").read_text()
    assert "sort | last" not in text + vars_text
    tmp = next(i for i, t in enumerate(tasks) if "ansible.builtin.tempfile" in t)
    build = next(i for i, t in enumerate(tasks) if "pip wheel" in str(t.get("ansible.builtin.command")))
    assert tmp < build and "cloud_app_wheel_tmp.path" in str(tasks[build]), names
    remove = next(t for t in tasks if t.get("ansible.builtin.file", {}).get("state") == "absent"
                  and "stale" in str(t.get("loop")))
    assert remove
    reinstall = next(t for t in tasks if "--force-reinstall" in str(t.get("ansible.builtin.command")))
    assert "checksum" in str(reinstall["when"]) and "is changed" not in str(reinstall["when"])
