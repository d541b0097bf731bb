"""Error pages: plain words, no stack traces, no internals."""

from __future__ import annotations

from flask import Flask, current_app, render_template, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from core import audit_sink
from core.extensions import db

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {"access.denied": "Access refused (not allowed, or not found for this user)"}
# What a route's argument names: the object a refused request was about.
OBJECT_ARGS = {"number": "ticket", "tag": "asset"}

MESSAGES = {
    400: ("Bad request", "The request could not be understood. Go back and try again."),
    403: ("Not allowed", "Your role does not give access to this page."),
    404: ("Not found", "There is nothing here, or you do not have access to it."),
    405: ("Not allowed", "That action is not available here."),
    413: ("Too large", "The upload is larger than the limit."),
    429: ("Too many attempts", "Too many requests from your address. Wait a minute and try again."),
    500: ("Something went wrong", "The error has been logged. Try again, or file a ticket "
          "with the PACS team if it keeps happening."),
}


def error_response(code: int, detail: str | None = None):
    """The error page (or JSON answer) for ``code``, with ``detail`` in place of the usual message."""
    title, message = MESSAGES.get(code, ("Error", "The request failed."))
    if request.accept_mimetypes.best == "application/json":
        return {"error": title, "message": detail or message}, code
    return render_template("errors/error.html", code=code, title=title,
                           message=detail or message), code


def refused_object(view_args: dict | None) -> tuple[str | None, str | None]:
    """The object a refused request named (its most specific route argument), as (type, id)."""
    if not view_args:
        return None, None
    name, value = list(view_args.items())[-1]
    kind = OBJECT_ARGS.get(name) or (name.removesuffix("_id") if name.endswith("_id") else name)
    return kind, str(value)[:120]


def record_denied(code: int) -> None:
    """Audit a signed-in user's 403 or 404 on one of the application's pages, in a transaction of its own."""
    if code not in (403, 404) or request.endpoint in (None, "static", "bootstrap.static"):
        return
    if not current_user.is_authenticated:
        return
    db.session.rollback()
    object_type, object_id = refused_object(request.view_args)
    try:
        audit_sink.record("access.denied", object_type=object_type, object_id=object_id,
                          outcome="failure",
                          details={"status": code, "method": request.method, "path": request.path[:300]})
        db.session.commit()
    except Exception:  # the refusal is still answered; the failure to note it is logged
        db.session.rollback()
        current_app.logger.exception("could not audit a refused request")


def init_app(app: Flask) -> None:
    """Register handlers for HTTP errors, CSRF failures and crashes."""

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return error_response(400, "The form expired or was not sent from PACS Desk. "
                                   "Reload the page and try again.")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if error.code == 413:
            limit = app.config["PACSDESK_MAX_UPLOAD_MB"]
            return error_response(413, f"The upload is larger than the {limit} MB limit. "
                                       "Nothing was saved.")
        record_denied(error.code or 500)
        return error_response(error.code or 500)

    @app.errorhandler(Exception)
    def crash(error: Exception):
        db.session.rollback()
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500)
