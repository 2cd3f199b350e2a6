"""The device setup web through Flask's test client: first boot, sign-in, sessions, CSRF, LAN only,
cloud-managed fields, the network page on a host without NetworkManager, cloud URL mistakes, status
and history read from the real files the services keep."""

from __future__ import annotations

import http.server
import json
import re
import stat
import threading
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import psutil
import pytest

from device import netman
from device.paths import DevicePaths
from device.settings import load_settings, save_managed, settings_path
from device.sync import heartbeat
from device.sync.store import Store
from device.web import saving
from device.web.app import create_app
from device.web.credentials import has_password, verify_password
from tests.conftest import free_port
from tests.device.web.setup_web_kit import PASSWORD, csrf, text

LAN = {"REMOTE_ADDR": "192.168.1.20"}


@pytest.fixture
def paths(tmp_path) -> DevicePaths:
    return DevicePaths.at(tmp_path / "device").create()


@pytest.fixture
def app(paths):
    app = create_app(paths)
    app.config["TESTING"] = True
    return app


def client(app, address: str = LAN["REMOTE_ADDR"]):
    web = app.test_client()
    web.environ_base["REMOTE_ADDR"] = address
    return web


def first_boot(web, **fields) -> object:
    page = web.get("/first-boot")
    form = {"csrf_token": csrf(page), "password": PASSWORD, "repeat": PASSWORD, "name": "Kitchen",
            "lang": "en-GB", "timezone": "Europe/Berlin", **fields}
    return web.post("/first-boot", data=form)


def signed_in(app, address: str = LAN["REMOTE_ADDR"]):
    web = client(app, address)
    if not has_password(app.config["DEVICE_PATHS"].root):
        assert first_boot(web).status_code == 302
        return web
    page = web.get("/sign-in")
    assert web.post("/sign-in", data={"csrf_token": csrf(page), "password": PASSWORD}).status_code == 302
    return web


# -- first boot -------------------------------------------------------------------------------------------


def test_first_boot_sets_password_and_identity_then_asks_to_sign_in(app, paths):
    web = client(app)
    for page in ("/", "/status", "/network", "/cloud", "/wake-word", "/sign-in"):
        response = web.get(page)
        assert response.status_code == 302 and response.location.endswith("/first-boot"), page
    # Mistakes: nothing is written, what was typed (except passwords) is kept.
    differ = first_boot(web, repeat="something else")
    assert differ.status_code == 400 and "the two passwords differ" in text(differ)
    short = first_boot(web, password="short", repeat="short")
    assert short.status_code == 400 and "at least 8 characters" in text(short)
    zone = first_boot(web, timezone="Mars/Olympus_Mons")
    assert zone.status_code == 400 and "unknown time zone 'Mars/Olympus_Mons'" in text(zone)
    assert 'value="Kitchen"' in zone.get_data(as_text=True)
    assert not settings_path(paths.root).exists()
    assert "password_hash" not in json.loads((paths.root / "setup-web.json").read_text())

    done = first_boot(web)
    assert done.status_code == 302 and done.location.endswith("/status")
    settings = load_settings(paths.root)
    assert (settings.name, settings.lang, settings.timezone) == ("Kitchen", "en-GB", "Europe/Berlin")
    secrets_file = paths.root / "setup-web.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert PASSWORD not in secrets_file.read_text()
    assert verify_password(paths.root, PASSWORD)
    status = web.get("/status")
    assert status.status_code == 200 and "Kitchen" in text(status)
    # Once a password exists, first boot is gone for everyone.
    stranger = client(app, "10.0.0.9")
    assert stranger.get("/first-boot").location.endswith("/sign-in")
    assert stranger.post("/first-boot", data={"password": "x"}).status_code in (302, 400)
    assert verify_password(paths.root, PASSWORD)


def test_wrong_passwords_are_throttled_per_address(app):
    signed_in(app)
    attacker = client(app, "192.168.1.66")
    page = attacker.get("/sign-in")
    token = csrf(page)
    for _ in range(4):
        wrong = attacker.post("/sign-in", data={"csrf_token": token, "password": "guess"})
        assert wrong.status_code == 401 and "Wrong password." in text(wrong)
    fifth = attacker.post("/sign-in", data={"csrf_token": token, "password": "guess"})
    assert fifth.status_code == 429
    wait = int(re.search(r"try again in (\d+) s", text(fifth)).group(1))
    assert wait > 0
    # Even the right password waits now, from that address...
    right = attacker.post("/sign-in", data={"csrf_token": token, "password": PASSWORD})
    assert right.status_code == 429 and "Too many wrong passwords. Try again in" in text(right)
    assert attacker.get("/status").status_code == 302
    # ...but not from another one.
    owner = client(app, "192.168.1.21")
    page = owner.get("/sign-in")
    assert owner.post("/sign-in", data={"csrf_token": csrf(page), "password": PASSWORD}).status_code == 302
    assert owner.get("/status").status_code == 200


