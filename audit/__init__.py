"""The audit trail, retention, training and compliance reports."""

from __future__ import annotations

from flask import Flask

from audit.trail.chain import record

__all__ = ["init_app", "record"]


def init_app(app: Flask) -> None:
    """Install the audit writer, then the trail, retention, training and reports, and the audit pages."""
    from audit import atna, reports, retention, trail, training, views
    from audit.retention import views as retention_views  # noqa: F401 - routes on the audit blueprint
    from audit.trail import views as trail_views  # noqa: F401 - routes on the audit blueprint
    from audit.training import views as training_views  # noqa: F401 - routes on the audit blueprint
    from core import audit_sink
    from core.auth.permissions import Permission
    from core.navigation import DashboardPanel, register_dashboard_panel

    audit_sink.install(app, record)
    trail.init_app(app)
    retention.init_app(app)
    training.init_app(app)
    reports.init_app(app)
    atna.init_app(app)
    register_dashboard_panel(app, DashboardPanel("audit/_panel_compliance.html", Permission.AUDIT_READ, 60,
                                                 views.compliance_panel))
    app.register_blueprint(views.bp)
