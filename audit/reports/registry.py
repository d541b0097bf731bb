"""Report kinds and access-audit sections; domains register theirs, ``audit`` imports none.

A report kind turns validated parameters into a template and its context. The help desk
and inventory register their kinds from their own ``reports`` modules; the help desk also
tells the access-audit report which events are reads of patient identifiers (PHI).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from flask import Flask
from sqlalchemy import ColumnElement

from core.auth.permissions import Permission, has_permission
from core.forms import FieldError
from core.pdf import Listing
from core.registry import app_registry, current_registry


class ReportError(FieldError):
    """Bad report parameters; ``field`` names the form field (kind, date_from, user...)."""


@dataclass(frozen=True)
class ReportRequest:
    """Validated parameters of one report."""

    kind: str
    report_id: str
    start: date | None = None          # inclusive, local dates
    end: date | None = None
    username: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    run_id: int | None = None
    requested_by: str = "command line"
    appendix_limit: int = 10_000
    include_identifiers: bool | None = None   # None: the kind never prints patient identifiers

    @property
    def object_key(self) -> str | None:
        """The object filter as TYPE:ID."""
        return f"{self.object_type}:{self.object_id}" if self.object_type else None

    def params(self) -> dict[str, Any]:
        """JSON-ready parameters (stored with the job and in the audit event)."""
        found: dict[str, Any] = {
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
            "user": self.username, "object": self.object_key, "run": self.run_id,
        }
        if self.include_identifiers is not None:
            found["identifiers"] = self.include_identifiers
        return found


@dataclass
class ReportContent:
    """What a kind builds: the PDF template, its context, and the period line to print."""

    template: str
    context: dict[str, Any]
    period_text: str = ""
    filters: list[tuple[str, str]] = field(default_factory=list)
    listing: Listing | None = None     # a long appendix the template places (see core.pdf)


Progress = Callable[[int, str], None]


@dataclass(frozen=True)
class ReportKind:
    """A report that can be generated from the page and the CLI."""

    key: str
    title: str
    description: str
    permission: Permission
    build: Callable[[ReportRequest, Progress], ReportContent]
    order: int = 100
    needs_period: bool = True
    accepts_user: bool = False
    accepts_object: bool = False
    needs_run: bool = False
    accepts_identifiers: bool = False    # "Include patient identifiers" applies (off by default)
    validate: Callable[[ReportRequest], None] | None = None
    record_class: str = "report_files"   # the retention class its stored PDFs are kept under


@dataclass(frozen=True)
class PhiRule:
    """Audit events that are reads of patient identifiers, as a predicate on ``audit_event``."""

    label: str
    predicate: Callable[[], ColumnElement[bool]]
    identifiers: tuple[str, ...] = ()          # keys of the event details worth printing


@dataclass
class ReportRegistry:
    """An app's report kinds, the audit events that read PHI, and the bulk-export actions."""

    kinds: dict[str, ReportKind] = field(default_factory=dict)
    phi_rules: dict[str, PhiRule] = field(default_factory=dict)
    export_actions: dict[str, str] = field(default_factory=dict)


def _registry(app: Flask | None = None) -> ReportRegistry:
    """The app's (or the current app's) report registry."""
    if app is not None:
        return app_registry(app, "reports", ReportRegistry)
    return current_registry("reports", ReportRegistry)


def register_report_kind(app: Flask, kind: ReportKind) -> None:
    """Make a report kind available (the last registration of a key wins)."""
    _registry(app).kinds[kind.key] = kind


def report_kind(key: str) -> ReportKind | None:
    """The kind called ``key`` in the current app, if any."""
    return _registry().kinds.get(key)


def report_kinds() -> list[ReportKind]:
    """All kinds, in display order."""
    return sorted(_registry().kinds.values(), key=lambda k: (k.order, k.key))


def kinds_for(user: Any) -> list[ReportKind]:
    """The kinds ``user`` may generate."""
    return [k for k in report_kinds() if has_permission(user, k.permission)]


def register_phi_rule(app: Flask, rule: PhiRule) -> None:
    """Tell the access-audit report which events read PHI."""
    _registry(app).phi_rules[rule.label] = rule


def phi_rules() -> dict[str, PhiRule]:
    """The current app's PHI rules by label."""
    return _registry().phi_rules


def register_export_actions(app: Flask, actions: Mapping[str, str]) -> None:
    """Add searches and bulk exports (audit search, ticket lists, CSV) to the report's section."""
    _registry(app).export_actions.update(actions)


def export_actions() -> dict[str, str]:
    """The current app's export actions and their labels."""
    return _registry().export_actions
