"""Help desk pages: filing, the requester's list, the technicians' queue, the ticket page."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from functools import partial
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from wtforms import SelectChoice

from audit.trail.history import history_of
from core.auth.forms import ConfirmForm
from core.auth.models import Role, User
from core.auth.permissions import Permission, has_permission, require_permission
from core.database import commit_keeping_loaded
from core.extensions import db
from core.filenames import clean_file_name
from core.forms import select_choices, show_error
from core.notifications.services import emailed_to
from core.timeutil import format_local, utcnow
from helpdesk import access, configuration, links, queries, services
from helpdesk import queue as ticket_queue
from helpdesk.assets import AssetRef, asset_lookup, asset_ref
from helpdesk.attachments import Upload
from helpdesk.forms import LinkForm, ReplyForm, SaveViewForm, TicketForm, TicketUpdateForm
from helpdesk.models import (
    Category,
    Priority,
    Ticket,
    TicketAttachment,
    TicketComment,
    TicketStatus,
    parse_number,
)
from helpdesk.notifications import FILED
from helpdesk.sla import describe_remaining, sla_state

bp = Blueprint("helpdesk", __name__)

EXPORT_LIMIT = 50000
NUMBER_SLOT = "__NUMBER__"  # stands for the ticket number in a link built once per list page
# The ticket list's CSV is read by people (in a spreadsheet): headers in words, values as labels.
EXPORT_HEADERS = ("Number", "Title", "Status", "Priority", "Category", "Requester", "Assigned to",
                  "Created", "SLA due", "Resolved", "Closed")
# The reply form's buttons: send only, or send and move the ticket on in the same submit.
THEN_STATUS = {"": None, "wait": TicketStatus.WAITING, "resolve": TicketStatus.RESOLVED}
THEN_WORDS = {"": "", "wait": "; the ticket now waits for the requester",
              "resolve": "; the ticket is resolved"}


def _ticket_or_404(number: str) -> Ticket:
    """The ticket with ``number`` if the current user may see it; 404 otherwise (even if it exists)."""
    ticket_id = parse_number(number)
    ticket = db.session.get(Ticket, ticket_id) if ticket_id is not None else None
    if ticket is None or not access.can_see(current_user, ticket):
        abort(404)
    return ticket


def _uploads(field: str = "attachments") -> list[Upload]:
    """The files posted in ``field``."""
    return [Upload(f.filename or "", f.read()) for f in request.files.getlist(field)]


def asset_url(asset: AssetRef | None) -> str | None:
    """Link to the asset's page, when the inventory serves one and the user may read it."""
    lookup = asset_lookup()
    if asset is None or lookup is None or not has_permission(current_user, Permission.ASSET_READ):
        return None
    return url_for(lookup.page_endpoint(), tag=asset.tag)


def _technicians() -> list[User]:
    """Active accounts that can be assigned tickets."""
    return list(db.session.execute(
        select(User).where(User.role.in_([Role.TECHNICIAN, Role.ADMIN]),
                           User.is_disabled.is_(False)).order_by(User.username)
    ).scalars())


def _category_choices(include_id: int | None = None) -> list[SelectChoice]:
    """Active categories (plus the ticket's current one, even if retired)."""
    return select_choices((c.id, c.label) for c in configuration.list_categories()
                          if c.is_active or c.id == include_id)


@bp.route("/tickets/new", methods=["GET", "POST"])
@require_permission(Permission.TICKET_FILE)
def ticket_new():
    """File a ticket."""
    form = TicketForm()
    form.category_id.choices = _category_choices()
    form.asset_tag.render_kw = {"data-asset-lookup": url_for("helpdesk.asset_search")}
    if not has_permission(current_user, Permission.TICKET_WORK):
        del form.priority
        del form.requester_username
    status = 200
    if form.validate_on_submit():
        new = services.NewTicket(
            title=form.title.data, description=form.description.data,
            category_id=form.category_id.data, impact=form.impact.data, urgency=form.urgency.data,
            location=form.location.data or "", callback_phone=form.callback_phone.data or "",
            accession_number=form.accession_number.data or "", patient_id=form.patient_id.data or "",
            study_instance_uid=form.study_instance_uid.data or "", asset_tag=form.asset_tag.data or "",
            priority=form.priority.data if "priority" in form else None,
            requester_username=(form.requester_username.data or "") if "requester_username" in form else "")
        try:
            ticket = services.create_ticket(new, current_user, _uploads())
        except services.TicketError as exc:
            db.session.rollback()
            show_error(form, exc, "title")
        else:
            # Read before the commit, which forgets what this transaction asked to be e-mailed.
            sent_to = emailed_to(ticket.requester_id, FILED, ticket.number) if ticket.requester_id else None
            db.session.commit()
            session["draft_clear"] = "ticket-new"
            confirmation = f" A confirmation was sent to {sent_to}." if sent_to else ""
            flash(f"Ticket {ticket.number} filed.{confirmation}", "success")
            return redirect(url_for("helpdesk.ticket_detail", number=ticket.number))
    if form.is_submitted():
        status = 400
    return render_template("helpdesk/ticket_new.html", form=form), status


