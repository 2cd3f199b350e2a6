"""The setup web's hardening: DNS rebinding, the systemd stack's bus, bounded argon2, request limits,
first-boot and pairing races, clear 4xx answers to bad input, the password page's throttle, settings
and credentials written without lost updates, and recording limits that match the docs."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import threading
import time
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml
from argon2 import PasswordHasher

from device import netman
from device.paths import DevicePaths
from device.settings import DeviceSettings, load_settings, save_settings, settings_path
from device.sync import pairing
from device.web import credentials, device_info, lan, saving, serve, voice_checks
from device.web.app import create_app
from device.web.pairing_job import PairingJob
from tests.conftest import free_port
from tests.device.web.setup_web_kit import PASSWORD, csrf, text

LAN_ADDRESS = "192.168.1.20"
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def paths(tmp_path) -> DevicePaths:
    return DevicePaths.at(tmp_path / "device").create()


@pytest.fixture
def app(paths):
    app = create_app(paths)
    app.config["TESTING"] = True
    return app


def client(app, address: str = LAN_ADDRESS):
    web = app.test_client()
    web.environ_base["REMOTE_ADDR"] = address
    return web


def first_boot_form(web, **fields) -> dict:
    return {"csrf_token": csrf(web.get("/first-boot")), "password": PASSWORD, "repeat": PASSWORD,
            "name": "Kitchen", "lang": "en-GB", "timezone": "Europe/Berlin", **fields}


def signed_in(app, address: str = LAN_ADDRESS):
    web = client(app, address)
    if not credentials.has_password(app.config["DEVICE_PATHS"].root):
        assert web.post("/first-boot", data=first_boot_form(web)).status_code == 302
        return web
    page = web.get("/sign-in")
    assert web.post("/sign-in", data={"csrf_token": csrf(page), "password": PASSWORD}).status_code == 302
    return web


def wav_bytes(samples: np.ndarray, rate: int, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


# -- 1. DNS rebinding: the Host header must name this device ---------------------------------------------


def test_a_request_for_a_foreign_host_name_is_refused(app, paths):
    web = client(app)
    for host in ("evil.example", "evil.example:8080", "192.168.1.5.evil.example", "localhost.evil.example"):
        refused = web.get("/first-boot", headers={"Host": host})
        assert refused.status_code == 403, host
        assert "only answers to the device's own address" in refused.get_data(as_text=True)
    # A rebound first boot changes nothing.
    form = first_boot_form(web)
    assert web.post("/first-boot", data=form, headers={"Host": "evil.example"}).status_code == 403
    assert not credentials.has_password(paths.root) and not settings_path(paths.root).exists()

    hostname = socket.gethostname()
    for host in ("192.168.1.5", "192.168.1.5:8080", "[fe80::1]:8080", "[::1]", "localhost:8080",
                 f"{hostname}.local", f"{hostname.upper()}.LOCAL:8080", hostname, hostname.upper()):
        assert web.get("/first-boot", headers={"Host": host}).status_code == 200, host


def test_host_names_that_can_only_mean_this_device():
    allowed = ("10.0.0.7", "10.0.0.7:80", "[fd00::5]:8080", "[fe80::1%eth0]", "LocalHost", "kitchen.local",
               "kitchen.local.:8080", "pi-kitchen", "PI-KITCHEN.lan", "pi-kitchen.lan:8080")
    refused = ("", "evil.example", "fd00::5", "[fd00::5", "[fd00::5]x", "[nothost]", "10.0.0.7:80:80",
               "localhost:http", "pi-kitchen.evil.example", "local")
    for host in allowed:
        assert lan.host_allowed(host, "pi-kitchen.lan"), host
    for host in refused:
        assert not lan.host_allowed(host, "pi-kitchen.lan"), host


# -- 2. A systemd stack: found on the settings' bus, restarted by voxfleet-restarter --------------------


@pytest.fixture
def systemd_like_stack(tmp_path):
    """A real messagebus on the settings' port, started as its systemd unit would start it: no
    supervisor, so no ``run/supervisor.json`` and nobody answering restart requests but a restarter."""
    from device.stack.config import service_env, write_config
    from device.stack.supervisor import SERVICES, bus_is_up

    paths = DevicePaths.at(tmp_path / "systemd").create()
    settings = DeviceSettings(bus_port=free_port(), timezone="UTC")
    save_settings(paths.root, settings)
    write_config(settings, paths)
    spec = next(spec for spec in SERVICES if spec.name == "messagebus")
    with open(paths.logs / "messagebus.log", "ab") as log:
        process = subprocess.Popen(spec.argv, env=service_env(paths), cwd=str(paths.root), stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not bus_is_up(settings.bus_host, settings.bus_port):
            assert process.poll() is None and time.monotonic() < deadline, "the messagebus did not start"
            time.sleep(0.2)
        assert not (paths.run / "supervisor.json").exists()
        yield paths, settings
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def bus_client(settings):
    from ovos_bus_client import MessageBusClient

    bus = MessageBusClient(host=settings.bus_host, port=settings.bus_port)
    bus.run_in_thread()
    assert bus.connected_event.wait(10)
    return bus


def test_saving_on_a_systemd_stack_asks_the_restarter(systemd_like_stack):
    from device.stack.restarter import UnitRestarter

    paths, settings = systemd_like_stack
    bus = saving.stack_running(paths)
    assert bus == (settings.bus_host, settings.bus_port, saving.RESTARTER)
    assert device_info.services(paths)["running"]

    # Nothing answers restart requests yet: said within seconds, not after the 200 s timeout.
    started = time.monotonic()
    note = saving.save_fields(paths, name="Hall")
    assert note.startswith("Saved, but restarting agent failed: nothing on the device's messagebus answers")
    assert time.monotonic() - started < 30 and load_settings(paths.root).name == "Hall"

    # The real restarter, with systemctl replaced by a recorder (no systemd here), and the agent's
    # ready answer on the bus as the restarted unit would give it.
    ran: list[list[str]] = []

    def run(argv):
        ran.append(list(argv))
        return subprocess.CompletedProcess(list(argv), 0, "", "")

    restarter = UnitRestarter(paths.root, systemctl="systemctl", run=run, ready_timeout=20)
    restarter.connect(settings.bus_host, settings.bus_port)
    agent = bus_client(settings)
    agent.on("voxfleet.agent.is_ready", lambda message: agent.emit(message.response({"status": True})))
    try:
        assert saving.save_fields(paths, name="Reception") == "Saved; restarted agent."
        assert ["systemctl", "restart", "voxfleet-agent.service"] in ran
        assert load_settings(paths.root).name == "Reception"
    finally:
        agent.close()
        restarter.bus.close()


def test_status_says_a_systemd_stack_runs(systemd_like_stack):
    paths, _ = systemd_like_stack
    app = create_app(paths)
    web = signed_in(app)
    page = text(web.get("/status"))
    assert "The voice services are not running" not in page


def test_no_bus_means_not_running(paths):
    save_settings(paths.root, DeviceSettings(bus_port=free_port(), timezone="UTC"))
    assert saving.stack_running(paths) is None
    assert not device_info.services(paths)["running"]


def test_systemd_unit_states_are_read():
    output = ("Id=voxfleet-listener.service\nActiveState=active\nMainPID=812\nNRestarts=2\n"
              "MemoryCurrent=314572800\n\nId=voxfleet-core.service\nActiveState=failed\nMainPID=0\n"
              "NRestarts=5\nMemoryCurrent=[not set]\n\nId=ssh.service\nActiveState=active\n")
    assert device_info.parse_unit_states(output) == {
        "listener": {"state": "ready", "pid": 812, "restarts": 2, "rss_mb": 300.0},
        "core": {"state": "failed", "pid": None, "restarts": 5, "rss_mb": None},
    }


# -- 3. argon2 within the unit's memory ------------------------------------------------------------------


def test_argon2_parameters_are_bounded_and_old_hashes_still_verify(paths):
    hasher = credentials._hasher
    assert (hasher.time_cost, hasher.memory_cost, hasher.parallelism) == (3, 19456, 1)
    credentials.set_password(paths.root, PASSWORD)
    stored = json.loads((paths.root / "setup-web.json").read_text())["password_hash"]
    assert "m=19456,t=3,p=1" in stored
    # A hash made with argon2-cffi's defaults (the previous release) still signs in.
    data = json.loads((paths.root / "setup-web.json").read_text())
    data["password_hash"] = PasswordHasher().hash("an older password")
    (paths.root / "setup-web.json").write_text(json.dumps(data))
    assert credentials.verify_password(paths.root, "an older password")
    assert not credentials.verify_password(paths.root, PASSWORD)


def test_password_checks_run_one_at_a_time(paths, monkeypatch):
    credentials.set_password(paths.root, PASSWORD)
    active, most = [0], [0]
    guard = threading.Lock()
    real = credentials._hasher

    class Counting:
        def verify(self, stored, password):
            with guard:
                active[0] += 1
                most[0] = max(most[0], active[0])
            try:
                time.sleep(0.05)
                return real.verify(stored, password)
            finally:
                with guard:
                    active[0] -= 1

    monkeypatch.setattr(credentials, "_hasher", Counting())
    results: list[bool] = []
    def check() -> None:
        results.append(credentials.verify_password(paths.root, PASSWORD))

    threads = [threading.Thread(target=check) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [True] * 6 and most[0] == 1


def test_setup_web_unit_memory_fits_the_voice_tests():
    defaults = yaml.safe_load((ROOT / "ansible/roles/device_services/defaults/main.yml").read_text())
    unit = next(svc for svc in defaults["device_services_list"] if svc["name"] == "setup-web")
    assert unit["memory_max"] == "1G"


# -- 4. waitress refuses an oversized body before buffering it ---------------------------------------------


def test_waitress_refuses_a_body_over_the_upload_limit(app):
    from waitress import create_server

    options = serve.waitress_options(app)
    assert options["max_request_body_size"] == app.config["MAX_CONTENT_LENGTH"] + 64 * 1024
    server = create_server(app, host="127.0.0.1", port=0, **options)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", server.effective_port), timeout=10) as sock:
            # Only the headers are sent: the refusal must come without the body being read.
            sock.sendall(f"POST /wake-word/test HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                         f"application/octet-stream\r\nContent-Length: {1024 * 2**20}\r\n\r\n".encode())
            answer = sock.recv(4096).decode("latin-1")
        assert answer.startswith("HTTP/1.1 413"), answer[:200]
    finally:
        server.close()
        thread.join(10)


# -- 5. first boot: a second form cannot replace the owner's password ---------------------------------------


def test_first_boot_rechecks_the_password_inside_the_view(app, paths):
    credentials.set_password(paths.root, PASSWORD)
    form = {"password": "intruder password", "repeat": "intruder password", "name": "Intruder",
            "lang": "en-US", "timezone": "UTC"}
    # The guard let this request in before the owner's password existed; the view itself must refuse.
    with app.test_request_context("/first-boot", method="POST", data=form,
                                  environ_base={"REMOTE_ADDR": LAN_ADDRESS}):
        response = app.view_functions["auth.first_boot"]()
    assert response.status_code == 302 and response.location.endswith("/sign-in")
    assert credentials.verify_password(paths.root, PASSWORD)
    assert not credentials.verify_password(paths.root, "intruder password")
    assert not settings_path(paths.root).exists()


def test_first_boot_creates_the_password_before_the_save_waits(app, paths, monkeypatch):
    real_save = saving.save_fields
    release = threading.Event()

    def slow_save(*args, **kwargs):  # as a save that waits minutes for services to restart
        release.wait(30)
        return real_save(*args, **kwargs)

    monkeypatch.setattr(saving, "save_fields", slow_save)
    owner, other = client(app), client(app, "192.168.1.77")
    owner_form, other_form = first_boot_form(owner), first_boot_form(other, password="other password",
                                                                       repeat="other password")
    answers = {}
    thread = threading.Thread(target=lambda: answers.setdefault("owner", owner.post("/first-boot",
                                                                                   data=owner_form)))
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not credentials.has_password(paths.root):
            assert time.monotonic() < deadline, "the password was not created before the save"
            time.sleep(0.02)
        second = other.post("/first-boot", data=other_form)
        assert second.status_code == 302 and second.location.endswith("/sign-in")
    finally:
        release.set()
        thread.join(30)
    assert answers["owner"].status_code == 302 and answers["owner"].location.endswith("/status")
    assert credentials.verify_password(paths.root, PASSWORD)
    assert not credentials.verify_password(paths.root, "other password")
    assert load_settings(paths.root).name == "Kitchen"


# -- 6. pairing: one run at a time, a stale run writes nothing -----------------------------------------------


@pytest.fixture
def fake_cloud(monkeypatch):
    """device.sync.pairing's network calls replaced: codes named after the cloud, claims that never come."""
    gates: dict[str, threading.Event] = {}
    saved: list[str] = []

    def request_code(cloud, secret):
        gate = gates.get(cloud)
        if gate is not None:
            gate.wait(30)
        name = cloud.rsplit("/", 1)[-1].upper()
        return pairing.Code(f"CODE-{name}", "key", datetime.now(UTC) + timedelta(minutes=5), 0.02)

    def wait_for_claim(cloud, code, secret, session=None, sleep=time.sleep):
        while True:
            sleep(0.02)

    monkeypatch.setattr(pairing, "check_cloud", lambda cloud: None)
    monkeypatch.setattr(pairing, "request_code", request_code)
    monkeypatch.setattr(pairing, "wait_for_claim", wait_for_claim)
    monkeypatch.setattr(pairing, "save_pairing", lambda data_dir, cloud, creds: saved.append(cloud))
    return gates, saved


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_two_starts_at_once_leave_one_run(tmp_path, fake_cloud):
    job = PairingJob(tmp_path)
    barrier = threading.Barrier(2)

    def start(cloud):
        barrier.wait(5)
        job.start(cloud)

    def running() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "pairing" and t.is_alive()}

    before = running()
    threads = [threading.Thread(target=start, args=(f"http://cloud/{name}",)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    wait_for(lambda: job.snapshot().state == "waiting")
    snap = job.snapshot()
    assert snap.code == f"CODE-{snap.cloud.rsplit('/', 1)[-1].upper()}"  # one run's state, not a mix
    assert len(running() - before) == 1  # the replaced run was stopped and joined
    job.cancel()
    assert job.snapshot().state == "idle"


def test_a_cancelled_run_cannot_write_into_the_new_one(tmp_path, fake_cloud, monkeypatch):
    gates, saved = fake_cloud
    monkeypatch.setattr(PairingJob, "JOIN_TIMEOUT", 0.1)  # the old run is stuck in its HTTP request
    gates["http://cloud/old"] = threading.Event()
    job = PairingJob(tmp_path)
    job.start("http://cloud/old")
    job.start("http://cloud/new")
    wait_for(lambda: job.snapshot().state == "waiting")
    gates["http://cloud/old"].set()  # the old request answers now, after it was replaced
    time.sleep(0.5)
    snap = job.snapshot()
    assert (snap.state, snap.cloud, snap.code) == ("waiting", "http://cloud/new", "CODE-NEW")
    assert saved == []
    job.cancel()
    assert job.snapshot().state == "idle"


# -- 7. bad input gets a clear 4xx, not a server error -----------------------------------------------------


def test_a_huge_history_page_shows_the_last_page(app, paths):
    from device.sync.store import Store

    store = Store(paths.root / "store.db")
    for n in range(25):
        store.record_session({"session_id": f"s{n:02d}", "started_at": time.time() - 3600 + n * 60,
                              "wake_word": "hey_jarvis", "transcript": f"number {n}",
                              "end_state": "answered"})
    store.db.conn.close()
    web = signed_in(app)
    for page in ("1000000000000000000", "99999999999", "2"):
        answer = web.get(f"/history?page={page}")
        assert answer.status_code == 200, page
        assert "Page 2 of 2" in text(answer) and 'data-session="s04"' in answer.get_data(as_text=True)
    for page in ("-5", "9" * 5000, "abc"):  # not a usable number: the first page
        assert "Page 1 of 2" in text(web.get(f"/history?page={page}")), page


def test_a_malformed_cloud_address_is_explained(app, paths):
    with pytest.raises(pairing.PairingFailed, match="is not a web address"):
        pairing.check_cloud("http://[abc")
    web = signed_in(app)
    page = web.get("/cloud")
    answer = web.post("/cloud/pair", data={"csrf_token": csrf(page), "cloud": "http://[abc"})
    assert answer.status_code == 400 and "is not a web address" in text(answer)
    assert not (paths.root / "cloud.json").exists()


def test_a_nul_in_wifi_name_or_password_is_refused(app, monkeypatch):
    with pytest.raises(netman.NetworkError, match="NUL"):
        netman.join("Ho\x00me", "password1")
    with pytest.raises(netman.NetworkError, match="NUL"):
        netman.join("Home", "pass\x00word1")
    # The page, as on a device with NetworkManager (nmcli itself is never reached).
    monkeypatch.setattr(netman, "unavailable_reason", lambda: None)
    monkeypatch.setattr(netman, "devices", lambda: [])
    web = signed_in(app)
    token = csrf(web.get("/network"))
    for form in ({"ssid": "Ho\x00me", "password": "password1"},
                 {"ssid": "Home", "password": "pass\x00word1"}):
        answer = web.post("/network/join", data={"csrf_token": token, **form})
        assert answer.status_code == 400 and "cannot contain a NUL character" in text(answer)
        assert "\x00" not in answer.get_data(as_text=True)


def test_a_device_microphone_giving_no_wav_is_a_json_error(app, paths, tmp_path, monkeypatch):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    arecord = fake_bin / "arecord"
    arecord.write_text("#!/bin/sh\nprintf 'this is not a wav file'\n")
    arecord.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    web = signed_in(app)
    settings = load_settings(paths.root).model_copy(update={"audio_in": "alsa"})
    save_settings(paths.root, settings)
    token = csrf(web.get("/wake-word"))
    answer = web.post("/wake-word/test", data={"csrf_token": token, "source": "device", "seconds": "1"},
                      headers={"Accept": "application/json"})
    assert answer.status_code == 400 and answer.is_json
    assert "gave no usable audio" in answer.json["error"]


# -- 8. the password page counts wrong current passwords like sign-in --------------------------------------


def test_wrong_current_passwords_are_throttled(app, paths):
    web = signed_in(app)
    token = csrf(web.get("/password"))
    form = {"csrf_token": token, "current": "guess", "password": "new password 1", "repeat": "new password 1"}
    for _ in range(4):
        assert web.post("/password", data=form).status_code == 400
    fifth = web.post("/password", data=form)
    assert fifth.status_code == 429 and "Too many wrong passwords" in text(fifth)
    right = web.post("/password", data={**form, "current": PASSWORD})
    assert right.status_code == 429 and "Try again in" in text(right)
    assert credentials.verify_password(paths.root, PASSWORD)
    # The same count as sign-in: that address cannot sign in elsewhere either.
    other = client(app)
    page = other.get("/sign-in")
    assert other.post("/sign-in", data={"csrf_token": csrf(page), "password": PASSWORD}).status_code == 429


# -- 9. concurrent writers lose nothing --------------------------------------------------------------------


def test_concurrent_saves_keep_every_field(paths):
    save_settings(paths.root, DeviceSettings(timezone="UTC"))
    fields = [{"name": "Lobby"}, {"lang": "de-DE"}, {"timezone": "Asia/Tokyo"}, {"setup_web_port": 8099},
              {"wake_threshold": 0.6}, {"stt_model": "base"}, {"wake_word": "alexa"}]
    barrier = threading.Barrier(len(fields))
    errors: list[BaseException] = []

    def save(one):
        try:
            barrier.wait(5)
            saving.save_fields(paths, **one)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(one,)) for one in fields]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    stored = json.loads(settings_path(paths.root).read_text())
    for one in fields:
        assert {k: stored.get(k) for k in one} == one
    assert not list(paths.root.glob("*.tmp"))


