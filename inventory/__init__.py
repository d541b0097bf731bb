"""The inventory: workstations and DICOM nodes, their verification, CSV import and export."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the inventory pages, commands, sweep, actions, retention, reports and navigation."""
    from audit.atna.sources import register_silence_handler, register_source_directory
    from audit.reports.registry import register_export_actions, register_report_kind
    from audit.retention.described import register_described
    from core import audit_sink
    from core.auth.models import Role
    from core.auth.permissions import Permission
    from core.demo import register_data_check, register_seeder
    from core.jobs.registry import JobKind, register_job
    from core.navigation import NavItem, register_dashboard_panel, register_nav
    from core.notifications import NotificationKind, register_notification_kind
    from core.reference_data import register_reference_data
    from helpdesk.assets import register_asset_lookup
    from inventory import atna_sources, cli, csv_io, demo, jobs, reports, services, studies, views
    from inventory import import_views as _import_views  # noqa: F401 - routes on the inventory blueprint
    from inventory.studies import views as study_views  # noqa: F401 - routes on the inventory blueprint
    from inventory.ticket_assets import InventoryAssets
    from inventory.verification import retention, summary, tickets
    from inventory.verification import services as verification

    for module in (services, csv_io, verification, tickets):
        audit_sink.register_actions(app, module.AUDIT_ACTIONS)
    staff = frozenset({Role.TECHNICIAN, Role.ADMIN})
    register_notification_kind(app, NotificationKind("inventory.node_down", "A DICOM node is down", staff))
    register_notification_kind(app, NotificationKind("inventory.node_recovered", "A DICOM node recovered",
                                                     staff))
    register_asset_lookup(app, InventoryAssets())
    register_source_directory(app, atna_sources.InventorySources())
    register_silence_handler(app, atna_sources.SilenceTickets())
    register_reference_data(app, "ticket category for silent audit sources", atna_sources.ensure_category)
    register_described(app, retention.RETENTION_CLASS)
    register_report_kind(app, reports.REPORT_KIND)
    register_export_actions(app, reports.EXPORT_ACTIONS)
    register_job(app, JobKind(jobs.SWEEP_JOB, "C-ECHO sweep of every DICOM node", jobs.sweep_job,
                              max_attempts=1, priority=80, every=jobs.sweep_interval))
    register_job(app, JobKind(services.VERIFY_JOB, "C-ECHO of one DICOM node", jobs.verify_node_job,
                              max_attempts=1, priority=10))
    register_job(app, JobKind(jobs.IMPORT_JOB, "Import assets from CSV", jobs.import_job, max_attempts=1))
    register_nav(app, NavItem("Inventory", "inventory.asset_list", Permission.ASSET_READ, 20, "hdd-network"))
    register_dashboard_panel(app, summary.DASHBOARD_PANEL)
    register_seeder(app, 10, "inventory", demo.seed_assets)
    register_data_check(app, "assets", services.count_assets)
    app.register_blueprint(views.bp)
    app.cli.add_command(cli.inventory_group)
    studies.init_app(app)
