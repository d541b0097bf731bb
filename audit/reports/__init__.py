"""PDF compliance reports."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the report pages, commands, the audit package's own kinds and stored reports' retention."""
    from audit.reports import access_audit, cli, retention, services, stored_files, training, views
    from audit.reports.registry import register_export_actions, register_report_kind
    from audit.retention.described import register_described
    from core import audit_sink
    from core.auth.models import Role
    from core.auth.permissions import Permission
    from core.jobs.registry import JobKind, register_job
    from core.navigation import NavItem, register_nav
    from core.notifications import NotificationKind, register_notification_kind

    audit_sink.register_actions(app, services.AUDIT_ACTIONS)
    register_export_actions(app, services.AUDIT_ACTIONS)
    for kind in (access_audit.REPORT_KIND, retention.REPORT_KIND, training.REPORT_KIND):
        register_report_kind(app, kind)
    register_job(app, JobKind(services.BUILD_JOB, "Build a report", services.build_job,
                              max_attempts=services.MAX_BUILD_ATTEMPTS, priority=50, concurrency=2))
    for described in (stored_files.RETENTION_CLASS, stored_files.CERTIFICATE_RETENTION_CLASS):
        register_described(app, described)
    register_notification_kind(app, NotificationKind(
        "audit.report_ready", "A report you asked for is ready",
        roles=frozenset({Role.TECHNICIAN, Role.COMPLIANCE, Role.ADMIN})))
    register_nav(app, NavItem("Reports", "reports.index", Permission.REPORT_OPERATIONS, 70,
                              "file-earmark-pdf"))
    app.register_blueprint(views.bp)
    cli.register(app)
