"""Cloud configuration: defaults < ``DATA_DIR/cloud.toml`` < environment < command-line options.

With nothing configured the cloud runs on its embedded defaults inside one data folder (a SQLite
file, an embedded broker), so one command starts it on a laptop; a database URL and a broker URL
move it to PostgreSQL and Mosquitto/EMQX without code changes (docs/design.md, "Embedded default").
"""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

DEFAULT_DATA_DIR = Path("var/cloud")
CONFIG_FILE = "cloud.toml"
SECRET_KEY_FILE = "secret_key"

# Environment variable -> field. Only these are read: a stray VOXFLEET_* variable is not config.
ENVIRONMENT = {
    "VOXFLEET_DATABASE_URL": "database_url",
    "VOXFLEET_DATABASE_ROLE": "database_role",
    "VOXFLEET_BROKER_URL": "broker_url",
    "VOXFLEET_HTTP_HOST": "http_host",
    "VOXFLEET_HTTP_PORT": "http_port",
    "VOXFLEET_MQTT_PORT": "mqtt_port",
    "VOXFLEET_SECRET_KEY": "secret_key",
    "VOXFLEET_PUBLIC_URL": "public_url",
    "VOXFLEET_BROKER_DEVICE_URL": "broker_device_url",
    "VOXFLEET_BROKER_SERVICE_USERNAME": "broker_service_username",
    "VOXFLEET_BROKER_SERVICE_PASSWORD": "broker_service_password",
    "VOXFLEET_BROKER_ADMIN_USERNAME": "broker_admin_username",
    "VOXFLEET_BROKER_ADMIN_PASSWORD": "broker_admin_password",
    "VOXFLEET_WEBHOOKS_ALLOW_PRIVATE": "webhooks_allow_private",
    "VOXFLEET_SMTP_HOST": "smtp_host",
    "VOXFLEET_SMTP_PORT": "smtp_port",
    "VOXFLEET_SMTP_USERNAME": "smtp_username",
    "VOXFLEET_SMTP_PASSWORD": "smtp_password",
    "VOXFLEET_SMTP_FROM": "smtp_from",
    "VOXFLEET_SMTP_SECURITY": "smtp_security",
    "VOXFLEET_PASSWORD_RESET_MAX_AGE_S": "password_reset_max_age_s",
    "VOXFLEET_KEYCLOAK_URL": "keycloak_url",
    "VOXFLEET_KEYCLOAK_REALM": "keycloak_realm",
    "VOXFLEET_KEYCLOAK_CLIENT_ID": "keycloak_client_id",
    "VOXFLEET_KEYCLOAK_CLIENT_SECRET": "keycloak_client_secret",
    "VOXFLEET_KEYCLOAK_OPERATORS": "keycloak_operators",
    "VOXFLEET_BILLING_INTERVAL_S": "billing_interval_s",
    "VOXFLEET_BILLING_IN_SERVE": "billing_in_serve",
    "VOXFLEET_INVOICE_GRACE_HOURS": "invoice_grace_hours",
    "VOXFLEET_LAGO_API_URL": "lago_api_url",
    "VOXFLEET_LAGO_API_KEY": "lago_api_key",
    "VOXFLEET_PROXY_HOPS": "proxy_hops",
}


class ConfigError(ValueError):
    """Configuration that cannot be used; the message names the field and where it came from."""


