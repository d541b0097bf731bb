"""Imaging studies on PACS archives: listing by C-FIND, retention rules, deletion and IOCM notes."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the study retention actions, jobs, commands, rules seeding, pages and navigation."""
    from audit.reports.registry import register_report_kind
    from core import audit_sink
    from core.auth.permissions import Permission
    from core.jobs.registry import JobKind, register_job
    from core.navigation import NavItem, register_nav
    from core.reference_data import register_reference_data
    from inventory.studies import cli, execution, jobs, reports, review, services, views

    for module in (services, review, execution, cli, views):
        audit_sink.register_actions(app, module.AUDIT_ACTIONS)
    register_reference_data(app, "imaging retention rules", services.ensure_default_rules)
    register_job(app, JobKind(review.REVIEW_JOB, "List an archive's studies past retention", jobs.review_job,
                              max_attempts=1, concurrency=2))
    register_job(app, JobKind(execution.EXECUTE_JOB, "Delete the studies of an approved review",
                              jobs.execute_job, max_attempts=1, concurrency=2))
    register_report_kind(app, reports.REPORT_KIND)
    register_nav(app, NavItem("Study retention", "inventory.study_reviews", Permission.RETENTION_MANAGE, 62,
                              "images", "Compliance"))
    app.cli.add_command(cli.studies_group)
