"""The PACS's own audit messages (DICOM PS3.15 A.5, IHE ATNA) received over syslog, stored and searched."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the access log's actions, record class, jobs, reports, pages, commands and helpers."""
    from audit.atna import (
        cli,
        jobs,
        models,
        overview,
        process,
        quarantine,
        reports,
        retention,
        search,
        store,
        watchlist,
    )
    from audit.atna import views as atna_views  # noqa: F401 - routes on the audit blueprint
    from audit.reports.registry import register_export_actions, register_report_kind
    from audit.retention.registry import register_record_class, register_scope_matcher
    from core import audit_sink
    from core.auth.permissions import Permission
    from core.database import listen_once
    from core.jobs.registry import JobKind, register_job
    from core.navigation import NavItem, register_nav

    for module in (store, process, jobs, search, watchlist, quarantine, retention):
        audit_sink.register_actions(app, module.AUDIT_ACTIONS)
    register_export_actions(app, search.AUDIT_ACTIONS)
    register_record_class(app, retention.RETENTION_CLASS)
    register_scope_matcher(app, retention.KEY, retention.matches)
    register_report_kind(app, reports.PATIENT_REPORT)
    register_report_kind(app, reports.AUDIT_REPORT)
    register_nav(app, NavItem("PACS access", "audit.pacs_access", Permission.AUDIT_READ, 61, "eye",
                              "Compliance"))
    app.jinja_env.globals["atna_asset_summary"] = overview.asset_audit_summary
    listen_once(models.AtnaMessageRef.__table__, "after_create", models.install_after_create)
    register_job(app, JobKind(jobs.SOURCES_JOB, "Look for silent PACS audit sources", jobs.sources_job,
                              max_attempts=1, every=jobs.sources_interval))
    register_job(app, JobKind(jobs.MAINTENANCE_JOB, "PACS access log upkeep (orphaned batches, partitions)",
                              jobs.maintenance_job, max_attempts=2, every=lambda _app: 3600.0))
    app.cli.add_command(cli.atna_group)
