"""PACS Desk application factory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

import audit
import core
import helpdesk
import inventory
from core.config import load_config

HERE = Path(__file__).resolve().parent


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Settings from ``PACSDESK_*`` variables (``config`` overrides them), then each package's init_app."""
    settings = load_config(os.environ, config)
    app = Flask(__name__, instance_path=settings["PACSDESK_INSTANCE_PATH"],
                template_folder=str(HERE / "templates"), static_folder=str(HERE / "static"))
    app.config.update(settings)
    if app.config["PACSDESK_PROXY_COUNT"]:
        n = app.config["PACSDESK_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    core.init_app(app)
    audit.init_app(app)
    helpdesk.init_app(app)
    inventory.init_app(app)
    return app
