"""Reading an object's history: the change log the audit hook writes for tickets and assets."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from sqlalchemy import delete, select
from sqlalchemy.orm import selectinload

from audit.trail.models import ObjectChange
from core.auditing import AuditSpec, Tracked, remember_full_names, user_words
from core.database import rowcount
from core.extensions import Model, db

EMPTY = "(none)"


@dataclass(frozen=True)
class ChangeWords:
    """One history line as people read it: the field's name, the old and the new value in words."""

    field: str
    old: str
    new: str


@cache
def tracked_fields(object_type: str) -> dict[str, Tracked]:
    """The tracked fields of the models whose history is filed under ``object_type``, by history key.

    Read once per object type: every history line asks, and the models do not change while running.
    """
    found: dict[str, Tracked] = {}
    for mapper in Model.registry.mappers:
        spec = getattr(mapper.class_, "__audit__", None)
        if isinstance(spec, AuditSpec) and spec.history is not None and spec.object_type == object_type:
            found.update({t.key: t for t in spec.tracked})
    return found


def change_words(change: ObjectChange) -> ChangeWords:
    """A history line in people's words: "Status: In service → Disposed", never codes or Python values."""
    tracked = tracked_fields(change.object_type).get(change.field)
    label = (tracked.label if tracked is not None and tracked.label
             else change.field.replace("_", " ").capitalize())

    def words(value: str | None) -> str:
        if value is None or value == "":
            return EMPTY
        if tracked is not None and tracked.words is not None:
            return tracked.words(value)
        return value

    return ChangeWords(label, words(change.old_value), words(change.new_value))


def history_of(object_type: str, object_id: int, newest_first: bool = False) -> list[ObjectChange]:
    """Every change of one object, oldest first (or newest first), with who made it."""
    order = (ObjectChange.changed_at.desc(), ObjectChange.id.desc()) if newest_first \
        else (ObjectChange.changed_at, ObjectChange.id)
    changes = list(db.session.execute(
        select(ObjectChange).options(selectinload(ObjectChange.user))
        .where(ObjectChange.object_type == object_type, ObjectChange.object_id == object_id)
        .order_by(*order)).scalars())
    by_user = {key for key, t in tracked_fields(object_type).items() if t.words is user_words}
    remember_full_names(value for c in changes if c.field in by_user for value in (c.old_value, c.new_value)
                        if value)
    return changes


def forget_history(object_type: str, object_ids: Iterable[int]) -> int:
    """Delete the history of destroyed objects (a retention purge, in its transaction)."""
    ids = list(object_ids)
    if not ids:
        return 0
    return rowcount(db.session.execute(delete(ObjectChange).where(
        ObjectChange.object_type == object_type, ObjectChange.object_id.in_(ids))))
