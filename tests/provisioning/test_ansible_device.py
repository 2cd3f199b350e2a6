"""The device playbook applied for real: a Debian bookworm root (Raspberry Pi OS is Debian-based)
made with debootstrap, provisioned through Ansible's chroot connection, then checked from inside.

Slow (a real apt install and two virtualenvs of the device stack): marked ``slow``, so ``.ci/run``
runs it and a quick local run skips it with ``-m "not slow"``. Caches, all under
/var/cache/voxfleet-tests/ so reruns are fast:

- ``bookworm-<hash>.tar``: the debootstrap result (about a minute to make, seconds to unpack);
- ``apt-archives/``: the .deb files the packages role downloads, bind-mounted into the root;
- ``wheelhouse/``: third-party wheels for ``voxfleet[device]`` (built with ``pip wheel`` and the
  project's constraints); VoxFleet's own wheels are rebuilt from this checkout on every run.

Everything mounted into the root is unmounted in teardown, also when a test fails, and the root is
deleted only once nothing is mounted below it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
VENV_BIN = Path(sys.executable).parent
CACHE = Path(os.environ.get("VOXFLEET_TEST_CACHE", "/var/cache/voxfleet-tests"))
MIRROR = os.environ.get("VOXFLEET_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# What a Raspberry Pi OS Lite image has beyond minbase: systemd as init and Python 3.
DEBOOTSTRAP_INCLUDE = "python3,python3-venv,systemd,systemd-sysv,ca-certificates"
WHEELHOUSE_IN_ROOT = "/srv/wheelhouse"
UPGRADE_IN_ROOT = "/srv/upgrade"
SERVICES = ("messagebus", "volume", "agent", "core", "audio", "listener", "setup-web", "restarter")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(2400),
    pytest.mark.skipif(os.geteuid() != 0, reason="debootstrap, mounts and chroot need root (CI has it)"),
]


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, text=True, capture_output=True, **kwargs)


def _mounted_under(root: Path) -> list[str]:
    prefix = str(root.resolve())
    with open("/proc/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1].replace("\\040", " ") for line in mounts]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def _base_image() -> Path:
    """The debootstrap result as a tar, made once per include list and mirror."""
    key = hashlib.sha256(f"bookworm minbase {DEBOOTSTRAP_INCLUDE} {MIRROR}".encode()).hexdigest()[:12]
    tarball = CACHE / f"bookworm-{key}.tar"
    if tarball.exists():
        return tarball
    if shutil.which("debootstrap") is None:
        pytest.fail("debootstrap is missing: scripts/bootstrap installs it (apt-get install debootstrap)")
    CACHE.mkdir(parents=True, exist_ok=True)
    staging = CACHE / f"staging-{key}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _run(["debootstrap", "--variant=minbase", f"--include={DEBOOTSTRAP_INCLUDE}", "bookworm",
              str(staging), MIRROR])
        _run(["tar", "-C", str(staging), "--numeric-owner", "-cf", str(tarball) + ".tmp", "."])
        os.replace(str(tarball) + ".tmp", tarball)
    finally:
        if not _mounted_under(staging):
            shutil.rmtree(staging, ignore_errors=True)
    return tarball


def _copy_sources(dest: Path) -> Path:
    """What the voxfleet and skill wheels are built from (a copy: the build leaves files behind)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    for package in ("voxfleet", "device", "cloud", "protocol", "skills"):
        shutil.copytree(REPO / package, dest / package, ignore=ignore)
    return dest


def _wheelhouse(tmp: Path) -> Path:
    """Wheels of ``voxfleet[device]`` and the skills: third-party ones cached, ours from this checkout."""
    wheelhouse = CACHE / "wheelhouse"
    wheelhouse.mkdir(parents=True, exist_ok=True)
    for old in wheelhouse.glob("voxfleet*.whl"):
        old.unlink()
    src = _copy_sources(tmp)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
          "-c", str(REPO / "constraints.txt"), "--find-links", str(wheelhouse), "-w", str(wheelhouse),
          f"{src}[device]", str(src / "skills" / "voxfleet-skill-timer"),
          str(src / "skills" / "voxfleet-skill-device-info")], cwd=tmp)
    return wheelhouse