class KeycloakRealmConfig(BaseModel):
    """One Keycloak realm the cloud signs people in with (a tenant's own, in ``[keycloak_tenants.SLUG]``).

    The client is a confidential OIDC client with PKCE (S256) required and, for team management, a
    service account holding the realm-management roles ``manage-users`` and ``view-users``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    server_url: str = Field(pattern=r"^https?://")
    realm: str = Field(min_length=1, max_length=200)
    client_id: str = Field(min_length=1, max_length=200)
    client_secret: SecretStr | None = None
    # TLS verification of the Keycloak server: true, false (never in production) or a CA bundle path.
    verify_tls: bool | str = True


class CloudConfig(BaseModel):
    """Everything the cloud needs to start. ``secret_key`` is a SecretStr so it never reaches a log."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path
    database_url: str
    # On PostgreSQL the app switches to this non-owner role so row-level security applies to it
    # (a table's owner and superusers bypass RLS). Empty: connect as-is (the login role is already it).
    database_role: str = Field(default="voxfleet_app", pattern=r"^([a-z_][a-z0-9_]{0,62})?$")
    broker_url: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=1, le=65535)
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    secret_key: SecretStr
    public_url: str | None = None
    # The broker URL handed to devices at pairing, when they reach it by another name than the
    # cloud does (a public host name, mqtts:// on 8883). Default: broker_url, or the embedded one.
    broker_device_url: str | None = None
    # The cloud's own broker account (ingest, desired config, commands). With the embedded broker it
    # is made once and kept in DATA_DIR/broker-service.json; with Mosquitto it is given here.
    broker_service_username: str = "voxfleet-cloud"
    broker_service_password: SecretStr | None = None
    # Mosquitto's Dynamic Security admin, with which the cloud creates and revokes device accounts.
    broker_admin_username: str = "voxfleet-admin"
    broker_admin_password: SecretStr | None = None
    # Webhook URLs on loopback/private addresses are refused (SSRF) unless this is set (tests, a LAN).
    webhooks_allow_private: bool = False
    # API rate limits (token buckets, per process): per API key, and per client address for
    # unauthenticated calls (pairing, health) and failed sign-ins.
    api_rate_limit_burst: int = Field(default=120, ge=1)
    api_rate_limit_per_minute: float = Field(default=600, gt=0)
    api_ip_rate_limit_burst: int = Field(default=30, ge=1)
    api_ip_rate_limit_per_minute: float = Field(default=120, gt=0)
    # Outgoing mail (invitations, password resets). Without smtp_host nothing is mailed: the links are
    # shown to the administrator who made them instead. smtp_security: starttls (port 587), tls
    # (implicit TLS, port 465) or none (a relay on localhost only).
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "VoxFleet <no-reply@localhost>"
    smtp_security: str = Field(default="starttls", pattern=r"^(starttls|tls|none)$")
    # How long a password reset link works (it also stops working once used).
    password_reset_max_age_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    # Platform-wide Keycloak realm (sign-in for every tenant whose people it lists; see
    # cloud/web/identity/keycloak.py for how a token's groups and organisation map to roles).
    keycloak_url: str | None = None
    keycloak_realm: str | None = None
    keycloak_client_id: str | None = None
    keycloak_client_secret: SecretStr | None = None
    # Whether the platform realm may make operators (group /platform/platform_admin). Off by default:
    # operators then sign in only with built-in accounts.
    keycloak_operators: bool = False
    # Tenants with a realm of their own, by tenant slug (TOML: [keycloak_tenants.acme]).
    keycloak_tenants: dict[str, KeycloakRealmConfig] = Field(default_factory=dict)
    # The billing scheduler (cloud/billing/scheduler.py): one pass every billing_interval_s seconds
    # (usage thresholds, closing ended periods, finalizing drafts, the Lago sync). serve runs it as a
    # thread unless billing_in_serve is off (production: `voxfleet cloud billing run` on its own).
    billing_interval_s: int = Field(default=60, ge=1, le=24 * 3600)
    billing_in_serve: bool = True
    # How long a closed period's invoice stays a draft (recomputed, so late usage is included)
    # before it is finalized and can no longer change.
    invoice_grace_hours: int = Field(default=72, ge=0, le=90 * 24)
    # Lago (cloud/billing/lago/): used only when both are set. The URL is the API's root (the client
    # adds /api/v1/), e.g. https://api.getlago.com; the key is an organisation API key, never logged.
    lago_api_url: str | None = Field(default=None, pattern=r"^https?://")
    lago_api_key: SecretStr | None = None
    # Reverse proxies in front of the web app (nginx: 1). Their X-Forwarded-For/-Proto/-Host/-Port are
    # trusted for exactly this many hops, so per-address sign-in throttles and rate limits see the real
    # client; 0 (no proxy) ignores those headers, which anyone could otherwise forge.
    proxy_hops: int = Field(default=0, ge=0, le=5)

    @property
    def keycloak(self) -> KeycloakRealmConfig | None:
        """The platform-wide realm, when all of its URL, realm and client id are set."""
        if not (self.keycloak_url and self.keycloak_realm and self.keycloak_client_id):
            return None
        return KeycloakRealmConfig(server_url=self.keycloak_url, realm=self.keycloak_realm,
                                   client_id=self.keycloak_client_id,
                                   client_secret=self.keycloak_client_secret)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if not (scheme.startswith("sqlite") or scheme.startswith("postgresql")):
            from cloud.db.session import safe_url

            raise ValueError(f"must be a sqlite:/// or postgresql:// URL, not {safe_url(value)!r}")
        return value

    @field_validator("broker_url", "broker_device_url")
    @classmethod
    def _known_broker(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if value.split("://", 1)[0] not in ("mqtt", "mqtts"):
            raise ValueError("must be an mqtt:// or mqtts:// URL")
        return value

    @property
    def lago_configured(self) -> bool:
        """Whether usage, customers and subscriptions are also kept in Lago (both URL and key set)."""
        return bool(self.lago_api_url and self.lago_api_key and self.lago_api_key.get_secret_value())

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url is None

    @property
    def base_url(self) -> str:
        """Where people reach the cloud: used in printed links (invites, pairing)."""
        return (self.public_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")


def resolve_data_dir(data_dir: str | os.PathLike | None = None,
                     environ: Mapping[str, str] | None = None) -> Path:
    """The data folder: the option if given, else $VOXFLEET_DATA_DIR, else var/cloud."""
    environ = os.environ if environ is None else environ
    chosen = data_dir or environ.get("VOXFLEET_DATA_DIR") or DEFAULT_DATA_DIR
    return Path(chosen).expanduser().resolve()


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    # Accept both a flat file and one with a [cloud] table.
    return dict(data.get("cloud", data))


def _secret_key(data_dir: Path) -> str:
    """The key that signs invite links and sessions: made once per data folder, readable by us only."""
    path = data_dir / SECRET_KEY_FILE
    if path.exists():
        key = path.read_text().strip()
        if key:
            return key
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # Created with 0600 from the start: never world-readable, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    os.chmod(path, 0o600)
    return key


def load_config(data_dir: str | os.PathLike | None = None, *, environ: Mapping[str, str] | None = None,
                **overrides: Any) -> CloudConfig:
    """Build the configuration; ``overrides`` are command-line options (None means not given)."""
    environ = os.environ if environ is None else environ
    root = resolve_data_dir(data_dir, environ)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, value in _read_toml(root / CONFIG_FILE).items():
        values[key] = value
        sources[key] = str(root / CONFIG_FILE)
    for env, key in ENVIRONMENT.items():
        if env in environ and environ[env] != "":
            values[key] = environ[env]
            sources[key] = f"${env}"
    for key, value in overrides.items():
        if value is not None:
            values[key] = value
            sources[key] = "command line"
    if "data_dir" in values and sources.get("data_dir") != "command line":
        raise ConfigError(f"data_dir cannot be set in {sources['data_dir']}: "
                          "use --data-dir or VOXFLEET_DATA_DIR")
    values["data_dir"] = root
    values.setdefault("database_url", f"sqlite:///{root / 'cloud.db'}")
    if not values.get("secret_key"):
        values["secret_key"] = _secret_key(root)
    try:
        return CloudConfig(**values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(part) for part in err["loc"]) or "config"
            where = sources.get(field.split(".")[0])
            # The input value is left out: it may be a secret or a URL with a password.
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{field}: {message}" + (f" (from {where})" if where else ""))
        raise ConfigError("invalid cloud configuration: " + "; ".join(problems)) from None
