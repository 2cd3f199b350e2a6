"""What a fleet needs from any device and cloud pair, whichever release each runs.

Run the same way in both directions (tests/e2e/test_compat.py): the device pairs through the
cloud's API, comes online with a heartbeat, applies and acknowledges a desired configuration, hears
a spoken command whose session reaches the cloud's API with its transcript and intent, and answers
a command. Before any of it, every process is asked which code it runs (probe.py).
"""

from __future__ import annotations

from pathlib import Path

from tests.e2e.compat import probe
from tests.e2e.compat.cloud_side import Cloud
from tests.e2e.compat.device_side import Device, running
from tests.e2e.compat.install import Code
from tests.waiting import wait_until

# The stack's Python services by their supervisor names (every release so far), each probed.
PYTHON_SERVICES = ("messagebus", "volume", "agent", "core", "audio", "listener")
WAKE_THRESHOLD = 0.6  # not the default (0.5); openWakeWord scores the Piper wake phrase near 1.0


def assert_runs_its_own_code(label: str, pid: int, code: Code) -> None:
    """Fail unless process ``pid`` finds only ``code``'s VoxFleet packages, plugins and version."""
    report = probe.in_process(pid)
    wrong = probe.foreign(report, code)
    assert not wrong, f"{label} (pid {pid}) does not run the {code.label} code:\n" + "\n".join(wrong)
    assert report["distributions"]["voxfleet"]["version"] == code.version, report["distributions"]


def pair_and_sync(cloud: Cloud, device: Device, spoken: Path, spoken_text: str) -> None:
    """Pair ``device`` with ``cloud`` and check, through the cloud's API, everything a fleet relies on."""
    assert_runs_its_own_code(f"the {cloud.code.label} cloud", cloud.process.pid, cloud.code)
    device.configure()

    def claim(code: str) -> dict:
        claimed = cloud.call("POST", "/pairing/claim",
                             json={"code": code, "project_id": cloud.project_id, "name": "Lobby"})
        assert claimed.status_code == 201, claimed.text
        return claimed.json()

    device_id = device.pair(cloud.url, claim)["id"]
    with running(device):
        pids = device.service_pids()
        assert set(PYTHON_SERVICES) <= set(pids), f"device status lists {pids}"
        for service, pid in pids.items():
            assert_runs_its_own_code(f"the {device.code.label} device's {service}", pid, device.code)

        def detail() -> dict:
            answer = cloud.call("GET", f"/devices/{device_id}")
            assert answer.status_code == 200, answer.text
            return answer.json()

        wait_until(lambda: detail()["presence"] == "online", 120, "the device to show online")
        wait_until(lambda: detail()["last_heartbeat_at"], 120, "the device's first heartbeat")

        # A desired configuration through the cloud's API, applied and acknowledged by the device.
        put = cloud.call("PUT", f"/devices/{device_id}/config", json={"wake_threshold": WAKE_THRESHOLD})
        assert put.status_code == 200, put.text
        version = put.json()["version"]

        def acked() -> dict | None:
            ack = cloud.call("GET", f"/devices/{device_id}/config").json()["ack"]
            return ack if ack and ack["acked_version"] == version else None

        ack = wait_until(acked, 300, f"the device to acknowledge config v{version}")
        assert ack["status"] == "applied", f"{ack}; agent log:\n{device.log_tail('agent.log')}"
        hotwords = [h for h in device.mycroft_conf()["hotwords"].values() if h.get("active")]
        assert [h["threshold"] for h in hotwords] == [WAKE_THRESHOLD], hotwords
        wait_until(device.ready, 300, "every service ready again after the configuration change", every=2)

        # A spoken command: its session reaches the cloud with what the device heard and did.
        heard = device.listen([spoken])
        assert len(heard) == 1, heard
        heard = heard[0]
        assert "time" in heard["transcript"].lower() and heard["intent"], (spoken_text, heard)

        def arrived() -> dict | None:
            items = cloud.call("GET", "/sessions", params={"device_id": device_id}).json()["items"]
            found = [i for i in items if i["session_key"] == heard["session_id"] and i["end_state"]]
            return found[0] if found else None

        stored = wait_until(arrived, 120, "the session in the cloud's API")
        assert stored["transcript"] == heard["transcript"]
        assert f"{stored['intent_skill']}:{stored['intent_name']}" == heard["intent"]
        assert stored["answer"] == heard["answer"] and stored["end_state"] == "answered", stored

        # A command through the cloud's API, answered by the device.
        sent = cloud.call("POST", f"/devices/{device_id}/commands", json={"action": "report_now"})
        assert sent.status_code == 202, sent.text
        command_id = sent.json()["command_id"]

        def finished() -> dict | None:
            command = cloud.call("GET", f"/devices/{device_id}/commands/{command_id}").json()
            return command if command["status"] in ("ok", "error", "rejected") else None

        result = wait_until(finished, 120, "the command's result")
        assert result["status"] == "ok", result

        # The heartbeat it sent tells the cloud that every service is ready, and which release runs.
        def all_ready() -> dict | None:
            beat = detail()["last_heartbeat"] or {}
            services = beat.get("services") or {}
            ready = set(PYTHON_SERVICES) <= set(services) and set(services.values()) == {"ready"}
            return beat if ready else None

        beat = wait_until(all_ready, 120, "a heartbeat with every service ready")
        assert (beat.get("versions") or {}).get("voxfleet") == device.code.version, beat