def _repack(wheel: Path, version: str, out: Path, break_import: bool, refuse_wake_word: str = "") -> Path:
    """A copy of the voxfleet wheel under another version; ``break_import`` makes ``import device`` fail,
    ``refuse_wake_word`` makes its settings loader refuse that wake word (imports and a fresh device
    still work: only a device whose settings name it cannot run this release)."""
    work = out / f"unpacked-{version}"
    _run([str(VENV_BIN / "wheel"), "unpack", "-d", str(work), str(wheel)])
    (tree,) = work.iterdir()
    (old_info,) = tree.glob("voxfleet-*.dist-info")
    meta = old_info / "METADATA"
    meta.write_text(re.sub(r"(?m)^Version: .*$", f"Version: {version}", meta.read_text()))
    (old_info / "RECORD").unlink()
    old_info.rename(tree / f"voxfleet-{version}.dist-info")
    if break_import:
        init = tree / "device" / "__init__.py"
        init.write_text(init.read_text() + '\nraise ImportError("deliberately broken release")\n')
    if refuse_wake_word:
        module = tree / "device" / "settings.py"
        module.write_text(module.read_text() + f"""

_load_settings = load_settings


def load_settings(data_dir, **overrides):
    settings = _load_settings(data_dir, **overrides)
    if settings.wake_word == {refuse_wake_word!r}:
        raise SettingsError("deliberately refused wake word {refuse_wake_word}")
    return settings
""")
    _run([str(VENV_BIN / "wheel"), "pack", "-d", str(out), str(tree)])
    (built,) = out.glob(f"voxfleet-{version}-*.whl")
    return built


class Device:
    """A bookworm root with the caches mounted in, and the playbook run against it."""

    def __init__(self, root: Path, workdir: Path):
        self.root = root
        self.workdir = workdir
        self.inventory = workdir / "inventory.yml"
        self.inventory.write_text(json.dumps({"devices": {"hosts": {"voxfleet-test": {
            "ansible_host": str(root),
            "ansible_connection": "community.general.chroot",
            "ansible_python_interpreter": "/usr/bin/python3",
        }}}}))
        self.mounts: list[Path] = []

    def mount(self, source: str, target: str, *options: str) -> None:
        point = self.root / target.lstrip("/")
        point.mkdir(parents=True, exist_ok=True)
        _run(["mount", *options, source, str(point)])
        self.mounts.append(point)

    def unmount_all(self) -> None:
        for point in reversed(self.mounts):
            if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(point)], capture_output=True)
        self.mounts.clear()

    def playbook(self, **extra_vars) -> subprocess.CompletedProcess:
        variables = {
            "device_venv_wheelhouse": WHEELHOUSE_IN_ROOT,
            # The hardware extra builds pyalsaaudio; the spool microphone needs neither.
            "device_venv_extras": ["device"],
            "device_config_microphone": "usb",
            "device_config_settings": {"timezone": "Europe/Berlin", "wake_word": "hey_mycroft"},
            **extra_vars,
        }
        vars_file = self.workdir / "vars.json"
        vars_file.write_text(json.dumps(variables))
        env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_LOCAL_TEMP=str(self.workdir / "ansible-tmp"),
                   PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        return subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), "-i", str(self.inventory), "-e", f"@{vars_file}",
             "device.yml"],
            cwd=ANSIBLE_DIR, env=env, text=True, capture_output=True, timeout=1500)

    def chroot(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(["chroot", str(self.root), *argv], text=True, capture_output=True,
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})

    def file(self, path: str) -> Path:
        return self.root / path.lstrip("/")


def _recap(result: subprocess.CompletedProcess) -> dict[str, int]:
    match = re.search(r"voxfleet-test\s*:\s*(.*)$", result.stdout, re.MULTILINE)
    assert match, f"no play recap in:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


def _show(result: subprocess.CompletedProcess) -> str:
    return (f"rc={result.returncode}\n--- stdout (tail)\n{result.stdout[-6000:]}"
            f"\n--- stderr\n{result.stderr[-3000:]}")


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    work = tmp_path_factory.mktemp("ansible-device")
    image = _base_image()
    wheelhouse = _wheelhouse(tmp_path_factory.mktemp("wheel-src"))
    root = work / "root"
    root.mkdir()
    _run(["tar", "-C", str(root), "--numeric-owner", "-xf", str(image)])
    shutil.copy2("/etc/resolv.conf", root / "etc" / "resolv.conf")
    # As on any image build: package scripts must not start daemons in the chroot.
    policy = root / "usr" / "sbin" / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    dev = Device(root, work)
    try:
        dev.mount("proc", "/proc", "-t", "proc")
        (CACHE / "apt-archives" / "partial").mkdir(parents=True, exist_ok=True)
        dev.mount(str(CACHE / "apt-archives"), "/var/cache/apt/archives", "--bind")
        dev.mount(str(wheelhouse), WHEELHOUSE_IN_ROOT, "--bind")
        dev.mount("none", UPGRADE_IN_ROOT, "-t", "tmpfs")
        dev.first_run = dev.playbook()
        yield dev
    finally:
        dev.unmount_all()
        left = _mounted_under(root)
        assert not left, f"still mounted, root kept for inspection: {left}"
        shutil.rmtree(root)


