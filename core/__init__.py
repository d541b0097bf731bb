"""Shared infrastructure of PACS Desk: extensions, configuration, accounts, time, CLI."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Bind the extensions, security, error pages, the core and account pages and commands."""
    import os

    from core import (
        assets,
        audit_sink,
        backup,
        cli,
        database,
        errors,
        health,
        request_guard,
        security,
        templating,
    )
    from core.auth import admin_views, directory_accounts, first_run, loader, login, second_factor
    from core.auth import services as auth_services
    from core.auth import views as auth_views
    from core.auth.permissions import Permission
    from core.extensions import bootstrap, csrf, db, limiter, login_manager, migrate
    from core.jobs import queue as job_queue
    from core.jobs import views as job_views
    from core.jobs.registry import JobKind, register_job
    from core.navigation import DashboardPanel, NavItem, register_dashboard_panel, register_nav
    from core.notifications import init_app as notifications_init_app
    from core.views import bp as core_bp

    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config["PACSDESK_RATELIMIT_STORAGE_URI"])
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", False)
    app.config.setdefault("BOOTSTRAP_SERVE_LOCAL", True)
    request_guard.init_app(app)
    database.init_app(app)
    health.init_app(app)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    migrate.init_app(app, db, directory=os.path.join(root, "migrations"))
    login_manager.init_app(app)
    loader.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    bootstrap.init_app(app)
    assets.init_app(app)
    security.init_app(app)
    templating.init_app(app)
    errors.init_app(app)
    app.register_blueprint(core_bp)
    app.register_blueprint(auth_views.bp)
    app.register_blueprint(job_views.bp)
    assert admin_views.bp is auth_views.bp  # the admin pages are routes of the auth blueprint
    for module in (auth_services, auth_views, login, second_factor, directory_accounts, security, cli,
                   job_queue, backup, errors):
        audit_sink.register_actions(app, module.AUDIT_ACTIONS)
    register_nav(app, NavItem("Users", "auth.users", Permission.USERS_MANAGE, 90, "people",
                                   "Administration"))
    register_nav(app, NavItem("Jobs", "jobs.job_list", Permission.JOBS_MANAGE, 91, "gear-wide-connected",
                                   "Administration"))
    register_nav(app, NavItem("Access ended", "auth.access_ended", Permission.AUDIT_READ, 88, "person-x",
                                   "Compliance"))
    first_run.init_app(app)
    register_dashboard_panel(app, DashboardPanel("auth/_first_run_panel.html", Permission.USERS_MANAGE, 1,
                                                 first_run.checklist))
    register_job(app, JobKind("jobs.cleanup", "Forget old finished jobs", job_queue.cleanup_job,
                              every=lambda _app: 24 * 3600.0))
    if app.config["PACSDESK_DIRECTORY"] is not None:
        register_job(app, JobKind("core.directory_sync", "Directory sync", directory_accounts.sync_job,
                                  every=directory_accounts.sync_interval))
    notifications_init_app(app)
    cli.register(app)
