"""What the compliance pages plug into core: navigation, dashboard, banners, jobs, reference data."""

from __future__ import annotations

from typing import Any

from flask import url_for
from markupsafe import Markup
from sqlalchemy import func, select

from audit import demo, jobs
from audit.retention import engine as retention
from audit.trail import search_index
from audit.trail.chain_verification import broken_chain_banner, last_verification, unacknowledged_failure
from audit.training import services as training
from core.auth.permissions import Permission, has_permission
from core.auth.services import register_user_created_hook
from core.extensions import db
from core.navigation import (
    Banner,
    DashboardPanel,
    NavItem,
    register_banner_source,
    register_dashboard_panel,
    register_nav,
)
from core.reference_data import register_reference_data


def overdue_training_banner(user: Any) -> list[Banner]:
    """A strip on every page while the user has overdue or expired training."""
    if not has_permission(user, Permission.TRAINING_OWN):
        return []
    late = training.needs_action(user.id)
    if not late:
        return []
    titles = ", ".join(s.assignment.course.title for s in late)
    return [Banner("warning", Markup(
        '<strong>Training overdue:</strong> {titles}. <a class="alert-link" href="{url}">My training</a>'
    ).format(titles=titles, url=url_for("audit.my_training")))]


def compliance_panel() -> dict[str, Any]:
    """Figures for the compliance dashboard panel."""
    overdue = db.session.execute(
        select(func.count()).select_from(training.TrainingAssignment)).scalar_one()
    late_users = 0
    late = 0
    if overdue:
        _, rows = training.matrix(training.MatrixFilter())
        for _user, cells in rows:
            n = sum(1 for s in cells.values() if s.needs_action)
            late += n
            late_users += 1 if n else 0
    return {"overdue_training": late, "overdue_users": late_users,
            "verification": last_verification(), "broken": unacknowledged_failure(),
            "retention_run": retention.last_run()}


register_nav(NavItem("Audit trail", "audit.search_events", Permission.AUDIT_READ, 60, "journal-check"))
register_nav(NavItem("Retention", "audit.retention_home", Permission.RETENTION_MANAGE, 61, "archive"))
register_nav(NavItem("Training", "audit.training_matrix", Permission.TRAINING_MANAGE, 62, "mortarboard"))
register_nav(NavItem("My training", "audit.my_training", Permission.TRAINING_OWN, 63, "person-check"))
register_dashboard_panel(DashboardPanel("audit/_panel_compliance.html", Permission.AUDIT_READ, 60,
                                        compliance_panel))
register_banner_source(broken_chain_banner)
register_banner_source(overdue_training_banner)
register_reference_data("training courses", training.seed_courses)
register_reference_data("retention policies", retention.ensure_default_policies)
register_reference_data("audit search index", search_index.ensure_search_index)
register_user_created_hook(training.assign_new_user)
jobs.register_jobs()
demo.register()
