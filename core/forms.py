"""Form helpers every package shares."""

from __future__ import annotations

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
