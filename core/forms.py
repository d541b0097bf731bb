"""Form helpers every package shares."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any

from wtforms import SelectChoice


def select_choices(pairs: Iterable[tuple[Any, str]]) -> list[SelectChoice]:
    """A select field's options from (value, label) pairs."""
    return [SelectChoice(value, label) for value, label in pairs]


class FieldError(ValueError):
    """An operation was refused; ``field`` names the form field at fault (None: the form as a whole)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def show_error(form: Any, error: Exception, default: str) -> None:
    """Put a refusal's message on the field its ``field`` names, else on the field ``default``."""
    name = getattr(error, "field", None)
    field = form[name if name and name in form else default]
    field.errors = [*field.errors, str(error)]


LARGE_IMPORT_ROWS = 1000
"""A CSV import of more rows than this runs in the job worker, not in the web request."""


def is_large_import(raw: bytes) -> bool:
    """Whether an uploaded CSV file has more rows under its header than a web request imports itself."""
    return len(raw.splitlines()) - 1 > LARGE_IMPORT_ROWS


def carry_file(raw: bytes) -> str:
    """An uploaded file as text for a hidden field (a preview's next step) or a job's parameters."""
    return base64.b64encode(raw).decode("ascii")


def carried_file(text: str) -> bytes | None:
    """The file a hidden field carried back, or None when the form's copy was damaged."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None