def _list_args(saved: Any) -> dict[str, str]:
    """The list's arguments: a saved view's, overridden by any given explicitly."""
    args = {k: v for k, v in request.args.items() if k not in ("view", "page")}
    if len(request.args.getlist("cols")) > 1:
        args["cols"] = ",".join(request.args.getlist("cols"))
    return {**(saved.params if saved is not None else {}), **args}


def _row_link(endpoint: str) -> Callable[[str], str]:
    """A ticket number's link to ``endpoint``, built once for a page's rows rather than per row."""
    return partial(url_for(endpoint, number=NUMBER_SLOT).replace, NUMBER_SLOT)


def _list_page(template: str, requester_id: int | None, default_status: str,
               categories: list[Category] | None = None, **extra: Any):
    """Render a filtered, sorted, paginated ticket list; a free-text search is audited."""
    saved = ticket_queue.get_view(current_user, queries._int_or_none(request.args.get("view")))
    args = _list_args(saved)
    filters = queries.parse_filters(args, default_status)
    mine = requester_id is not None
    query = queries.ticket_query(filters, current_user.id, requester_id=requester_id,
                                 waiting_first=mine and "sort" not in args)
    page = queries.paginate_tickets(query, searching=bool(filters.q))
    searched = ticket_queue.record_search(filters, mine=mine)
    changed = ticket_queue.changed_since_seen(current_user.id, page.items) if not mine else {}
    if searched:  # a list that only read has nothing to commit
        commit_keeping_loaded()  # the search's audit event; the tickets found are shown as loaded
    return render_template(template, page=page, filters=filters, now=utcnow(),
                           sla_state=sla_state, describe_remaining=describe_remaining,
                           categories=configuration.list_categories() if categories is None else categories,
                           ticket_url=_row_link("helpdesk.ticket_detail"),
                           take_url=_row_link("helpdesk.ticket_take"),
                           status_filters=queries.STATUS_FILTERS, sla_filters=queries.SLA_FILTERS,
                           sorts=queries.SORTS, columns=queries.parse_columns(args.get("cols")),
                           all_columns=queries.COLUMNS, list_args=args, saved_view=saved,
                           changed=changed, **extra)


@bp.route("/my/tickets")
@require_permission(Permission.TICKET_FILE)
def my_tickets():
    """The tickets the current user filed, those waiting on them first."""
    return _list_page("helpdesk/ticket_mine.html", current_user.id, "all")


@bp.route("/tickets", endpoint="queue")
@require_permission(Permission.TICKET_READ_ALL)
def queue_page():
    """The technicians' queue, ordered by what breaches first."""
    from helpdesk.work_views import bulk_form

    work = has_permission(current_user, Permission.TICKET_WORK)
    technicians, categories = _technicians(), configuration.list_categories()
    return _list_page("helpdesk/ticket_queue.html", None, "active", categories, technicians=technicians,
                      priorities=list(Priority), views=ticket_queue.visible_views(current_user),
                      bulk=bulk_form(technicians, categories) if work else None, view_form=SaveViewForm(),
                      action_form=ConfirmForm(), work=work)


