"""The README's first command, as a new user meets it: ``voxfleet demo`` (what scripts/demo runs) goes
to the end with the real voice stack and the real cloud, then what it printed is tried: the portal URL
answers, the operator's and the owner's sign-ins work in Chromium, the owner sees the spoken sessions
in the tenant portal, the passwords are kept in a 0600 file and shown only once, nothing printed or
logged an ERROR, the stop command stops the cloud, and a second run reuses the accounts, the key and
the pairing. One run pair (each run speaks the 16 sample commands: several minutes on 2 cores)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from tests.cloud.browser import Person, sign_in
from tests.conftest import VOXFLEET

pytestmark = pytest.mark.voice

RUN_TIMEOUT_S = 1200
# A line that reports a fault: a log record at ERROR or above, or a traceback.
FAULT = re.compile(r" - (ERROR|CRITICAL) - | ERROR | CRITICAL |Traceback \(most recent call last\)")


@dataclass
class Printed:
    """What a run printed: the portal, both sign-ins (password None when pointed to the file), and the
    transcripts of the sessions table."""

    url: str
    operator: tuple[str, str | None]
    owner: tuple[str, str | None]
    transcripts: list[str]
    stdout: str
    stderr: str


def _demo(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([VOXFLEET, "demo", "--data-dir", str(data_dir), *args], capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S)


def _sign_in_line(stdout: str, role: str) -> tuple[str, str | None]:
    found = re.search(rf"^  {role} +(\S+@\S+) +password (in )?(\S+)$", stdout, re.M)
    assert found, f"no {role} sign-in in:\n{stdout}"
    return found[1], None if found[2] else found[3]


def _run(data_dir: Path) -> Printed:
    done = _demo(data_dir)
    assert done.returncode == 0, f"the demo failed ({done.returncode}):\n{done.stderr[-4000:]}"
    out = done.stdout
    counted = re.search(r"^(\d+) of (\d+) voice sessions are in the cloud", out, re.M)
    assert counted and counted[1] == counted[2] and int(counted[2]) >= 10, out
    table = out[out.index("transcript "):out.index("The portal:")].splitlines()[1:]
    transcripts = [line[:40].strip() for line in table if line.strip()]
    portal = re.search(r"^The portal: (http://\S+)/login$", out, re.M)
    assert portal, out
    return Printed(portal[1], _sign_in_line(out, "operator"), _sign_in_line(out, "tenant owner"),
                   transcripts, out, done.stderr)


def _faults(printed: Printed, data_dir: Path) -> list[str]:
    """ERROR lines and tracebacks in what the demo printed and in every log it left."""
    texts = {"demo output": printed.stdout + printed.stderr}
    for log in sorted([*(data_dir / "device" / "logs").glob("*.log"), data_dir / "cloud" / "serve.log"]):
        texts[str(log.relative_to(data_dir))] = log.read_text(errors="replace")
    return [f"{where}: {line[:300]}" for where, text in texts.items() for line in text.splitlines()
            if FAULT.search(line)]


def _signed_in_page(chromium, url: str, email: str, password: str):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, SimpleNamespace(url=url), Person(email, password, role=""))
    return context, page


def _check_portal(chromium, printed: Printed, operator_password: str, owner_password: str,
                  transcripts: list[str]) -> None:
    url = printed.url
    assert requests.get(f"{url}/login", timeout=10).status_code == 200

    context, page = _signed_in_page(chromium, url, printed.operator[0], operator_password)
    try:
        assert "/operator" in page.url, page.url
        page.goto(f"{url}/operator/tenants")
        assert "Demo Hotels" in page.inner_text("main")
    finally:
        context.close()

    context, page = _signed_in_page(chromium, url, printed.owner[0], owner_password)
    try:
        assert "/tenant" in page.url, page.url
        page.goto(f"{url}/tenant/sessions")
        shown = page.inner_text("main")
        missing = [t for t in transcripts if t not in shown]
        assert missing == [], f"not on the tenant's sessions page: {missing}\n{shown[:3000]}"
    finally:
        context.close()


def test_the_demo_ends_with_the_portal_and_a_second_run_reuses_it(tmp_path, chromium):
    data_dir = tmp_path / "demo"
    try:
        first = _run(data_dir)
        operator_email, operator_password = first.operator
        owner_email, owner_password = first.owner
        assert operator_password and owner_password, "the first run shows the new passwords"
        assert operator_email != owner_email
        # Shown once, on stdout; kept only in the demo folder's 0600 file.
        for secret in (operator_password, owner_password):
            assert first.stdout.count(secret) == 1 and secret not in first.stderr
        kept = data_dir / "sign-ins.json"
        assert kept.stat().st_mode & 0o777 == 0o600
        assert operator_password in kept.read_text() and owner_password in kept.read_text()
        assert "voxfleet demo --stop" in first.stdout
        assert _faults(first, data_dir) == []
        spoken = [t for t in first.transcripts if len(t) < 39]  # the table cuts longer ones
        _check_portal(chromium, first, operator_password, owner_password, spoken)

        stopped = _demo(data_dir, "--stop")
        assert stopped.returncode == 0 and "stopped the demo's cloud" in stopped.stderr, stopped.stderr
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{first.url}/login", timeout=10)

        sign_ins, key = kept.read_bytes(), (data_dir / "cloud" / "demo-api-key").read_bytes()
        second = _run(data_dir)
        assert second.url == first.url
        assert second.operator == (operator_email, None) and second.owner == (owner_email, None)
        for secret in (operator_password, owner_password):
            assert secret not in second.stdout + second.stderr
        assert f"password in {kept}" in second.stdout
        assert kept.read_bytes() == sign_ins and (data_dir / "cloud" / "demo-api-key").read_bytes() == key
        assert "device paired as" in first.stderr and "device paired as" not in second.stderr
        assert _faults(second, data_dir) == []
        _check_portal(chromium, second, operator_password, owner_password,
                      [t for t in second.transcripts if len(t) < 39])
    finally:
        _demo(data_dir, "--stop")
