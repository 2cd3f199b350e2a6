"""Production provisioning: Mosquitto's Dynamic Security plugin, driven over MQTT.

Dynsec is changed at run time by publishing JSON commands to ``$CONTROL/dynamic-security/v1`` and
reading the answers on ``.../response``; deleting a client makes Mosquitto drop its connection at
once, which is how unpairing and tenant suspension take effect without a broker restart.
Each device account gets its own role holding exactly cloud.broker.acl.device_grants.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as mqtt

from cloud.broker.acl import Grants, device_client_id, device_grants, service_grants
from cloud.broker.admin import AccountExistsError, BrokerAdminError, check_credentials

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
SERVICE_ROLE = "voxfleet-service"


class DynsecError(BrokerAdminError):
    """Dynsec answered a command with an error; ``error`` is its own text (e.g. 'Client not found')."""

    def __init__(self, command: str, error: str, subject: str | None = None) -> None:
        self.command, self.error, self.subject = command, error, subject
        about = f" for {subject!r}" if subject else ""
        super().__init__(f"dynamic security refused {command}{about}: {error}")


def device_role(username: str) -> str:
    """One role per device account, so revoking an account removes exactly its grants."""
    return f"voxfleet-device:{username}"


def role_acls(grants: Grants) -> list[dict[str, Any]]:
    """Grants as dynsec ACLs: send = publishClientSend, subscribe = subscribePattern, receive =
    publishClientReceive (the broker's defaults deny all three, see mosquitto.write_dynsec_state)."""
    acls: list[dict[str, Any]] = []
    for acltype, topics in (("publishClientSend", grants.publish), ("subscribePattern", grants.subscribe),
                            ("publishClientReceive", grants.receive)):
        acls += [{"acltype": acltype, "topic": t, "priority": 0, "allow": True} for t in topics]
    return acls


class DynsecAdmin:
    """BrokerAdmin over Dynamic Security, as the cloud's dynsec admin user (its only power: $CONTROL)."""

    def __init__(self, host: str, port: int, admin_username: str, admin_password: str, *,
                 timeout: float = 10.0, client_id: str | None = None) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._refused: str | None = None
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=client_id or f"voxfleet-dynsec-{uuid.uuid4().hex[:12]}",
                             clean_session=True, protocol=mqtt.MQTTv311)
        client.username_pw_set(admin_username, admin_password)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        self._client = client
        try:
            client.connect(host, port, keepalive=30)
        except OSError as exc:
            raise BrokerAdminError(f"cannot reach Mosquitto at {host}:{port}: {exc}") from exc
        client.loop_start()
        if not self._subscribed.wait(timeout):
            self.close()
            reason = self._refused or "no answer"
            raise BrokerAdminError(f"could not open the dynsec control channel on {host}:{port} as "
                                   f"{admin_username!r} within {timeout:.0f}s ({reason})")

    # --- paho callbacks (network thread) -------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        if reason_code.is_failure:
            self._refused = f"connection refused: {reason_code}"
            client.disconnect()
            return
        self._connected.set()
        client.subscribe(RESPONSE_TOPIC, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any,
                      properties: Any) -> None:
        if any(rc.is_failure for rc in reason_codes):
            self._refused = "not allowed to subscribe to the dynsec response topic (not a dynsec admin?)"
            return
        self._subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        self._connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            responses = json.loads(message.payload.decode("utf-8", errors="replace"))["responses"]
        except (ValueError, KeyError, TypeError):
            log.warning("dynsec: unreadable response on %s ignored", message.topic)
            return
        with self._lock:
            for response in responses:
                slot = self._waiting.get(str(response.get("correlationData")))
                if slot is not None:
                    slot[1].append(response)
                    slot[0].set()

    # --- commands ------------------------------------------------------------------------------------

    def execute(self, commands: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send commands, one request each, and return their answers; the first error raises DynsecError.

        One command per request keeps the failure point exact: dynsec runs a batch to the end even
        when a command in it fails.
        """
        return [self._execute_one(command) for command in commands]

    def _execute_one(self, command: dict[str, Any]) -> dict[str, Any]:
        correlation = uuid.uuid4().hex
        done = threading.Event()
        answers: list[dict[str, Any]] = []
        with self._lock:
            self._waiting[correlation] = (done, answers)
        name = command["command"]
        subject = command.get("username") or command.get("rolename")
        try:
            payload = json.dumps({"commands": [{**command, "correlationData": correlation}]})
            info = self._client.publish(CONTROL_TOPIC, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise BrokerAdminError(f"dynsec {name}: publish failed ({mqtt.error_string(info.rc)})")
            if not done.wait(self.timeout):
                raise BrokerAdminError(f"dynsec {name}: no answer within {self.timeout:.0f}s from "
                                       f"{self.host}:{self.port} (is the dynamic security plugin loaded?)")
        finally:
            with self._lock:
                self._waiting.pop(correlation, None)
        answer = answers[0]
        if answer.get("error"):
            raise DynsecError(name, str(answer["error"]), subject)
        log.debug("dynsec %s %s: ok", name, subject or "")
        return answer

    def _ignore(self, command: dict[str, Any], *harmless: str) -> bool:
        """Run a command; True if it worked, False if it failed with one of the ``harmless`` errors."""
        try:
            self._execute_one(command)
            return True
        except DynsecError as exc:
            if exc.error in harmless:
                return False
            raise

    # --- BrokerAdmin ---------------------------------------------------------------------------------

    def add_device(self, device_id: str, username: str, password: str) -> None:
        # The client first, with no role: if the username is taken nothing else is touched, and until
        # its role is attached the new account can do nothing at all (the defaults deny).
        check_credentials(username, password)
        textname = f"device {device_id}"
        try:
            self._execute_one({"command": "createClient", "username": username, "password": password,
                               "clientid": device_client_id(device_id), "textname": textname})
        except DynsecError as exc:
            if exc.error == "Client already exists":
                raise AccountExistsError(f"broker account {username!r} already exists") from exc
            raise
        role = device_role(username)
        create_role = {"command": "createRole", "rolename": role, "textname": textname,
                       "acls": role_acls(device_grants(device_id))}
        try:
            if not self._ignore(create_role, "Role already exists"):
                # Left over by an interrupted add or remove; no client holds it (its name is this new
                # account's), so replacing it is safe. Mosquitto 2.0.11 corrupts the role list of a
                # client whose role is deleted under it, which is why a held role is never replaced.
                self._execute_one({"command": "deleteRole", "rolename": role})
                self._execute_one(create_role)
            self._execute_one({"command": "addClientRole", "username": username, "rolename": role})
        except BrokerAdminError:
            self._ignore({"command": "deleteClient", "username": username}, "Client not found")
            raise
        log.info("dynsec: device account %s created for %s", username, device_id)

    def remove_device(self, username: str) -> bool:
        # deleteClient makes Mosquitto disconnect every connection of that username at once.
        existed = self._ignore({"command": "deleteClient", "username": username}, "Client not found")
        self._ignore({"command": "deleteRole", "rolename": device_role(username)}, "Role not found")
        if existed:
            log.info("dynsec: device account %s removed and disconnected", username)
        return existed

    def disable_device(self, username: str) -> bool:
        # disableClient also disconnects every connection of that username.
        return self._ignore({"command": "disableClient", "username": username}, "Client not found")

    def enable_device(self, username: str) -> bool:
        return self._ignore({"command": "enableClient", "username": username}, "Client not found")

    def ensure_service_account(self, username: str, password: str) -> None:
        check_credentials(username, password)
        acls = role_acls(service_grants())
        if not self._ignore({"command": "createRole", "rolename": SERVICE_ROLE, "textname": "VoxFleet cloud",
                             "acls": acls}, "Role already exists"):
            for acl in acls:  # bring an older role up to today's grants; duplicates are replaced
                self._ignore({"command": "addRoleACL", "rolename": SERVICE_ROLE, **acl},
                             "ACL with this topic already exists")
        if self._ignore({"command": "createClient", "username": username, "password": password,
                         "textname": "VoxFleet cloud services", "roles": [{"rolename": SERVICE_ROLE}]},
                        "Client already exists"):
            log.info("dynsec: service account %s created", username)
            return
        self._execute_one({"command": "setClientPassword", "username": username, "password": password})
        client = self._execute_one({"command": "getClient", "username": username}).get("data", {})
        roles = {r.get("rolename") for r in client.get("client", {}).get("roles", [])}
        if SERVICE_ROLE not in roles:  # dynsec 2.0 answers 'Internal error' to adding a role twice
            self._execute_one({"command": "addClientRole", "username": username, "rolename": SERVICE_ROLE})
        log.info("dynsec: service account %s updated", username)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> DynsecAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