def test_an_idle_session_expires_with_a_message(app):
    web = signed_in(app)
    assert web.get("/status").status_code == 200
    with web.session_transaction() as session:
        session["seen"] = time.time() - app.config["SETUP_IDLE_SECONDS"] - 5
    expired = web.get("/status")
    assert expired.status_code == 302 and "/sign-in" in expired.location
    page = web.get(expired.location)
    assert "Your session expired; sign in again." in text(page)
    # A script's request (the voice tests' fetch) gets JSON it can show, not a page.
    with web.session_transaction() as session:
        session.clear()
    answer = web.get("/cloud/state", headers={"Accept": "application/json", "Sec-Fetch-Mode": "cors"})
    assert answer.status_code == 401 and answer.is_json


def test_changing_the_password_signs_out_other_browsers(app, paths):
    phone = signed_in(app)
    laptop = signed_in(app, "192.168.1.30")
    page = phone.get("/password")
    wrong = phone.post("/password", data={"csrf_token": csrf(page), "current": "nope",
                                          "password": "new password 1", "repeat": "new password 1"})
    assert wrong.status_code == 400 and "current password is wrong" in text(wrong)
    done = phone.post("/password", data={"csrf_token": csrf(page), "current": PASSWORD,
                                         "password": "new password 1", "repeat": "new password 1"})
    assert done.status_code == 302
    assert phone.get("/status").status_code == 200
    out = laptop.get("/status")
    assert out.status_code == 302 and "/sign-in" in out.location
    assert verify_password(paths.root, "new password 1") and not verify_password(paths.root, PASSWORD)


def test_a_post_without_csrf_token_is_refused_and_changes_nothing(app, paths):
    web = signed_in(app)
    refused = web.post("/device", data={"name": "Hacked", "lang": "en-US", "timezone": "UTC"})
    assert refused.status_code == 400
    assert "Reload the page and try again; nothing was changed." in text(refused)
    forged = web.post("/device", data={"csrf_token": "forged", "name": "Hacked"})
    assert forged.status_code == 400
    assert load_settings(paths.root).name == "Kitchen"
    signout = web.post("/sign-out")
    assert signout.status_code == 400 and web.get("/status").status_code == 200


def test_only_lan_clients_are_answered(app):
    for address in ("8.8.8.8", "2001:4860:4860::8888", "100.64.0.1"):
        refused = client(app, address).get("/first-boot")
        assert refused.status_code == 403, address
        assert "only answers on the local network" in refused.get_data(as_text=True)
    for address in ("127.0.0.1", "10.1.2.3", "172.16.0.5", "192.168.0.2", "fe80::1", "::1", "fd00::5"):
        assert client(app, address).get("/first-boot").status_code == 200, address


# -- settings and the cloud's managed fields ---------------------------------------------------------------


def test_device_settings_save_and_bad_values_lose_nothing(app, paths):
    web = signed_in(app)
    page = web.get("/device")
    saved = web.post("/device", data={"csrf_token": csrf(page), "name": "Lobby", "lang": "de-DE",
                                      "timezone": "Asia/Tokyo"})
    assert saved.status_code == 302
    after = web.get(saved.location)
    # The stack is not running here: the change waits for the next start, and the page says so.
    assert "it will apply on next start" in text(after)
    settings = load_settings(paths.root)
    assert (settings.name, settings.lang, settings.timezone) == ("Lobby", "de-DE", "Asia/Tokyo")
    bad = web.post("/device", data={"csrf_token": csrf(page), "name": "", "lang": "xx-XX", "timezone": "UTC"})
    assert bad.status_code == 400 and "unknown language 'xx-XX'" in text(bad)
    empty = web.post("/device", data={"csrf_token": csrf(page), "name": "", "lang": "en-US",
                                      "timezone": "UTC"})
    assert empty.status_code == 400 and "name" in text(empty)
    assert load_settings(paths.root).name == "Lobby"


