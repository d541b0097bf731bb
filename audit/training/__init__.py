"""Workforce training: courses, assignments and completions."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register training actions, the completions' record class, jobs, pages, banner and demo data."""
    from audit.retention.described import register_described
    from audit.training import bulk, cli, completions, demo, jobs, reminders, services, views
    from core import audit_sink
    from core.auth.permissions import Permission
    from core.auth.services import register_user_created_hook
    from core.demo import register_data_check, register_seeder
    from core.jobs.registry import JobKind, register_job
    from core.navigation import (
        DashboardPanel,
        NavItem,
        register_banner_source,
        register_dashboard_panel,
        register_nav,
    )
    from core.notifications import register_notification_kind
    from core.reference_data import register_reference_data

    for module in (services, completions, bulk):
        audit_sink.register_actions(app, module.AUDIT_ACTIONS)
    register_described(app, completions.RETENTION_CLASS)
    register_reference_data(app, "training courses", services.seed_courses)
    register_user_created_hook(app, services.assign_new_user)
    register_job(app, JobKind("audit.training_sync", "Assign training to new people", jobs.training_sync_job,
                              every=lambda _app: 24 * 3600.0))
    register_job(app, JobKind(jobs.IMPORT_JOB, "Import past training completions from CSV",
                              jobs.completion_import_job, max_attempts=1))
    register_job(app, JobKind("audit.training_reminders", "Remind people of training due and overdue",
                              reminders.reminders_job, every=lambda _app: 24 * 3600.0))
    for kind in reminders.NOTIFICATION_KINDS:
        register_notification_kind(app, kind)
    register_nav(app, NavItem("Training", "audit.training_matrix", Permission.TRAINING_MANAGE, 62,
                              "mortarboard", "Compliance"))
    register_nav(app, NavItem("My training", "audit.my_training", Permission.TRAINING_OWN, 63,
                              "person-check"))
    register_banner_source(app, views.overdue_training_banner)
    # On the home page after the person's tickets: what training is due.
    register_dashboard_panel(app, DashboardPanel("audit/_training_due_panel.html", Permission.TRAINING_OWN, 3,
                                                 views.training_due_panel))
    register_seeder(app, 80, "compliance", demo.seed_compliance)
    register_data_check(app, "training completions", demo.training_records)
    app.cli.add_command(cli.training_group)
