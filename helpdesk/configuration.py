"""What administrators configure: categories and the service level of each priority."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from audit import record
from core.extensions import db
from helpdesk.models import Category, Priority, SlaPolicy
from helpdesk.services import TicketError

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "helpdesk.category_changed": "Help desk category added or changed",
    "helpdesk.sla_changed": "Help desk service levels changed",
}

CODE_RE = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
MAX_SLA_MINUTES = 365 * 24 * 60


def list_categories(active_only: bool = False) -> list[Category]:
    """Categories in display order."""
    query = select(Category).order_by(Category.sort_order, Category.label)
    if active_only:
        query = query.where(Category.is_active.is_(True))
    return list(db.session.execute(query).scalars())


def _check_label(label: str, description: str, exclude_id: int | None = None) -> tuple[str, str]:
    """Validate a category's label (unique, 1-120 characters) and description."""
    label = (label or "").strip()
    description = (description or "").strip()
    if not label or len(label) > 120:
        raise TicketError("Label: 1 to 120 characters.", "label")
    if len(description) > 300:
        raise TicketError("Description: at most 300 characters.", "description")
    clash = db.session.execute(
        select(Category.id).where(func.lower(Category.label) == label.lower())
    ).scalar_one_or_none()
    if clash is not None and clash != exclude_id:
        raise TicketError(f"Label: a category called {label!r} already exists.", "label")
    return label, description


def create_category(code: str, label: str, description: str, sort_order: int) -> Category:
    """Add a category; audited as helpdesk.category_changed."""
    code = (code or "").strip().lower()
    if not CODE_RE.match(code):
        raise TicketError("Code: 2-40 lower-case letters, digits or underscores, "
                          "starting with a letter.", "code")
    if db.session.execute(select(Category.id).where(Category.code == code)).first():
        raise TicketError(f"Code: {code!r} is already used.", "code")
    label, description = _check_label(label, description)
    category = Category(code=code, label=label, description=description, sort_order=sort_order)
    db.session.add(category)
    db.session.flush()
    record("helpdesk.category_changed", object_type="ticket_category", object_id=code,
           details={"created": True, "label": label, "active": True})
    return category


def update_category(category: Category, label: str, description: str, sort_order: int,
                    is_active: bool) -> dict[str, list[object]]:
    """Change a category's label, description, order or availability; returns the changes."""
    label, description = _check_label(label, description, category.id)
    changes: dict[str, list[object]] = {}
    for field, value in (("label", label), ("description", description),
                         ("sort_order", sort_order), ("is_active", is_active)):
        if getattr(category, field) != value:
            changes[field] = [getattr(category, field), value]
            setattr(category, field, value)
    if changes:
        record("helpdesk.category_changed", object_type="ticket_category",
               object_id=category.code, details={"changes": changes})
        db.session.flush()
    return changes


def list_sla_policies() -> list[SlaPolicy]:
    """The four priorities' policies, P1 first."""
    return list(db.session.execute(select(SlaPolicy).order_by(SlaPolicy.priority)).scalars())


def update_sla_policies(targets: dict[str, tuple[int, int]]) -> dict[str, list[object]]:
    """Set (first response, resolution) minutes per priority; applies to tickets filed after."""
    changes: dict[str, list[object]] = {}
    policies = {p.priority: p for p in list_sla_policies()}
    for priority, (response, resolution) in targets.items():
        if priority not in set(Priority):
            raise TicketError(f"Unknown priority {priority!r}.")
        if not 1 <= response <= MAX_SLA_MINUTES or not 1 <= resolution <= MAX_SLA_MINUTES:
            raise TicketError(f"{priority}: targets run from 1 minute to one year.", priority)
        if resolution < response:
            raise TicketError(f"{priority}: resolution cannot come before the first response.",
                              priority)
        policy = policies.get(Priority(priority))
        if policy is None:
            policy = SlaPolicy(priority=priority, response_minutes=response,
                               resolution_minutes=resolution)
            db.session.add(policy)
            changes[priority] = [None, [response, resolution]]
        elif (policy.response_minutes, policy.resolution_minutes) != (response, resolution):
            changes[priority] = [[policy.response_minutes, policy.resolution_minutes],
                                 [response, resolution]]
            policy.response_minutes, policy.resolution_minutes = response, resolution
    if changes:
        record("helpdesk.sla_changed", object_type="ticket_sla_policy", details={"changes": changes})
        db.session.flush()
    return changes
