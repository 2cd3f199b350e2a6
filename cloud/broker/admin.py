"""What the cloud asks of any broker: per-device credentials, confinement, revocation.

Pairing, unpairing and tenant suspension talk to this interface only, so the same code provisions
Mosquitto's Dynamic Security plugin in production and the embedded broker on a laptop.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class BrokerAdminError(RuntimeError):
    """The broker refused or could not carry out an administrative request."""


class AccountExistsError(BrokerAdminError):
    """A broker username is already taken: credentials are never silently overwritten."""


def check_credentials(username: str, password: str) -> None:
    """The same rules on every broker, so credentials that work on a laptop work in production.

    Topic-like characters are refused because some brokers substitute usernames into ACL patterns.
    """
    if not username or len(username) > 128 or any(ch.isspace() or ch in "+#/$" for ch in username):
        raise ValueError("a broker username is 1-128 characters without spaces, '+', '#', '/' or '$'")
    if len(password) < 12:
        raise ValueError("a broker password must be at least 12 characters")


@runtime_checkable
class BrokerAdmin(Protocol):
    """Provisioning of broker accounts; passwords pass through, are never logged nor returned."""

    def add_device(self, device_id: str, username: str, password: str) -> None:
        """Create ``username`` confined to ``device_id``'s topics (cloud.broker.acl.device_grants) and
        to the client id ``voxfleet-{device_id}`` (cloud.broker.acl.device_client_id).

        Raises AccountExistsError if the username exists, BrokerAdminError on any other refusal.
        """
        ...

    def remove_device(self, username: str) -> bool:
        """Revoke the account and drop its live connection; False if there was no such account."""
        ...

    def disable_device(self, username: str) -> bool:
        """Keep the account but refuse it and drop its connection (a suspended tenant's devices)."""
        ...

    def enable_device(self, username: str) -> bool:
        """Let a disabled account connect again (the tenant was reactivated)."""
        ...

    def ensure_service_account(self, username: str, password: str) -> None:
        """Create or update the cloud services' account (cloud.broker.acl.service_grants)."""
        ...

    def close(self) -> None:
        """Release the admin's own connection or handles."""
        ...