def test_concurrent_credential_writes_keep_the_file_whole(paths):
    key = credentials.secret_key(paths.root)
    barrier = threading.Barrier(4)

    def change(n):
        barrier.wait(5)
        credentials.set_password(paths.root, f"password number {n}")

    threads = [threading.Thread(target=change, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    data = json.loads((paths.root / "setup-web.json").read_text())
    assert data["secret_key"] == key
    assert any(credentials.verify_password(paths.root, f"password number {n}") for n in range(4))
    assert not list(paths.root.glob("*.tmp"))
    assert (paths.root / "setup-web.json").stat().st_mode & 0o777 == 0o600


# -- 10. recording limits: 15 s of what the docs promise ---------------------------------------------------


def test_fifteen_seconds_of_stereo_at_44_1_and_48_khz_are_accepted(app):
    assert voice_checks.MAX_UPLOAD_BYTES >= 15 * 48_000 * 2 * 2 + 44
    assert app.config["MAX_CONTENT_LENGTH"] > voice_checks.MAX_UPLOAD_BYTES
    for rate in (44_100, 48_000):
        blob = wav_bytes(np.zeros((15 * rate, 2), np.int16), rate, channels=2)
        assert voice_checks.decode_recording(blob).seconds == pytest.approx(15.0, abs=0.01)
    longer = wav_bytes(np.zeros((16 * 48_000, 2), np.int16), 48_000, channels=2)
    with pytest.raises(voice_checks.RecordingError, match="lasts 16.0 s; the limit is 15 s"):
        voice_checks.decode_recording(longer)
    wide = wav_bytes(np.zeros((12 * 96_000, 2), np.int16), 96_000, channels=2)  # 4.4 MB
    with pytest.raises(voice_checks.RecordingError, match=r"4.4 MB; the limit is 3 MB"):
        voice_checks.decode_recording(wide)


def test_a_fifteen_second_48_khz_stereo_upload_is_tested(app):
    web = signed_in(app)
    token = csrf(web.get("/wake-word"))
    blob = wav_bytes(np.zeros((15 * 48_000, 2), np.int16), 48_000, channels=2)
    answer = web.post("/wake-word/test", data={"csrf_token": token, "wake_word": "hey_jarvis",
                                               "threshold": "0.5", "audio": (io.BytesIO(blob), "clip.wav")},
                      content_type="multipart/form-data", headers={"Accept": "application/json"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.json["seconds"] == pytest.approx(15.0, abs=0.01) and not answer.json["detected"]


def test_the_docs_state_the_real_limits():
    docs = (ROOT / "docs/setup-web.md").read_text()
    assert "16 MB" not in docs
    assert f"{voice_checks.MAX_UPLOAD_BYTES // 2**20} MB" in docs and "15 s" in docs
