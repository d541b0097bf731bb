"""/healthz for load balancers: liveness and database state, answered before the web framework.

A health check is polled by every load balancer every few seconds and must answer fast when the
site is busy. It needs no session, login, form protection or rate limit, so it is answered by
a thin WSGI layer in front of Flask: one ``SELECT 1`` on a pooled connection and the cached
disk check, with the same security headers as every page.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from sqlalchemy.engine import Engine

from core.disk import disk_full
from core.extensions import db
from core.security import SECURITY_HEADERS

PATH = "/healthz"
log = logging.getLogger("pacsdesk.health")


def health(app: Flask, engine: Engine) -> tuple[int, dict[str, str]]:
    """The HTTP status and the JSON body: ok, or which of the database and its disk is failing."""
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        database = "disk full" if disk_full(app) else "ok"
    except Exception as exc:
        log.warning("health check: database unavailable (%s)", type(exc).__name__)
        database = "unavailable"
    ok = database == "ok"
    return (200 if ok else 503), {"status": "ok" if ok else "degraded", "app": "ok", "database": database}


class HealthCheck:
    """WSGI middleware: answers ``GET``/``HEAD /healthz`` itself and passes every other request on."""

    def __init__(self, app: Flask, engine: Engine, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.app, self.engine, self.wsgi_app = app, engine, wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Answer the health check, or hand the request to the application."""
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") not in {"GET", "HEAD"}:
            return self.wsgi_app(environ, start_response)
        status, body = health(self.app, self.engine)
        payload = (json.dumps(body) + "\n").encode()
        start_response(f"{status} {'OK' if status == 200 else 'SERVICE UNAVAILABLE'}", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
            ("Cache-Control", "no-store"), *SECURITY_HEADERS.items()])
        return [b""] if environ["REQUEST_METHOD"] == "HEAD" else [payload]


def init_app(app: Flask) -> None:
    """Put the health check in front of the application, on the app's database engine."""
    with app.app_context():
        engine = db.engine
    app.wsgi_app = HealthCheck(app, engine, app.wsgi_app)  # type: ignore[method-assign]
