"""The one scoped "get or not found": a row of the caller's tenant by id, else 404 ``<what>_not_found``.

Another tenant's id, a malformed id and a missing row all get the same answer, so an id reveals
nothing about rows the caller may not see.
"""

from __future__ import annotations

import re
import uuid
from typing import TypeVar

from cloud.db.base import Base
from cloud.domain.errors import not_found
from cloud.scoping import TenantScope

M = TypeVar("M", bound=Base)


def noun(model: type) -> str:
    """``VoiceSession`` -> ``voice_session``: the default ``what`` of a model."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", model.__name__).lower()


def get_owned(scope: TenantScope, model: type[M], id_: uuid.UUID | str | None, what: str | None = None) -> M:
    """The tenant's row, or DomainError 404 ``<what>_not_found`` (``what`` defaults to the model's noun)."""
    row = scope.get(model, id_)
    if row is None:
        raise not_found(what or noun(model))
    return row