def test_first_run_provisions_a_working_device(device):
    assert device.first_run.returncode == 0, _show(device.first_run)
    assert _recap(device.first_run)["failed"] == 0

    # Units present, ordered after the messagebus, and enabled (the .wants links systemd boots from).
    units = device.file("/etc/systemd/system")
    assert (units / "multi-user.target.wants" / "voxfleet.target").is_symlink()
    for name in SERVICES:
        unit = (units / f"voxfleet-{name}.service").read_text()
        assert "Restart=on-failure" in unit and "StandardOutput=journal" in unit and "MemoryMax=" in unit
        # The restarter runs systemctl, so it alone is root (it renders the config as voxfleet).
        user = "root" if name == "restarter" else "voxfleet"
        assert "EnvironmentFile=/etc/voxfleet/device.env" in unit and f"User={user}" in unit
        if name == "setup-web":
            # Bad settings stop the bus (its ExecStartPre); the page that fixes them stays up.
            assert re.search(r"(?m)^Wants=voxfleet-messagebus\.service$", unit)
            assert not re.search(r"(?m)^Requires=", unit)
            assert re.search(r"(?m)^After=voxfleet-messagebus\.service", unit)
        elif name != "messagebus":
            assert "Requires=voxfleet-messagebus.service" in unit
            assert re.search(r"(?m)^After=voxfleet-messagebus\.service", unit)
        assert (units / "voxfleet.target.wants" / f"voxfleet-{name}.service").is_symlink(), name
    enabled = device.chroot("systemctl", "is-enabled", "voxfleet.target", "voxfleet-listener.service")
    assert enabled.stdout.split() == ["enabled", "enabled"], enabled

    # VoxFleet and its skills were built from this checkout on the controller and installed from
    # the device's own wheelhouse, never from an index.
    built = sorted(p.name.split("-")[0] for p in device.file("/opt/voxfleet/wheelhouse").glob("*.whl"))
    assert built == ["voxfleet", "voxfleet_skill_device_info", "voxfleet_skill_timer"], built
    direct = device.chroot("/opt/voxfleet/venv/bin/python", "-c", "import importlib.metadata as m; "
                           "print(m.distribution('voxfleet').read_text('direct_url.json'))")
    assert "/opt/voxfleet/wheelhouse/voxfleet-" in direct.stdout, direct

    # The venv imports the stack, and every bundled model resolves inside the device.
    imports = device.chroot("/opt/voxfleet/venv/bin/python", "-c",
                            "import device, ovos_core, ovos_dinkum_listener, ovos_audio; print('ok')")
    assert imports.stdout.strip() == "ok", imports
    models = device.chroot("/usr/bin/env", "VOXFLEET_MODEL_CACHE=/var/lib/voxfleet/models",
                           "/opt/voxfleet/venv/bin/voxfleet", "device", "models", "--json")
    assert models.returncode == 0, models
    rows = json.loads(models.stdout)
    assert {r["name"] for r in rows} >= {"tiny.en", "base", "hey_jarvis", "en_US-joe-medium"}
    assert all(r["path"] and not r["error"] for r in rows), rows
    for row in rows:
        assert device.file(row["path"]).exists(), row

    # mycroft.conf rendered by the release's own renderer from the settings Ansible wrote.
    settings = json.loads(device.file("/var/lib/voxfleet/data/settings.json").read_text())
    assert settings["wake_word"] == "hey_mycroft" and settings["timezone"] == "Europe/Berlin"
    assert settings["stt_device"] == "cpu"  # no CUDA in this root: the facts choose the CPU
    assert settings["audio_in"] == "alsa"
    conf = json.loads(device.file("/var/lib/voxfleet/data/xdg/config/mycroft/mycroft.conf").read_text())
    assert conf["listener"]["wake_word"] == "hey_mycroft"
    assert conf["location"]["timezone"]["code"] == "Europe/Berlin"
    assert json.dumps(conf).count('"compute_type": "int8"') >= 1
    env = device.file("/etc/voxfleet/device.env").read_text()
    assert "XDG_CONFIG_HOME=/var/lib/voxfleet/data/xdg/config" in env
    # The templates are the active release's own copy (a rollback of the link rolls them back).
    assert "VOXFLEET_FIRMWARE_CONFIG=/opt/voxfleet/venv/firmware-config" in env and "PYTHONPATH" not in env
    release = device.file(os.readlink(device.file("/opt/voxfleet/venv")))
    assert (release / "firmware-config" / "mycroft" / "mycroft.conf.j2").is_file()
    assert "hw:CARD=voxusb,DEV=0" in device.file("/etc/asound.conf").read_text()
    assert device.file("/etc/udev/rules.d/99-voxfleet-audio.rules").exists()

    # The services' user owns the data folder, and nothing there is root's.
    owner = device.chroot("find", "/var/lib/voxfleet/data", "!", "-user", "voxfleet")
    assert owner.returncode == 0 and owner.stdout == "", owner


