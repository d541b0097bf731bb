"""PACS Desk application factory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from core.config import load_config


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app from ``PACSDESK_*`` variables, with ``config`` overriding for tests."""
    settings = load_config(os.environ)
    settings.update(config or {})
    app = Flask(__name__, instance_path=settings["PACSDESK_INSTANCE_PATH"],
                template_folder="templates", static_folder="static")
    app.config.update(settings)
    if app.config["PACSDESK_PROXY_COUNT"]:
        n = app.config["PACSDESK_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    register_extensions(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_commands(app)
    return app


def register_extensions(app: Flask) -> None:
    """Bind database, migrations, login, CSRF, rate limiting and security settings."""
    from core import database, security
    from core.auth import loader
    from core.extensions import bootstrap, csrf, limiter, login_manager, migrate
    from core.templating import init_app as init_templating

    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config["PACSDESK_RATELIMIT_STORAGE_URI"])
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", False)
    database.init_app(app)
    from core.extensions import db

    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(__file__), "migrations"))
    login_manager.init_app(app)
    loader.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    app.config.setdefault("BOOTSTRAP_SERVE_LOCAL", True)
    bootstrap.init_app(app)
    security.init_app(app)
    init_templating(app)


def register_blueprints(app: Flask) -> None:
    """Register each package's blueprint."""
    import helpdesk.reports, inventory.reports  # noqa: E401, F401, I001 - register report kinds
    from audit.reports.views import bp as reports_bp
    from audit.views import bp as audit_bp
    from core.auth.views import bp as auth_bp
    from core.views import bp as core_bp
    from helpdesk.views import bp as helpdesk_bp
    from inventory.views import bp as inventory_bp

    for blueprint in (core_bp, auth_bp, helpdesk_bp, inventory_bp, audit_bp, reports_bp):
        app.register_blueprint(blueprint)


def register_errorhandlers(app: Flask) -> None:
    """Friendly error pages that reveal nothing of the internals."""
    from core.errors import init_app

    init_app(app)


def register_commands(app: Flask) -> None:
    """Attach the CLI groups of every package."""
    from audit.cli import register as register_audit
    from audit.reports.cli import register as register_reports
    from core.cli import register as register_core
    from helpdesk.cli import register as register_helpdesk
    from inventory.cli import register as register_inventory

    register_core(app)
    register_audit(app)
    register_reports(app)
    register_helpdesk(app)
    register_inventory(app)
