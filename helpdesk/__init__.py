"""The help desk: tickets, replies, attachments, SLAs and the queue."""

from __future__ import annotations

from typing import Any

from flask import Flask


def _count_tickets() -> int:
    """How many tickets exist (the demo refuses to run over real ones)."""
    from sqlalchemy import func, select

    from core.extensions import db
    from helpdesk.models import Ticket

    return db.session.execute(select(func.count()).select_from(Ticket)).scalar_one()


def _panel() -> dict[str, Any]:
    """Figures for the help desk panel."""
    from helpdesk.queries import dashboard_figures

    return dashboard_figures()


def _needs_action() -> dict[str, Any]:
    """The signed-in person's tickets that wait on their answer, oldest first."""
    from flask_login import current_user
    from sqlalchemy import select

    from core.extensions import db
    from helpdesk.models import Ticket, TicketStatus

    tickets = list(db.session.execute(select(Ticket).where(
        Ticket.requester_id == current_user.id, Ticket.status == TicketStatus.WAITING)
        .order_by(Ticket.waiting_since, Ticket.id).limit(20)).scalars())
    return {"tickets": tickets, "is_requester": current_user.role == "requester"}


def _my_open() -> dict[str, Any]:
    """The signed-in person's own open tickets (not waiting on them), due first, with the SLA."""
    from flask_login import current_user
    from sqlalchemy import select

    from core.extensions import db
    from core.timeutil import utcnow
    from helpdesk.models import QUEUE_ORDER, Ticket, TicketStatus
    from helpdesk.sla import describe_remaining, sla_state

    tickets = list(db.session.execute(select(Ticket).where(
        Ticket.requester_id == current_user.id,
        Ticket.status.in_((TicketStatus.NEW, TicketStatus.OPEN)))
        .order_by(*QUEUE_ORDER, Ticket.id).limit(20)).scalars())
    now = utcnow()
    return {"tickets": [(t, sla_state(t, now)) for t in tickets], "describe_remaining": describe_remaining,
            "is_requester": current_user.role == "requester"}


def init_app(app: Flask) -> None:
    """Register the help desk pages, commands, jobs, actions, retention, reports and navigation."""
    from sqlalchemy.orm import Session

    from audit.reports.registry import register_export_actions, register_phi_rule, register_report_kind
    from audit.retention.described import register_described
    from core import audit_sink
    from core.auth.permissions import Permission
    from core.database import listen_once
    from core.demo import register_data_check, register_seeder
    from core.jobs.registry import JobKind, register_job
    from core.navigation import DashboardPanel, NavItem, register_dashboard_panel, register_nav
    from core.notifications import register_notification_kind
    from core.reference_data import register_reference_data
    from helpdesk import (
        access,
        admin_views,  # noqa: F401 - the settings pages' routes on the help desk blueprint
        cli,
        configuration,
        demo,
        jobs,
        links,
        mail_in,
        mail_views,  # noqa: F401 - the held-mail pages' routes on the help desk blueprint
        notifications,
        queue,
        reference,
        reports,
        retention,
        services,
        views,
        work_views,  # noqa: F401 - the queue's and ticket page's working routes on the help desk blueprint
    )

    for module in (services, access, configuration, mail_in, queue, links):
        audit_sink.register_actions(app, module.AUDIT_ACTIONS)
    for kind in notifications.NOTIFICATION_KINDS:
        register_notification_kind(app, kind)
    listen_once(Session, "after_commit", notifications.send_after_commit)
    listen_once(Session, "after_rollback", notifications.drop_after_rollback)
    register_described(app, retention.RETENTION_CLASS)
    register_report_kind(app, reports.REPORT_KIND)
    register_phi_rule(app, reports.PHI_RULE)
    register_export_actions(app, reports.EXPORT_ACTIONS)
    register_reference_data(app, "helpdesk", reference.load_helpdesk_reference_data)
    register_job(app, JobKind("helpdesk.autoclose", "Close tickets resolved long ago", jobs.autoclose_job,
                              every=lambda _app: 3600.0))
    register_job(app, JobKind("helpdesk.sla_alerts", "Warn about tickets due soon and missed service levels",
                              notifications.sla_alerts_job, max_attempts=1, every=lambda _app: 60.0))
    reading = app.config["PACSDESK_MAIL"].imap is not None
    register_job(app, JobKind(mail_in.FETCH_JOB, "Read the help desk's mailbox", mail_in.fetch_job,
                              max_attempts=3, retry_delay=60.0,
                              every=mail_in.poll_interval if reading else None))
    register_nav(app, NavItem("New ticket", "helpdesk.ticket_new", Permission.TICKET_FILE, 10, "plus-circle"))
    register_nav(app, NavItem("My tickets", "helpdesk.my_tickets", Permission.TICKET_FILE, 11,
                              "person-lines-fill"))
    register_nav(app, NavItem("Queue", "helpdesk.queue", Permission.TICKET_READ_ALL, 12, "inbox"))
    register_nav(app, NavItem("Help desk settings", "helpdesk.categories", Permission.HELPDESK_CONFIGURE, 85,
                              "sliders", "Administration"))
    # First on everyone's home page: the tickets waiting on the person's own answer.
    register_dashboard_panel(app, DashboardPanel("notifications/_needs_action.html", Permission.TICKET_FILE,
                                                 0, _needs_action))
    # Then the person's own open tickets with their service level.
    register_dashboard_panel(app, DashboardPanel("helpdesk/_my_open_panel.html", Permission.TICKET_FILE,
                                                 2, _my_open))
    register_dashboard_panel(app, DashboardPanel("helpdesk/_dashboard_panel.html", Permission.TICKET_WORK,
                                                 10, _panel))
    register_seeder(app, 20, "help desk tickets", demo.seed_tickets)
    register_data_check(app, "tickets", _count_tickets)
    app.register_blueprint(views.bp)
    app.cli.add_command(cli.helpdesk_group)
