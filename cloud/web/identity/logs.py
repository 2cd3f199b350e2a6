"""Keep sign-in secrets out of the server's request log.

Invitation and reset links carry their token in the path, and the Keycloak callback carries the
authorization code and state in the query: Werkzeug's request log would otherwise write them out on
every visit, and anyone who reads the log could use an unused link. This filter, installed on the
``werkzeug`` logger when the portals are registered, masks them before any handler sees the line.
"""

from __future__ import annotations

import logging
import re

SECRET_PATHS = re.compile(r"(/(?:invite|password/reset)/)[^\s?\"/]+")
SECRET_PARAMS = re.compile(r"([?&](?:code|state|session_state|token|code_verifier|nonce)=)[^&\s\"]+")


def redact(text: str) -> str:
    return SECRET_PARAMS.sub(r"\1***", SECRET_PATHS.sub(r"\1***", text))


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


_FILTER = RedactSecrets()


def install() -> None:
    """Idempotent: one filter on the request log, however many apps a process builds."""
    logger = logging.getLogger("werkzeug")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