def _export(requester_id: int | None, default_status: str, name: str) -> Response:
    """CSV of the filtered list (no descriptions or patient identifiers); audited."""
    filters = queries.parse_filters(request.args, default_status)
    query = queries.ticket_query(filters, current_user.id, requester_id=requester_id).limit(EXPORT_LIMIT)
    tickets = db.session.execute(query).scalars().all()
    access.record_export(len(tickets), filters.__dict__, mine=requester_id is not None)
    db.session.commit()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_HEADERS)
    for t in tickets:
        writer.writerow([t.number, _csv_safe(t.title), TicketStatus(t.status).label,
                         Priority(t.priority).label, _csv_safe(t.category.label),
                         _csv_safe(t.requester.display_name) if t.requester else "System",
                         _csv_safe(t.assignee.display_name) if t.assignee else "",
                         format_local(t.created_at), format_local(t.sla_due_at), format_local(t.resolved_at),
                         format_local(t.closed_at)])
    # The byte order mark lets spreadsheets read the labels' non-ASCII characters ("P2 · high") as UTF-8.
    return Response("\ufeff" + out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename={name}"})


def _csv_safe(value: str) -> str:
    """Neutralise spreadsheet formulas in a cell."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@bp.route("/tickets/export.csv")
@require_permission(Permission.TICKET_READ_ALL)
def queue_export():
    """The queue as CSV."""
    return _export(None, "active", "tickets.csv")


@bp.route("/my/tickets/export.csv")
@require_permission(Permission.TICKET_FILE)
def my_tickets_export():
    """The current user's own tickets as CSV."""
    return _export(current_user.id, "all", "my-tickets.csv")


def _render_detail(ticket: Ticket, reply_form: ReplyForm | None = None,
                   update_form: TicketUpdateForm | None = None, status: int = 200):
    """Audit the view, then render the ticket page for the current user.

    The view's event and the seen mark are committed first, so the write lock (SQLite) is held
    for those inserts alone, and what the page shows is loaded after the commit (nothing is
    reloaded row by row).
    """
    access.record_ticket_view(ticket)
    ticket_queue.mark_seen(current_user, [ticket.id])
    db.session.commit()
    staff = has_permission(current_user, Permission.TICKET_READ_ALL)
    comments = (select(TicketComment).where(TicketComment.ticket_id == ticket.id)
                .options(selectinload(TicketComment.author), selectinload(TicketComment.attachments)))
    if not staff:
        comments = comments.where(TicketComment.is_internal.is_(False))
    comment_rows = db.session.execute(comments.order_by(TicketComment.created_at,
                                                        TicketComment.id)).scalars().all()
    changes = history_of("ticket", ticket.id)
    attachments = [a for a in db.session.execute(
        select(TicketAttachment).where(TicketAttachment.ticket_id == ticket.id)
        .order_by(TicketAttachment.id)).scalars() if staff or not a.is_internal]
    timeline = sorted([("comment", c.created_at, c) for c in comment_rows]
                      + [("change", c.changed_at, c) for c in changes],
                      key=lambda e: (e[1], e[0] != "comment"))
    asset = asset_ref(ticket.asset_id)
    if update_form is None and has_permission(current_user, Permission.TICKET_WORK):
        update_form = TicketUpdateForm(status=ticket.status if ticket.status != "new" else "open",
                                       priority=ticket.priority, category_id=ticket.category_id,
                                       assignee_id=ticket.assignee_id,
                                       asset_tag=asset.tag if asset else "")
    if update_form is not None:
        _fill_update_choices(update_form, ticket)
    if reply_form is None and access.can_reply(current_user, ticket):
        reply_form = ReplyForm()
    if reply_form is not None and not has_permission(current_user, Permission.TICKET_WORK):
        del reply_form.internal
    work = has_permission(current_user, Permission.TICKET_WORK)
    return render_template(
        "helpdesk/ticket_detail.html", ticket=ticket, timeline=timeline, attachments=attachments,
        links=links.links_of(ticket), link_form=LinkForm() if work else None, work=work,
        draft_clear=session.pop("draft_clear", None), draft_key=f"reply-{ticket.number}",
        reply_form=reply_form, update_form=update_form, action_form=ConfirmForm(), staff=staff,
        sla=sla_state(ticket, utcnow()), describe_remaining=describe_remaining,
        asset=asset, asset_url=asset_url(asset), reopen_until=services.reopen_deadline(ticket),
        impacts=services.IMPACTS, urgencies=services.URGENCIES,
    ), status


def _fill_update_choices(form: TicketUpdateForm, ticket: Ticket) -> None:
    """Choices of the technicians' form, and the asset field's picker."""
    form.asset_tag.render_kw = {"data-asset-lookup": url_for("helpdesk.asset_search")}
    form.category_id.choices = _category_choices(ticket.category_id)
    form.assignee_id.choices = select_choices(
        [(None, "Unassigned")] + [(u.id, u.display_name) for u in _technicians()])


@bp.route("/tickets/<number>")
@require_permission(Permission.TICKET_FILE)
def ticket_detail(number: str):
    """The ticket page."""
    return _render_detail(_ticket_or_404(number))


@bp.route("/tickets/<number>/reply", methods=["POST"])
@require_permission(Permission.TICKET_FILE)
def ticket_reply(number: str):
    """Add a reply or internal note."""
    ticket = _ticket_or_404(number)
    if not access.can_reply(current_user, ticket):
        abort(403)
    form = ReplyForm()
    internal_allowed = has_permission(current_user, Permission.TICKET_WORK)
    then = request.form.get("then", "")
    if then not in THEN_STATUS or (then and not internal_allowed):
        abort(400, description="then: choose send, send and wait for the requester, or send and resolve.")
    if form.validate_on_submit():
        try:
            services.add_reply(ticket, current_user, form.body.data,
                               internal=bool(form.internal.data) and internal_allowed,
                               uploads=_uploads())
            if THEN_STATUS[then] is not None:
                services.update_ticket(ticket, current_user, status=THEN_STATUS[then])
        except services.TicketError as exc:
            db.session.rollback()
            target = form.attachments if exc.field == "attachments" else form.body
            target.errors = [*target.errors, str(exc)]
        else:
            db.session.commit()
            session["draft_clear"] = f"reply-{ticket.number}"
            sent = "Internal note added" if form.internal.data and internal_allowed else "Reply sent"
            flash(f"{sent}{THEN_WORDS[then]}.", "success")
            return redirect(url_for("helpdesk.ticket_detail", number=ticket.number))
    ticket = _ticket_or_404(number)
    return _render_detail(ticket, reply_form=form, status=400)


@bp.route("/tickets/<number>/update", methods=["POST"])
@require_permission(Permission.TICKET_FILE)
def ticket_update(number: str):
    """Technicians change status, priority, category, assignee or asset."""
    ticket = _ticket_or_404(number)
    if not has_permission(current_user, Permission.TICKET_WORK):
        abort(403)
    form = TicketUpdateForm()
    _fill_update_choices(form, ticket)
    if form.validate_on_submit():
        try:
            changes = services.update_ticket(
                ticket, current_user, status=form.status.data, priority=form.priority.data,
                category_id=form.category_id.data, assignee_id=form.assignee_id.data,
                asset_tag=form.asset_tag.data or "")
        except services.TicketError as exc:
            db.session.rollback()
            show_error(form, exc, "status")
        else:
            db.session.commit()
            flash("Ticket updated." if changes else "Nothing changed.", "success" if changes else "info")
            return redirect(url_for("helpdesk.ticket_detail", number=ticket.number))
    return _render_detail(_ticket_or_404(number), update_form=form, status=400)


@bp.route("/tickets/<number>/reopen", methods=["POST"])
@require_permission(Permission.TICKET_FILE)
def ticket_reopen(number: str):
    """The requester (or a technician) reopens a resolved ticket."""
    ticket = _ticket_or_404(number)
    if not access.can_reply(current_user, ticket):
        abort(403)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        services.reopen_ticket(ticket, current_user)
    except services.TicketError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
    else:
        db.session.commit()
        flash(f"Ticket {ticket.number} reopened.", "success")
    return redirect(url_for("helpdesk.ticket_detail", number=number))


@bp.route("/tickets/<number>/attachments/<int:attachment_id>")
@require_permission(Permission.TICKET_FILE)
def attachment_download(number: str, attachment_id: int):
    """Send an attachment as a download, only to those who may see it; audited."""
    ticket = _ticket_or_404(number)
    attachment = db.session.get(TicketAttachment, attachment_id)
    if attachment is None or attachment.ticket_id != ticket.id:
        abort(404)
    if attachment.is_internal and not has_permission(current_user, Permission.TICKET_READ_ALL):
        abort(404)
    response = Response(attachment.data, content_type=attachment.content_type)
    response.headers["Content-Disposition"] = f'attachment; filename="{clean_file_name(attachment.filename)}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    access.record_download(ticket, attachment)
    db.session.commit()
    return response

