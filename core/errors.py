"""Error pages: plain words, no stack traces, no internals."""

from __future__ import annotations

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from core.extensions import db

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


def _render(code: int, detail: str | None = None):
    """Render the error page for ``code``."""
    title, message = MESSAGES.get(code, ("Error", "The request failed."))
    if request.accept_mimetypes.best == "application/json":
        return {"error": title, "message": detail or message}, code
    return render_template("errors/error.html", code=code, title=title,
                           message=detail or message), code


def init_app(app: Flask) -> None:
    """Register handlers for HTTP errors, CSRF failures and crashes."""

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return _render(400, "The form expired or was not sent from PACS Desk. "
                            "Reload the page and try again.")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if error.code == 413:
            limit = app.config["PACSDESK_MAX_UPLOAD_MB"]
            return _render(413, f"The upload is larger than the {limit} MB limit. "
                                "Nothing was saved.")
        return _render(error.code or 500)

    @app.errorhandler(Exception)
    def crash(error: Exception):
        db.session.rollback()
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return _render(500)