def test_second_run_changes_nothing(device):
    # The device rewrites mycroft.conf itself (a cloud push, the setup page): byte for byte what
    # provisioning wrote, so the re-run below still finds nothing to change.
    conf = device.file("/var/lib/voxfleet/data/xdg/config/mycroft/mycroft.conf")
    provisioned = conf.read_bytes()
    rewrite = device.chroot(
        "runuser", "-u", "voxfleet", "--", "/usr/bin/env",
        "VOXFLEET_FIRMWARE_CONFIG=/opt/voxfleet/venv/firmware-config",
        "VOXFLEET_MODEL_CACHE=/var/lib/voxfleet/models", "/opt/voxfleet/venv/bin/python", "-c",
        "from device.stack.config import write_config; from device.paths import DevicePaths; "
        "from device.settings import load_settings; p = DevicePaths.at('/var/lib/voxfleet/data'); "
        "write_config(load_settings(p.root), p)")
    assert rewrite.returncode == 0, rewrite
    assert conf.read_bytes() == provisioned

    again = device.playbook()
    assert again.returncode == 0, _show(again)
    recap = _recap(again)
    assert recap["changed"] == 0 and recap["failed"] == 0, _show(again)


def test_upgrade_switches_release_and_keeps_the_previous_one(device):
    before = os.readlink(device.file("/opt/voxfleet/venv"))
    (ours,) = (device.root / WHEELHOUSE_IN_ROOT.lstrip("/")).glob("voxfleet-0*.whl")
    _repack(ours, "99.0.1", device.file(UPGRADE_IN_ROOT), break_import=False)
    upgraded = device.playbook(device_venv_version="99.0.1",
                               device_venv_wheelhouse=f"{WHEELHOUSE_IN_ROOT} {UPGRADE_IN_ROOT}")
    assert upgraded.returncode == 0, _show(upgraded)
    after = os.readlink(device.file("/opt/voxfleet/venv"))
    assert after != before
    assert os.readlink(device.file("/opt/voxfleet/venv.previous")) == before
    version = device.chroot("/opt/voxfleet/venv/bin/python", "-c",
                            "import importlib.metadata as m; print(m.version('voxfleet'))")
    assert version.stdout.strip() == "99.0.1", version


def test_prune_removes_interrupted_releases_first_and_keeps_the_rollback_target(device):
    active = os.readlink(device.file("/opt/voxfleet/venv"))
    previous = os.readlink(device.file("/opt/voxfleet/venv.previous"))
    # The newest folder on disk, but it never passed a health check (an interrupted install).
    interrupted = device.file("/opt/voxfleet/releases/0000interrupted")
    (interrupted / "bin").mkdir(parents=True)
    again = device.playbook(device_venv_version="99.0.1",
                            device_venv_wheelhouse=f"{WHEELHOUSE_IN_ROOT} {UPGRADE_IN_ROOT}")
    assert again.returncode == 0, _show(again)
    assert not interrupted.exists()
    assert os.readlink(device.file("/opt/voxfleet/venv")) == active
    assert os.readlink(device.file("/opt/voxfleet/venv.previous")) == previous
    assert device.file(active).is_dir() and device.file(previous).is_dir()


def test_broken_release_fails_its_health_check_and_leaves_the_active_one(device):
    active = os.readlink(device.file("/opt/voxfleet/venv"))
    releases = sorted(p.name for p in device.file("/opt/voxfleet/releases").iterdir())
    (ours,) = (device.root / WHEELHOUSE_IN_ROOT.lstrip("/")).glob("voxfleet-0*.whl")
    _repack(ours, "99.0.2", device.file(UPGRADE_IN_ROOT), break_import=True)
    broken = device.playbook(device_venv_version="99.0.2",
                             device_venv_wheelhouse=f"{WHEELHOUSE_IN_ROOT} {UPGRADE_IN_ROOT}")
    assert broken.returncode != 0, _show(broken)
    assert "failed its health check" in broken.stdout, _show(broken)
    assert f"the previous release {active} stays active" in broken.stdout, _show(broken)
    assert "deliberately broken release" in broken.stdout, _show(broken)
    assert os.readlink(device.file("/opt/voxfleet/venv")) == active
    assert sorted(p.name for p in device.file("/opt/voxfleet/releases").iterdir()) == releases
    still = device.chroot("/opt/voxfleet/venv/bin/python", "-c", "import device, ovos_core; print('ok')")
    assert still.stdout.strip() == "ok", still


