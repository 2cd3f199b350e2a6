"""The demo's people: an operator and the owner of the demo tenant, with generated passwords.

They are made once, through the product's own commands (``voxfleet cloud admin create-tenant
--password-stdin`` and ``create-operator --password-stdin``: nobody can follow an invite link in a
demo), and their passwords are kept in ``DATA_DIR/sign-ins.json``, readable by its owner only (0600).
The file is written before any account is made and records each account once it exists, so an
interrupted run loses no password and the next run makes only what is missing. The passwords are
printed by the first run that gets to the end, and never again.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click

from device.files import write_atomic
from voxfleet.demo.shell import run

FILE = "sign-ins.json"
TENANT_NAME, TENANT_SLUG = "Demo Hotels", "demo-hotels"
OPERATOR_EMAIL, OWNER_EMAIL = "operator@demo.invalid", "owner@demo.invalid"
KEY_FILE = "demo-api-key"


@dataclass
class SignIns:
    operator_email: str
    operator_password: str
    owner_email: str
    owner_password: str
    tenant: str = TENANT_SLUG
    made: list[str] = field(default_factory=list)  # "tenant", "operator": accounts that exist
    shown: bool = False  # the passwords were printed


def _save(path: Path, signins: SignIns) -> None:
    write_atomic(path, json.dumps(asdict(signins), indent=2) + "\n", mode=0o600)


def _load(path: Path) -> SignIns:
    try:
        signins = SignIns(**json.loads(path.read_text()))
        if not all(isinstance(v, str) and v for v in (signins.operator_email, signins.operator_password,
                                                       signins.owner_email, signins.owner_password)):
            raise ValueError("an email or password is missing")
    except (ValueError, TypeError) as exc:
        raise click.ClickException(
            f"{path} is not readable ({exc}). It holds the demo's sign-ins: put it back as it was, or "
            f"remove the whole demo folder {path.parent} to start over") from None
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return signins


def prepare(data_dir: Path, cloud_dir: Path) -> SignIns:
    """The sign-ins kept in the demo folder, or new ones (saved at once). Checked before anything starts."""
    path = data_dir / FILE
    if path.exists():
        return _load(path)
    if (cloud_dir / KEY_FILE).exists():
        raise click.ClickException(
            f"{data_dir} has a demo tenant but no {FILE} (an earlier demo made it, or the file was "
            "removed), so its owner's password is unknown. Nothing was changed. Remove that folder to "
            "start over, or give the demo another --data-dir")
    signins = SignIns(OPERATOR_EMAIL, secrets.token_urlsafe(12), OWNER_EMAIL, secrets.token_urlsafe(12))
    _save(path, signins)
    return signins


def ensure_accounts(data_dir: Path, signins: SignIns, env: dict[str, str]) -> str:
    """Make whichever account does not exist yet, and the tenant's API key; returns the key."""
    path = data_dir / FILE
    if "tenant" not in signins.made:
        run(["cloud", "admin", "create-tenant", TENANT_NAME, "--slug", signins.tenant, "--owner-email",
             signins.owner_email, "--password-stdin"], env, stdin=signins.owner_password + "\n")
        signins.made.append("tenant")
        _save(path, signins)
    if "operator" not in signins.made:
        run(["cloud", "admin", "create-operator", "--email", signins.operator_email, "--password-stdin"], env,
            stdin=signins.operator_password + "\n")
        signins.made.append("operator")
        _save(path, signins)
    keep = Path(env["VOXFLEET_DATA_DIR"]) / KEY_FILE
    if keep.exists():
        return keep.read_text().strip()
    key = run(["cloud", "admin", "create-api-key", "--tenant", signins.tenant, "--scope", "write",
               "--name", "demo"], env).strip()
    write_atomic(keep, key + "\n", mode=0o600)
    return key


def mark_shown(data_dir: Path, signins: SignIns) -> None:
    signins.shown = True
    _save(data_dir / FILE, signins)
