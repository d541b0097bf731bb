"""What the help desk plugs into the shared registries: navigation, dashboard, jobs, demo."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from core.auth.permissions import Permission
from core.demo import register_data_check, register_seeder
from core.extensions import db
from core.navigation import DashboardPanel, NavItem, register_dashboard_panel, register_nav
from core.scheduler import register_job
from helpdesk import reference, retention  # noqa: F401 - register reference data and retention
from helpdesk.demo import seed_tickets
from helpdesk.jobs import close_resolved_tickets
from helpdesk.models import Ticket
from helpdesk.queries import dashboard_figures


def _count_tickets() -> int:
    """How many tickets exist."""
    return db.session.execute(select(func.count()).select_from(Ticket)).scalar_one()


def _panel() -> dict[str, Any]:
    """Figures for the help desk panel."""
    return dashboard_figures()


register_nav(NavItem("New ticket", "helpdesk.ticket_new", Permission.TICKET_FILE, 10, "plus-circle"))
register_nav(NavItem("My tickets", "helpdesk.my_tickets", Permission.TICKET_FILE, 11, "person-lines-fill"))
register_nav(NavItem("Queue", "helpdesk.queue", Permission.TICKET_READ_ALL, 12, "inbox"))
register_nav(NavItem("Help desk settings", "helpdesk.categories", Permission.HELPDESK_CONFIGURE, 85,
                     "sliders"))
register_dashboard_panel(DashboardPanel("helpdesk/_dashboard_panel.html", Permission.TICKET_WORK,
                                        10, _panel))
register_job("helpdesk.autoclose", lambda app: 3600, close_resolved_tickets)
register_seeder(20, "help desk tickets", seed_tickets)
register_data_check("tickets", _count_tickets)
