"""Input checked the same way for every caller: strict models, and their errors as one DomainError.

A refusal names the first bad field in its message (``"args.text: String should have at least 1
character"``) and lists every problem in ``details``, so an API client can point at each field and a
person reads one sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from cloud.domain.errors import DomainError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Unknown fields are refused, not ignored, so a typo ("nmae") is an error the caller sees instead
    of a silent no-op; text is stripped of surrounding white space."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def problems(exc: ValidationError, prefix: Sequence[str] = ()) -> list[dict[str, str]]:
    """Each error as ``{"field": "a.b", "message": ...}``; ``prefix`` names where the value sat."""
    found = []
    for err in exc.errors():
        where = ".".join([*prefix, *(str(p) for p in err["loc"])]) or "body"
        message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        found.append({"field": where, "message": message})
    return found


def invalid(exc: ValidationError, code: str = "invalid_request", prefix: Sequence[str] = ()) -> DomainError:
    """400 ``code`` naming the first bad field, every problem in ``details``."""
    found = problems(exc, prefix)
    first = found[0]
    return DomainError(400, code, f"{first['field']}: {first['message']}", details=found)


def validated(model: type[M], data: Any, prefix: Sequence[str] = ()) -> M:
    """``data`` as ``model``, or DomainError 400 ``invalid_request`` naming the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc, prefix=prefix) from None