def test_release_that_cannot_run_this_devices_settings_is_not_activated(device):
    """The health check renders this device's own settings with the new release: a release that
    refuses them (here: the wake word the device uses) is never activated."""
    active = os.readlink(device.file("/opt/voxfleet/venv"))
    (ours,) = (device.root / WHEELHOUSE_IN_ROOT.lstrip("/")).glob("voxfleet-0*.whl")
    _repack(ours, "99.0.3", device.file(UPGRADE_IN_ROOT), break_import=False, refuse_wake_word="hey_mycroft")
    refused = device.playbook(device_venv_version="99.0.3",
                              device_venv_wheelhouse=f"{WHEELHOUSE_IN_ROOT} {UPGRADE_IN_ROOT}")
    assert refused.returncode != 0, _show(refused)
    assert "failed its health check" in refused.stdout, _show(refused)
    assert "deliberately refused wake word hey_mycroft" in refused.stdout, _show(refused)
    assert os.readlink(device.file("/opt/voxfleet/venv")) == active


def test_unknown_microphone_is_refused_and_the_board_files_stay(device):
    refused = device.playbook(device_config_microphone="respeaker-9mic")
    assert refused.returncode != 0
    assert "device_config_microphone 'respeaker-9mic' is not one of" in refused.stdout, _show(refused)
    assert "hw:CARD=voxusb,DEV=0" in device.file("/etc/asound.conf").read_text()


@pytest.fixture
def cloud(tmp_path):
    """A real VoxFleet cloud on embedded defaults, with a tenant, a write API key and its project."""
    voxfleet = str(VENV_BIN / "voxfleet")
    env = {**os.environ, "VOXFLEET_DATA_DIR": str(tmp_path / "cloud")}
    ports = []
    for _ in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    url = f"http://127.0.0.1:{ports[0]}"
    with open(tmp_path / "serve.log", "w") as log:
        server = subprocess.Popen(
            [voxfleet, "cloud", "serve", "--http-port", str(ports[0]), "--mqtt-port", str(ports[1])],
            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.3)

        def cli(*args: str) -> str:
            return _run([voxfleet, "cloud", *args], env=env, timeout=120).stdout

        cli("admin", "create-tenant", "Acme Hotels", "--owner-email", "owner@acme.test")
        key = cli("admin", "create-api-key", "--tenant", "acme-hotels", "--scope", "write").strip()
        headers = {"Authorization": f"Bearer {key}"}
        project = requests.get(f"{url}/api/v1/projects", headers=headers, timeout=10).json()["items"][0]["id"]
        yield {"url": url, "key": key, "project_id": project, "headers": headers}
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()


def test_pairing_claims_the_device_through_the_tenant_api(device, cloud):
    pairing = {"device_pairing_cloud_url": cloud["url"], "device_pairing_api_key": cloud["key"],
               "device_pairing_project_id": cloud["project_id"], "device_pairing_validate_certs": False}
    paired = device.playbook(**pairing)
    assert paired.returncode == 0, _show(paired)
    assert cloud["key"] not in paired.stdout + paired.stderr  # the vaulted key is never logged

    credentials_file = device.file("/var/lib/voxfleet/data/cloud.json")
    credentials = json.loads(credentials_file.read_text())
    assert credentials["cloud"] == cloud["url"] and credentials["password"]
    assert credentials_file.stat().st_mode & 0o777 == 0o600
    owner = device.chroot("stat", "-c", "%U", "/var/lib/voxfleet/data/cloud.json")
    assert owner.stdout.strip() == "voxfleet", owner
    listed = requests.get(f"{cloud['url']}/api/v1/devices", headers=cloud["headers"], timeout=10)
    devices = listed.json()["items"]
    assert [(d["device_key"], d["name"]) for d in devices] == [(credentials["device_id"], "voxfleet-test")]

    # A paired device is left alone: no second code, no change.
    again = device.playbook(**pairing)
    assert again.returncode == 0, _show(again)
    assert _recap(again)["changed"] == 0, _show(again)
    assert json.loads(credentials_file.read_text())["password"] == credentials["password"]
