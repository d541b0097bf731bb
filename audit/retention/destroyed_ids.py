"""The ids a retention run destroyed: stored compactly per batch, listed on its certificate, hashed.

A class digest is the SHA-256 (hex) of the destroyed records' ids, each written as text and
followed by a newline, in the order the run walked them (ascending id). Consecutive integer
ids are kept and listed as ranges ("120", an en dash, "135" is every id from 120 to 135);
other ids (report ids) one by one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import select

from audit.retention.models import RetentionRunIds
from core.extensions import db

RANGE = "\u2013"  # an en dash: no id contains one


def compact(ids: Sequence[Any]) -> list[Any]:
    """Ids in walk order as ``[first, last]`` runs of consecutive integers, other ids as text."""
    items: list[Any] = []
    for value in ids:
        if isinstance(value, int) and not isinstance(value, bool):
            last = items[-1] if items else None
            if isinstance(last, list) and value == last[1] + 1:
                last[1] = value
            else:
                items.append([value, value])
        else:
            items.append(str(value))
    return items


def expand(items: Iterable[Any]) -> Iterator[str]:
    """Every id of compact ``items``, as the digest writes it."""
    for item in items:
        if isinstance(item, list):
            yield from (str(n) for n in range(item[0], item[1] + 1))
        else:
            yield str(item)


def digest_of(ids: Iterable[str]) -> str:
    """SHA-256 (hex) over the ids, each followed by a newline, in the given order."""
    hasher = hashlib.sha256()
    for value in ids:
        hasher.update(f"{value}\n".encode())
    return hasher.hexdigest()


def item_text(item: Any) -> str:
    """One compact item as printed: "7", "120-135" or a text id."""
    if isinstance(item, list):
        return str(item[0]) if item[0] == item[1] else f"{item[0]}{RANGE}{item[1]}"
    return str(item)


def record_batch(run_id: int, record_class: str, ids: Sequence[Any]) -> None:
    """Keep the ids a purge batch destroyed (flushes with the batch)."""
    db.session.add(RetentionRunIds(run_id=run_id, record_class=record_class, ids=compact(ids)))


def destroyed_items(run_id: int) -> dict[str, list[Any]]:
    """Per record class, the compact ids the run destroyed, in walk order (empty for older runs)."""
    found: dict[str, list[Any]] = {}
    for record_class, items in db.session.execute(
            select(RetentionRunIds.record_class, RetentionRunIds.ids)
            .where(RetentionRunIds.run_id == run_id).order_by(RetentionRunIds.id)):
        bucket = found.setdefault(record_class, [])
        for item in items:
            previous = bucket[-1] if bucket else None
            if isinstance(item, list) and isinstance(previous, list) and item[0] == previous[1] + 1:
                previous[1] = item[1]       # a range that runs on across two batches
            else:
                bucket.append(list(item) if isinstance(item, list) else item)
    return found


def lines(items: Sequence[Any], width: int) -> list[str]:
    """The printed items, comma-separated, packed into lines of at most ``width`` characters."""
    found: list[str] = []
    current = ""
    for index, item in enumerate(items):
        text = item_text(item) + ("," if index < len(items) - 1 else "")
        if current and len(current) + 1 + len(text) > width:
            found.append(current)
            current = text
        else:
            current = f"{current} {text}" if current else text
    if current:
        found.append(current)
    return found
