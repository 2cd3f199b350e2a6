"""Production broker: Mosquitto 2 with Dynamic Security, provisioned by DynsecAdmin over MQTT.

A test-owned Mosquitto on a free port; the shared one on 1883 is never touched.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.broker.acl import device_client_id
from cloud.broker.admin import BrokerAdmin, BrokerAdminError
from cloud.broker.dynsec import DynsecAdmin, DynsecError
from cloud.broker.mosquitto import MosquittoProcess
from protocol.topics import Channel, upstream_filter
from tests.cloud.broker.test_contract import BrokerContract, BrokerUnderTest, Probe, secret

ADMIN = "dynsec-admin"
ADMIN_PASSWORD = secret()


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoProcess]:
    process = MosquittoProcess(Path(tmp_path_factory.mktemp("mosquitto")), ADMIN, ADMIN_PASSWORD)
    with process:
        yield process


@pytest.fixture(scope="module")
def dynsec(mosquitto: MosquittoProcess) -> Iterator[DynsecAdmin]:
    with DynsecAdmin("127.0.0.1", mosquitto.port, ADMIN, ADMIN_PASSWORD) as admin:
        yield admin


@pytest.fixture(scope="module")
def service_account(dynsec: DynsecAdmin) -> tuple[str, str]:
    username, password = "voxfleet-cloud", secret()
    dynsec.ensure_service_account(username, password)
    return username, password


class TestMosquittoDynsec(BrokerContract):
    @pytest.fixture
    def broker(self, mosquitto: MosquittoProcess, dynsec: DynsecAdmin,
               service_account: tuple[str, str]) -> Iterator[BrokerUnderTest]:
        under_test = BrokerUnderTest("mosquitto+dynsec", mosquitto.port, dynsec, *service_account,
                                     broker_log=lambda: mosquitto.log_file.read_text())
        yield under_test
        under_test.close_probes()


def test_dynsec_admin_is_a_broker_admin(dynsec: DynsecAdmin) -> None:
    assert isinstance(dynsec, BrokerAdmin)


def test_shared_subscription_splits_events_between_ingest_workers(
        mosquitto: MosquittoProcess, dynsec: DynsecAdmin, service_account: tuple[str, str]) -> None:
    broker = BrokerUnderTest("mosquitto+dynsec", mosquitto.port, dynsec, *service_account)
    try:
        workers = [broker.connected(*service_account) for _ in range(2)]
        for worker in workers:
            assert not worker.subscribe(upstream_filter(Channel.EVENTS, "ingest")).is_failure
        a = broker.device()
        device = broker.device_client(a)
        payloads = [f"e{i}-{uuid.uuid4().hex}".encode() for i in range(10)]
        for payload in payloads:
            device.publish(a.topic(Channel.EVENTS), payload)
        for payload in payloads:  # every event reaches one of the workers ...
            assert any(worker.got(payload) for worker in workers) or wait_for_any(workers, payload)
        counts = [sum(worker.got(p) for p in payloads) for worker in workers]
        assert sum(counts) == len(payloads), counts  # ... exactly one
        assert all(counts), f"one worker got nothing: {counts}"
    finally:
        broker.close_probes()


def wait_for_any(workers: list[Probe], payload: bytes, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(worker.got(payload) for worker in workers):
            return True
        time.sleep(0.02)
    return False


def test_dynsec_errors_surface_as_exceptions(dynsec: DynsecAdmin) -> None:
    with pytest.raises(DynsecError, match="Unknown command") as info:
        dynsec.execute([{"command": "noSuchCommand"}])
    assert info.value.error == "Unknown command"
    with pytest.raises(DynsecError, match="Role not found"):
        dynsec.execute([{"command": "deleteRole", "rolename": f"missing-{uuid.uuid4().hex}"}])
    with pytest.raises(ValueError):
        dynsec.add_device("dev-short-pw", "u-short", "short")
    with pytest.raises(ValueError):
        dynsec.add_device("Not A Device Id", "u-bad-id", secret())


def test_wrong_admin_password_is_a_clear_error(mosquitto: MosquittoProcess) -> None:
    with pytest.raises(BrokerAdminError, match="could not open the dynsec control channel.*refused"):
        DynsecAdmin("127.0.0.1", mosquitto.port, ADMIN, "wrong-admin-password", timeout=5)


def test_a_device_account_cannot_drive_dynsec(mosquitto: MosquittoProcess, dynsec: DynsecAdmin) -> None:
    username, password = f"u-{uuid.uuid4().hex[:8]}", secret()
    device_id = f"dev-{uuid.uuid4().hex[:8]}"
    dynsec.add_device(device_id, username, password)
    with pytest.raises(BrokerAdminError, match="not a dynsec admin"):
        DynsecAdmin("127.0.0.1", mosquitto.port, username, password, timeout=5,
                    client_id=device_client_id(device_id))


def test_unreachable_mosquitto_is_a_clear_error() -> None:
    from cloud.broker.mosquitto import free_port
    port = free_port()
    with pytest.raises(BrokerAdminError, match=f"cannot reach Mosquitto at 127.0.0.1:{port}"):
        DynsecAdmin("127.0.0.1", port, ADMIN, ADMIN_PASSWORD, timeout=2)
