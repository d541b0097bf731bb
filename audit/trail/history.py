"""Reading an object's history: the change log the audit hook writes for tickets and assets."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import selectinload

from audit.trail.models import ObjectChange
from core.database import rowcount
from core.extensions import db


def history_of(object_type: str, object_id: int, newest_first: bool = False) -> list[ObjectChange]:
    """Every change of one object, oldest first (or newest first), with who made it."""
    order = (ObjectChange.changed_at.desc(), ObjectChange.id.desc()) if newest_first \
        else (ObjectChange.changed_at, ObjectChange.id)
    return list(db.session.execute(
        select(ObjectChange).options(selectinload(ObjectChange.user))
        .where(ObjectChange.object_type == object_type, ObjectChange.object_id == object_id)
        .order_by(*order)).scalars())


def forget_history(object_type: str, object_ids: Iterable[int]) -> int:
    """Delete the history of destroyed objects (a retention purge, in its transaction)."""
    ids = list(object_ids)
    if not ids:
        return 0
    return rowcount(db.session.execute(delete(ObjectChange).where(
        ObjectChange.object_type == object_type, ObjectChange.object_id.in_(ids))))
