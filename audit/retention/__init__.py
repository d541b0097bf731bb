"""Retention: record classes, policies, legal holds and retention runs."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the retention actions, job, commands, navigation and default policies."""
    from audit.retention import cli, engine, holds, jobs
    from core import audit_sink
    from core.auth.models import Role
    from core.auth.permissions import Permission
    from core.jobs.registry import JobKind, register_job
    from core.navigation import NavItem, register_nav
    from core.notifications import NotificationKind, register_notification_kind
    from core.reference_data import register_reference_data

    for module in (engine, holds):
        audit_sink.register_actions(app, module.AUDIT_ACTIONS)
    register_reference_data(app, "retention policies", engine.ensure_default_policies)
    register_job(app, JobKind(jobs.RETENTION_JOB, "Retention run", jobs.retention_job, max_attempts=1,
                              every=lambda _app: 24 * 3600.0))
    officers = frozenset({Role.COMPLIANCE, Role.ADMIN})
    register_notification_kind(app, NotificationKind("audit.legal_hold",
                                                     "A legal hold was placed or released", officers))
    register_notification_kind(app, NotificationKind("audit.retention_run", "A retention run finished",
                                                     officers))
    register_nav(app, NavItem("Retention", "audit.retention_home", Permission.RETENTION_MANAGE, 61,
                              "archive", "Compliance"))
    app.cli.add_command(cli.retention_group)
