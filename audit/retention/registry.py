"""Record classes that retention policies can act on; each domain registers its own.

``audit`` never imports a domain package: a domain describes its purgeable records here
(how to find candidates older than a cutoff, how to tell which are under a legal hold,
how to purge a batch), and the retention engine in ``audit`` drives them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from flask import Flask
from sqlalchemy import Select

from core.registry import app_registry, current_registry


@dataclass(frozen=True)
class HoldScope:
    """What a legal hold covers, in the terms domains understand."""

    record_class: str | None = None       # a whole class within a date range
    object_type: str | None = None         # "ticket", "asset" or "user"
    object_key: str | None = None          # ticket number, asset tag or username
    start: datetime | None = None
    end: datetime | None = None


RecordId = TypeVar("RecordId", int, str)


@dataclass(frozen=True)
class RecordClass(Generic[RecordId]):
    """A kind of record with a retention policy, its records identified by ``RecordId``.

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
    held: Callable[[Sequence[RecordId], Sequence[HoldScope]], set[RecordId]]
    purge: Callable[[Sequence[RecordId]], int]
    object_type: str = ""                  # what audit events call the purged records ("ticket")


ScopeMatcher = Callable[[HoldScope], bool]


@dataclass
class RetentionRegistry:
    """An app's record classes, and the classes whose hold matching is one query."""

    classes: dict[str, RecordClass] = field(default_factory=dict)
    scope_matchers: dict[str, ScopeMatcher] = field(default_factory=dict)


def _registry(app: Flask | None = None) -> RetentionRegistry:
    """The app's (or the current app's) retention registry."""
    if app is not None:
        return app_registry(app, "retention", RetentionRegistry)
    return current_registry("retention", RetentionRegistry)


def register_record_class(app: Flask, record_class: RecordClass) -> None:
    """Make a record class known to the retention engine."""
    _registry(app).classes[record_class.key] = record_class


def record_classes(app: Flask | None = None) -> dict[str, RecordClass]:
    """The record classes of ``app`` (default: the current app) by key."""
    return _registry(app).classes


def register_scope_matcher(app: Flask, key: str, matcher: ScopeMatcher) -> None:
    """Answer "does this scope cover any of class ``key``?" with one query instead of a scan."""
    _registry(app).scope_matchers[key] = matcher


def scope_matcher(key: str) -> ScopeMatcher | None:
    """The one-query matcher of class ``key``, if it has one."""
    return _registry().scope_matchers.get(key)
