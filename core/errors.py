"""Error pages: plain words, no stack traces, no internals."""

from __future__ import annotations

from flask import Flask, current_app, render_template, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from core import audit_sink, db_faults, disk
from core.assets import STATIC_ENDPOINTS
from core.db_faults import Fault, Outcome
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


RETRY_AFTER_SECONDS = 5
STORAGE_PAGES = {
    "not_saved": (503, "Database unavailable", "The database was unavailable, nothing was saved; try again."),
    "disk_full": (507, "Disk full", "The server's disk is full; nothing was saved. Tell the PACS team."),
    "saved": (200, "Saved", "Your change was saved, but the page after it could not be shown because the "
                            "database connection dropped. Open the list again to see it."),
    "reload": (503, "Database unavailable", "The database connection dropped while this page was "
                                            "shown; reload the page."),
    "unknown": (503, "Database unavailable", "The database connection dropped while your change was "
                                             "being saved, and whether it was saved is not known. Look "
                                             "for it before trying again."),
}


def _storage_page(kind: str):
    """A storage fault's page, rendered without the page context (it must not touch the database)."""
    code, title, message = STORAGE_PAGES[kind]
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if code == 503 else {}
    if request.accept_mimetypes.best == "application/json":
        return {"error": title, "message": message}, code, headers
    retry = request.method not in ("GET", "HEAD") and kind in ("not_saved", "disk_full")
    links = {"reload": (request.url, "Reload"), "saved": ("/", "Back to PACS Desk")}
    again, label = links.get(kind) or (request.referrer or "/",
                                       "Back to the form" if retry else "Back to PACS Desk")
    html = current_app.jinja_env.get_template("errors/storage.html").render(
        code=code, title=title, message=message, again=again, again_label=label)
    return html, code, headers


def _storage_fault(error: Exception, fault: Fault | None):
    """The answer to a request that a storage fault (or an error after its commit) interrupted, or None."""
    outcome = db_faults.request_outcome()
    db_faults.discard_session()
    if fault is None and outcome is not Outcome.SAVED:
        return None
    cause = type(getattr(error, "orig", None) or error).__name__
    if outcome is Outcome.SAVED:
        # A storage fault is the world's doing; any other error after the commit is a defect to fix.
        log = current_app.logger.warning if fault else current_app.logger.error
        log("%s %s: %s after the commit; the change is saved", request.method, request.path, cause,
            exc_info=None if fault else error)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            return _storage_page("saved")
        return _storage_page("reload") if fault else None
    current_app.logger.warning("%s %s: %s (%s)", request.method, request.path, cause, fault)
    if outcome is Outcome.UNKNOWN:
        return _storage_page("unknown")
    if fault is Fault.DISK_FULL:
        disk.remember_full()
        return _storage_page("disk_full")
    return _storage_page("not_saved")


def refused_object(view_args: dict | None) -> tuple[str | None, str | None]:
    """The object a refused request named (its most specific route argument), as (type, id)."""
    if not view_args:
        return None, None
    name, value = list(view_args.items())[-1]
    kind = OBJECT_ARGS.get(name) or (name.removesuffix("_id") if name.endswith("_id") else name)
    return kind, str(value)[:120]


def record_denied(code: int) -> None:
    """Audit a signed-in user's 403 or 404 on one of the application's pages, in a transaction of its own."""
    if code not in (403, 404) or request.endpoint is None or request.endpoint in STATIC_ENDPOINTS:
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

    with app.app_context():
        db_faults.install(db.engine)
    db_faults.safe_teardown(app)

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
        answer = _storage_fault(error, db_faults.classify(error))
        if answer is not None:
            return answer
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500)
