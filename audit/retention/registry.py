"""Record classes that retention policies can act on; each domain registers its own.

``audit`` never imports a domain package: a domain describes its purgeable records here
(how to find candidates older than a cutoff, how to tell which are under a legal hold,
how to purge a batch), and the retention engine in ``audit`` drives them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select


@dataclass(frozen=True)
class HoldScope:
    """What a legal hold covers, in the terms domains understand."""

    record_class: str | None = None       # a whole class within a date range
    object_type: str | None = None         # "ticket", "asset" or "user"
    object_key: str | None = None          # ticket number, asset tag or username
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class RecordClass:
    """A kind of record with a retention policy.

    ``candidates(cutoff, anchor)`` returns a select of (id, anchor_time) for records whose
    anchor is before ``cutoff``; ``held(ids, holds)`` returns the ids among ``ids`` that a
    hold covers; ``purge(ids)`` deletes those records (and what belongs to them) and
    returns how many records went. Services only flush; the engine commits per batch.
    """

    key: str
    label: str
    anchors: Sequence[str]                 # e.g. ("closed", "created")
    default_years: int
    floor_years: int                       # minimum the policy can be set to
    floor_rule: str                        # the rule the floor comes from, for messages
    candidates: Callable[[datetime, str], Select]
    held: Callable[[Sequence[int], Sequence[HoldScope]], set[int]]
    purge: Callable[[Sequence[int]], int]


RECORD_CLASSES: dict[str, RecordClass] = {}


def register_record_class(record_class: RecordClass) -> None:
    """Make a record class known to the retention engine."""
    RECORD_CLASSES[record_class.key] = record_class
