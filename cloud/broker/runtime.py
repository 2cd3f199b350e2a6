"""How every cloud process reaches the broker: which admin provisions devices, which account the
cloud itself connects with, and which URL devices are told to use.

Embedded default: the broker runs inside ``voxfleet cloud serve`` on ``mqtt_port``; the cloud's
service account is generated once and kept in ``DATA_DIR/broker-service.json`` (0600), so other
processes on the same data folder (``voxfleet cloud ingest``, the CLI) find it. Production: the
broker URL, the service account and the Dynamic Security admin come from the configuration.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

from cloud.broker.admin import BrokerAdmin, BrokerAdminError
from cloud.config import CloudConfig

SERVICE_FILE = "broker-service.json"


@dataclass(frozen=True)
class ServiceAccount:
    username: str
    password: str

    def __repr__(self) -> str:  # never print the password
        return f"ServiceAccount(username={self.username!r})"


def broker_url(config: CloudConfig) -> str:
    """The URL the cloud's own clients connect to."""
    return config.broker_url or f"mqtt://127.0.0.1:{config.mqtt_port}"


def device_broker_url(config: CloudConfig) -> str:
    """The URL handed to a device at pairing."""
    if config.broker_device_url:
        return config.broker_device_url
    if config.broker_url:
        return config.broker_url
    host = urlparse(config.base_url).hostname or config.http_host
    return f"mqtt://{host}:{config.mqtt_port}"


def service_account(config: CloudConfig) -> ServiceAccount:
    if not config.embedded_broker:
        if config.broker_service_password is None:
            raise BrokerAdminError("broker_service_password (VOXFLEET_BROKER_SERVICE_PASSWORD) must be set "
                                   "when the cloud uses an external broker")
        password = config.broker_service_password.get_secret_value()
        return ServiceAccount(config.broker_service_username, password)
    path = config.data_dir / SERVICE_FILE
    if path.exists():
        data = json.loads(path.read_text())
        return ServiceAccount(data["username"], data["password"])
    account = ServiceAccount(config.broker_service_username, secrets.token_urlsafe(32))
    config.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"username": account.username, "password": account.password}, out)
    return account


def broker_admin(config: CloudConfig, broker=None) -> BrokerAdmin:
    """The admin that creates and revokes device accounts on the broker this cloud uses."""
    if config.embedded_broker:
        from cloud.broker.embedded import EmbeddedBrokerAdmin

        return EmbeddedBrokerAdmin(config.data_dir, broker)
    if config.broker_admin_password is None:
        raise BrokerAdminError("broker_admin_password (VOXFLEET_BROKER_ADMIN_PASSWORD) must be set: the "
                               "cloud provisions device accounts through Mosquitto's Dynamic Security plugin")
    from cloud.broker.dynsec import DynsecAdmin

    url = urlparse(config.broker_url)
    return DynsecAdmin(url.hostname, url.port or 1883, config.broker_admin_username,
                       config.broker_admin_password.get_secret_value())


def service_client(config: CloudConfig, client_id: str, clean_session: bool = True,
                   manual_ack: bool = False) -> mqtt.Client:
    """A paho client logged in as the cloud's service account (not yet connected)."""
    account = service_account(config)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session,
                         protocol=mqtt.MQTTv311, manual_ack=manual_ack)
    client.username_pw_set(account.username, account.password)
    if urlparse(broker_url(config)).scheme == "mqtts":
        client.tls_set()
    return client


def connect(client: mqtt.Client, config: CloudConfig, keepalive: int = 30) -> None:
    url = urlparse(broker_url(config))
    client.connect(url.hostname, url.port or (8883 if url.scheme == "mqtts" else 1883), keepalive)
