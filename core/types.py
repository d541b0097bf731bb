"""Column types every package shares: enums stored by value, read back as enum members."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Generic, TypeVar

from sqlalchemy import String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

E = TypeVar("E", bound=StrEnum)


class EnumText(TypeDecorator[E], Generic[E]):
    """A ``StrEnum`` stored as its value in a VARCHAR; unknown stored values are an error, never a guess.

    Members are strings, so ``row.status == "open"`` and ``row.status == TicketStatus.OPEN`` both
    hold; code compares members, never ``.value``.
    """

    impl = String
    cache_ok = True

    def __init__(self, enum: type[E], length: int | None = None) -> None:
        self.enum = enum
        super().__init__(length or max(len(m.value) for m in enum))

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        """Store the member's value; refuse a string that is not one of the members."""
        if value is None:
            return None
        return self.enum(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        """Read a stored value back as its member."""
        return None if value is None else self.enum(value)
