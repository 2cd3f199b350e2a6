"""The embedded default broker (amqtt in-process) holds to the same contract as production.

Plus what only the embedded broker has: its own credential store, revocation made by another
process on the same data dir, and amqtt's limits (no shared subscriptions) refused loudly.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.broker.admin import AccountExistsError, BrokerAdmin
from cloud.broker.embedded import STORE_FILE, EmbeddedBroker, EmbeddedBrokerAdmin, EmbeddedBrokerError
from cloud.broker.mosquitto import free_port
from protocol.topics import Channel, upstream_filter
from tests.cloud.broker.test_contract import WAIT, BrokerContract, BrokerUnderTest, Device, secret

SERVICE = "voxfleet-cloud"
SERVICE_PASSWORD = secret()


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(Path(tmp_path_factory.mktemp("cloud-data")), port=free_port(),
                            reconcile_interval=0.2)
    with broker:
        broker.admin().ensure_service_account(SERVICE, SERVICE_PASSWORD)
        yield broker


@pytest.fixture
def under_test(embedded: EmbeddedBroker) -> Iterator[BrokerUnderTest]:
    broker = BrokerUnderTest("embedded amqtt", embedded.port, embedded.admin(), SERVICE, SERVICE_PASSWORD)
    yield broker
    broker.close_probes()


class TestEmbeddedBroker(BrokerContract):
    @pytest.fixture
    def broker(self, under_test: BrokerUnderTest) -> BrokerUnderTest:
        return under_test


def test_embedded_admin_is_a_broker_admin(embedded: EmbeddedBroker) -> None:
    assert isinstance(embedded.admin(), BrokerAdmin)


def test_store_keeps_only_argon2_hashes(embedded: EmbeddedBroker, under_test: BrokerUnderTest) -> None:
    a = under_test.device()
    raw = (embedded.data_dir / STORE_FILE).read_bytes()
    wal = embedded.data_dir / (STORE_FILE + "-wal")
    raw += wal.read_bytes() if wal.exists() else b""
    assert a.password.encode() not in raw
    assert SERVICE_PASSWORD.encode() not in raw
    account = embedded.store.get(a.username)
    assert account is not None and account.device_id == a.device_id
    assert b"$argon2id$" in raw


def test_shared_subscriptions_are_refused_not_silently_empty(under_test: BrokerUnderTest) -> None:
    worker = under_test.connected(SERVICE, SERVICE_PASSWORD)
    assert worker.subscribe(upstream_filter(Channel.EVENTS, "ingest")).is_failure
    assert not worker.subscribe(upstream_filter(Channel.EVENTS)).is_failure


def test_removal_by_another_process_on_the_same_data_dir_drops_the_device(
        embedded: EmbeddedBroker, under_test: BrokerUnderTest) -> None:
    a = under_test.device()
    device = under_test.device_client(a)
    # An admin with no broker in hand, as a `voxfleet cloud` command on the same --data-dir has.
    other_process_admin = EmbeddedBrokerAdmin(embedded.data_dir)
    assert other_process_admin.remove_device(a.username) is True
    assert device.disconnected.wait(WAIT), "the reconciler did not drop the revoked device"
    assert under_test.probe(a.username, a.password, a.client_id).connect().is_failure


def test_accounts_survive_a_broker_restart(tmp_path: Path) -> None:
    port = free_port()
    device_id, username, password = f"dev-{uuid.uuid4().hex[:8]}", "u-restart", secret()
    with EmbeddedBroker(tmp_path, port=port) as first:
        first.admin().add_device(device_id, username, password)
    with EmbeddedBroker(tmp_path, port=port) as second:
        broker = BrokerUnderTest("embedded amqtt", port, second.admin(), SERVICE, SERVICE_PASSWORD)
        try:
            broker.device_client(Device(device_id, username, password))
            with pytest.raises(AccountExistsError):
                second.admin().add_device(device_id, username, secret())
        finally:
            broker.close_probes()


def test_taken_port_is_a_clear_error_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = EmbeddedBroker(tmp_path, port=port)
        with pytest.raises(EmbeddedBrokerError, match=f"port {port} on 127.0.0.1 is already in use"):
            broker.start()
        assert not broker.running


def test_bad_credentials_are_refused_by_the_store(embedded: EmbeddedBroker) -> None:
    admin = embedded.admin()
    with pytest.raises(ValueError, match="at least 12"):
        admin.add_device("dev-short", "u-short", "short")
    with pytest.raises(ValueError, match="username"):
        admin.add_device("dev-wild", "u/+#", secret())
    with pytest.raises(ValueError, match="invalid device id"):
        admin.add_device("NOT VALID", "u-invalid", secret())
    device_user = f"u-{uuid.uuid4().hex[:8]}"
    admin.add_device(f"dev-{uuid.uuid4().hex[:8]}", device_user, secret())
    with pytest.raises(AccountExistsError):  # a device's username cannot become the service's
        admin.ensure_service_account(device_user, secret())