def test_fields_the_cloud_manages_are_read_only_and_refused(app, paths):
    web = signed_in(app)
    save_managed(paths.root, 4, {"name": "Front desk", "wake_word": "alexa"})
    page = web.get("/device")
    markup = page.get_data(as_text=True)
    assert re.search(r'<input id="name"[^>]*disabled', markup) and "Managed by the cloud" in text(page)
    assert 'value="Front desk"' in markup
    refused = web.post("/device", data={"csrf_token": csrf(page), "name": "Mine", "lang": "en-US"})
    assert refused.status_code == 400
    assert "name is managed by the cloud; change it in the cloud portal (nothing was saved)" in text(refused)
    assert json.loads(settings_path(paths.root).read_text())["name"] == "Kitchen"
    assert load_settings(paths.root).name == "Front desk"
    # Fields the cloud leaves alone still save.
    fine = web.post("/device", data={"csrf_token": csrf(page), "lang": "fr-FR"})
    assert fine.status_code == 302 and load_settings(paths.root).lang == "fr-FR"
    with pytest.raises(ValueError, match="wake_word is managed by the cloud"):
        saving.save_fields(paths, wake_word="hey_mycroft")
    with pytest.raises(ValueError, match="unknown STT model"):
        saving.save_fields(paths, stt_model="large-v3")


def test_restart_only_what_a_field_affects():
    assert saving.affected({"wake_word", "wake_threshold"}) == ["listener"]
    assert saving.affected({"tts_voice", "timezone"}) == ["core", "audio"]
    assert saving.affected({"lang"}) == ["core", "audio", "listener"]
    assert saving.affected({"setup_web_port"}) == []


# -- network -------------------------------------------------------------------------------------------------


def test_network_page_says_the_host_manages_it_here(app):
    reason = netman.unavailable_reason()
    if reason is None:
        pytest.skip("NetworkManager runs on this machine")
    web = signed_in(app)
    page = web.get("/network")
    assert page.status_code == 200
    assert "The network is managed by the host." in text(page) and reason.split(" (")[0] in text(page)
    addresses = {a.address.split("%")[0] for name, entries in psutil.net_if_addrs().items() if name != "lo"
                 for a in entries if a.family.name == "AF_INET"}
    assert addresses and any(address in text(page) for address in addresses)
    join = web.post("/network/join", data={"csrf_token": csrf(page), "ssid": "Home", "password": "secret123"})
    assert join.status_code == 409 and "managed by the host" in text(join)


# Terse output as nmcli 1.42 prints it (nmcli(1): ':' and '\' inside values are escaped with '\').
WIFI_LIST = """\
 :Cafe\\: Guests:52:--
*:Home:78:WPA2
 :Home:40:WPA2
 ::90:WPA2
 :Back\\\\Office:61:WPA1 WPA2
 :Neighbour:81:WPA3
"""
DEVICE_STATUS = """\
wlan0:wifi:connected:Home
eth0:ethernet:unavailable:
lo:loopback:connected (externally):lo
p2p-dev-wlan0:wifi-p2p:disconnected:
"""


def test_nmcli_terse_output_is_parsed():
    assert netman.split_terse(r"a\:b:c\\d:") == ["a:b", "c\\d", ""]
    networks = netman.parse_wifi_list(WIFI_LIST)
    assert [(n.ssid, n.signal, n.security, n.in_use) for n in networks] == [
        ("Home", 78, "WPA2", True),  # the one in use first, deduplicated
        ("Neighbour", 81, "WPA3", False),
        ("Back\\Office", 61, "WPA1 WPA2", False),
        ("Cafe: Guests", 52, "", False),  # the hidden network (no SSID) is left out
    ]
    assert networks[-1].open and not networks[0].open
    devices = netman.parse_device_status(DEVICE_STATUS)
    assert [(d.device, d.state, d.connection) for d in devices] == [
        ("wlan0", "connected", "Home"), ("eth0", "unavailable", ""), ("p2p-dev-wlan0", "disconnected", "")]


def test_join_refuses_bad_input_before_nmcli():
    with pytest.raises(netman.NetworkError, match="1 to 32 bytes"):
        netman.join("x" * 33, "password1")
    with pytest.raises(netman.NetworkError, match="8 to 63 characters"):
        netman.join("Home", "short")


# -- cloud ------------------------------------------------------------------------------------------


