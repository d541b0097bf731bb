"""Report kinds and access-audit sections; domains register theirs, ``audit`` imports none.

A report kind turns validated parameters into a template and its context. The help desk
and inventory register their kinds from their own ``reports`` modules; the help desk also
tells the access-audit report which events are reads of patient identifiers (PHI).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement

from core.auth.permissions import Permission, has_permission
from core.forms import FieldError
from core.pdf import Listing


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

    @property
    def object_key(self) -> str | None:
        """The object filter as TYPE:ID."""
        return f"{self.object_type}:{self.object_id}" if self.object_type else None

    def params(self) -> dict[str, Any]:
        """JSON-ready parameters (stored with the job and in the audit event)."""
        return {
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
            "user": self.username, "object": self.object_key, "run": self.run_id,
        }


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
    validate: Callable[[ReportRequest], None] | None = None


REPORT_KINDS: dict[str, ReportKind] = {}


def register_report_kind(kind: ReportKind) -> None:
    """Make a report kind available (the last registration of a key wins)."""
    REPORT_KINDS[kind.key] = kind


def report_kinds() -> list[ReportKind]:
    """All kinds, in display order."""
    return sorted(REPORT_KINDS.values(), key=lambda k: (k.order, k.key))


def kinds_for(user: Any) -> list[ReportKind]:
    """The kinds ``user`` may generate."""
    return [k for k in report_kinds() if has_permission(user, k.permission)]


@dataclass(frozen=True)
class PhiRule:
    """Audit events that are reads of patient identifiers, as a predicate on ``audit_event``."""

    label: str
    predicate: Callable[[], ColumnElement[bool]]
    identifiers: tuple[str, ...] = ()          # keys of the event details worth printing


PHI_RULES: dict[str, PhiRule] = {}


def register_phi_rule(rule: PhiRule) -> None:
    """Tell the access-audit report which events read PHI."""
    PHI_RULES[rule.label] = rule


EXPORT_ACTIONS: dict[str, str] = {
    "audit.search": "Audit trail searched",
    "audit.export": "Audit trail exported",
    "report.generate": "Report generated",
    "report.download": "Report downloaded",
}


def register_export_actions(actions: dict[str, str]) -> None:
    """Add bulk-export actions (ticket lists, inventory CSV) to the searches-and-exports section."""
    EXPORT_ACTIONS.update(actions)
