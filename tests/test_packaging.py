"""What a device gets when it installs VoxFleet from a wheel (ansible's device_venv role does).

The editable checkout the other tests run from hides both of these: files that are not Python are
left out of a wheel unless declared, and a device has the `device` extra only, not the cloud's.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Run the CLI with the cloud's packages made unimportable, as on a device without the `cloud` extra.
WITHOUT_CLOUD = """
import sys
for name in ("sqlalchemy", "flask_sqlalchemy", "alembic", "psycopg", "amqtt", "lago_client", "keycloak"):
    sys.modules[name] = None
from voxfleet.cli import main
main(sys.argv[1:])
"""


def _voxfleet_without_cloud(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_CLOUD, *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_device_commands_work_without_the_cloud_extra():
    models = _voxfleet_without_cloud("device", "models", "--json")
    assert models.returncode == 0, models.stderr
    assert "tiny.en" in models.stdout


def test_cloud_commands_without_the_cloud_extra_say_what_to_install():
    serve = _voxfleet_without_cloud("cloud", "serve")
    assert serve.returncode != 0
    assert "voxfleet[cloud]" in serve.stderr and "Traceback" not in serve.stderr


def test_the_wheel_carries_pages_scripts_and_the_migration_template(tmp_path):
    # Built from a copy of the tracked files: a build in the checkout leaves voxfleet.egg-info there,
    # whose entry points (stale after a move) would shadow the installed ones for every later test.
    source = tmp_path / "source"
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True)
    for name in tracked.stdout.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(source)], check=True, timeout=300)
    wheel = next(tmp_path.glob("voxfleet-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("device/web/templates/base.html", "device/web/static/setup.css",
                     "device/web/static/recorder.js", "cloud/web/templates/operator/billing.html",
                     "cloud/web/static/app.css", "cloud/migrations/script.py.mako",
                     "cloud/migrations/versions/0011_lago.py"):
        assert expected in names, f"{expected} is missing from {wheel.name}"


def test_every_service_is_started_by_a_console_script():
    """systemd units and the supervisor name commands, never module paths (a move must not break them)."""
    import tomllib

    import yaml

    from device.stack.supervisor import SERVICES, SETUP_WEB

    ours = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
    bin_dir = Path(sys.executable).parent
    for spec in (*SERVICES, SETUP_WEB):
        assert spec.command[0] != "-m", f"{spec.name} is started as a module: {spec.command}"
        assert (bin_dir / spec.command[0]).exists(), f"{spec.command[0]} is not installed in {bin_dir}"
    units = yaml.safe_load((ROOT / "ansible/roles/device_services/defaults/main.yml").read_text())
    for unit in units["device_services_list"]:
        command = unit["command"].replace("{{ device_venv_path }}", "")
        program = Path(command.split()[0]).name
        assert "python" not in program, f"the {unit['name']} unit runs a module: {unit['command']}"
        assert program in ours or (bin_dir / program).exists(), f"{program} ({unit['name']}) is no command"
    for script in ours:
        assert (bin_dir / script).exists(), f"{script} is declared but not installed: rerun scripts/bootstrap"