class _NotVoxFleet(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        body = b"<html><body>A router's admin page</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def other_web_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotVoxFleet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_cloud_url_mistakes_are_explained(app, paths, other_web_server):
    web = signed_in(app)
    page = web.get("/cloud")
    assert "Get a pairing code" in text(page)
    token = csrf(page)
    not_url = web.post("/cloud/pair", data={"csrf_token": token, "cloud": "cloud.example"})
    assert not_url.status_code == 400 and "is not a web address" in text(not_url)
    unreachable = f"http://127.0.0.1:{free_port()}"
    down = web.post("/cloud/pair", data={"csrf_token": token, "cloud": unreachable})
    assert down.status_code == 400 and f"cannot reach {unreachable}" in text(down)
    assert f'value="{unreachable}"' in down.get_data(as_text=True)
    other = web.post("/cloud/pair", data={"csrf_token": token, "cloud": other_web_server})
    assert other.status_code == 400 and "it is not a VoxFleet cloud" in text(other)
    assert not (paths.root / "cloud.json").exists()
    assert web.get("/cloud/state").get_json()["state"] == "idle"


# -- status and history ------------------------------------------------------------------------------


def test_status_page_shows_the_device_as_it_is(app, paths):
    web = signed_in(app)
    page = text(web.get("/status"))
    assert "The voice services are not running." in page
    disk = psutil.disk_usage(str(paths.root))
    assert f"{disk.total / 2**30:.1f} GB" in page
    temperature = heartbeat.temperature_c()
    assert (f"{temperature:.1f} °C" if temperature is not None else "not available on this hardware") in page
    for name, value in heartbeat.versions().items():
        assert f"{name} {value}" in page
    assert "Paired no" in page and "no report yet" in page
    # What the agent writes once it runs (device/sync/agent.py write_sync_state).
    last = time.time() - 90
    (paths.run / "sync.json").write_text(json.dumps({"outbox_depth": 7, "last_sync": last, "connected": False,
                                                      "broker_url": None}))
    page = text(web.get("/status"))
    assert "Waiting to send 7 events" in page and "not connected" in page
    local = datetime.fromtimestamp(last, ZoneInfo("Europe/Berlin")).strftime("%Y-%m-%d %H:%M:%S")
    assert f"Last successful sync {local}" in page


def test_history_lists_recent_sessions_newest_first_in_pages(app, paths):
    web = signed_in(app)
    assert "No voice sessions yet." in text(web.get("/history"))
    store = Store(paths.root / "store.db")
    start = time.time() - 3600
    for n in range(25):
        store.record_session({"session_id": f"s{n:02d}", "started_at": start + n * 60,
                              "wake_word": "hey_jarvis", "transcript": f"what time is it number {n}",
                              "intent": "date-time:time", "answer": f"It is {n} past",
                              "end_state": "answered"})
    store.db.conn.close()
    first = web.get("/history")
    rows = re.findall(r'data-session="(s\d+)"', first.get_data(as_text=True))
    assert rows == [f"s{n:02d}" for n in range(24, 4, -1)]
    assert "25 sessions kept on this device" in text(first) and "Page 1 of 2" in text(first)
    assert "what time is it number 24" in text(first) and "date-time:time" in text(first)
    second = web.get("/history?page=2")
    assert re.findall(r'data-session="(s\d+)"', second.get_data(as_text=True)) == [
        f"s{n:02d}" for n in range(4, -1, -1)]
    assert web.get("/history?page=abc").status_code == 200


def test_saving_restarts_only_the_affected_service_of_a_running_stack(tmp_path):
    """A real supervisor with the messagebus, volume and agent: saving the name restarts the agent alone."""
    from device.settings import DeviceSettings, save_settings
    from device.stack.supervisor import SERVICES, Supervisor

    paths = DevicePaths.at(tmp_path / "running").create()
    settings = DeviceSettings(bus_port=free_port(), timezone="UTC")
    save_settings(paths.root, settings)
    small = tuple(s for s in SERVICES if s.name in ("messagebus", "volume", "agent"))
    supervisor = Supervisor(paths, settings, services=small)
    supervisor.start(timeout=120)
    try:
        pids = {name: svc.process.pid for name, svc in supervisor.services.items()}
        note = saving.save_fields(paths, name="Reception")
        assert note == "Saved; restarted agent."
        now = {name: svc.process.pid for name, svc in supervisor.services.items()}
        assert now["agent"] != pids["agent"] and supervisor.services["agent"].state == "ready"
        assert now["volume"] == pids["volume"] and now["messagebus"] == pids["messagebus"]
        assert load_settings(paths.root).name == "Reception"
        # A field no service reads at run time: saved, nothing restarted.
        assert saving.save_fields(paths, setup_web_port=8099) == "Saved."
        assert {name: svc.process.pid for name, svc in supervisor.services.items()} == now
    finally:
        supervisor.stop()


def test_a_broken_settings_file_is_explained_not_a_bare_error(app, paths):
    settings_path(paths.root).write_text(json.dumps({"name": "", "wake_threshold": 7}))
    page = client(app).get("/first-boot")
    assert page.status_code == 500
    assert "The device settings cannot be read" in text(page) and "wake_threshold" in text(page)
    assert "Fix or delete settings.json" in text(page)
