"""Outgoing mail over SMTP (smtplib), for invitations and password reset links.

Mail is optional: without ``smtp_host`` nothing is sent and the callers show the link to the
administrator who made it instead, so a laptop install works with no mail server. Message bodies
hold sign-in links, so neither they nor the SMTP password are ever logged; a failure is logged by
host and reason only.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

from cloud.config import CloudConfig

log = logging.getLogger(__name__)
TIMEOUT_S = 15


class MailError(RuntimeError):
    """The message could not be handed to the SMTP server."""


def mail_configured(config: CloudConfig) -> bool:
    return bool(config.smtp_host)


def send_mail(config: CloudConfig, to: str, subject: str, body: str) -> None:
    """Hand one plain-text message to the configured SMTP server, or raise MailError."""
    if not config.smtp_host:
        raise MailError("no SMTP server is configured")
    message = EmailMessage()
    message["From"] = config.smtp_from
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="voxfleet")
    message.set_content(body)
    try:
        if config.smtp_security == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(config.smtp_host, config.smtp_port, timeout=TIMEOUT_S,
                                                    context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=TIMEOUT_S)
        with client:
            if config.smtp_security == "starttls":
                client.starttls(context=ssl.create_default_context())
            if config.smtp_username and config.smtp_password:
                client.login(config.smtp_username, config.smtp_password.get_secret_value())
            client.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        # The reason only: the exception never holds the body, and the password is not in it.
        reason = type(exc).__name__ + (f" {exc.smtp_code}" if isinstance(exc, smtplib.SMTPResponseException)
                                       else "")
        log.warning("mail to %s via %s:%s failed: %s", to.split("@")[-1], config.smtp_host,
                    config.smtp_port, reason)
        raise MailError(f"the mail server {config.smtp_host}:{config.smtp_port} refused or could not "
                        f"be reached ({reason})") from None
