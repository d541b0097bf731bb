"""Pages and endpoints for working tickets: bulk changes, take, links and merges, views, live counts."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

from flask import abort, flash, jsonify, redirect, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from core.auth.forms import ConfirmForm
from core.auth.models import User
from core.auth.permissions import Permission, has_permission, require_permission
from core.extensions import db
from core.forms import select_choices
from core.security import passive
from helpdesk import configuration, links, queue
from helpdesk.assets import asset_lookup
from helpdesk.forms import NO_CHANGE, BulkForm, LinkForm, SaveViewForm
from helpdesk.models import Category
from helpdesk.services import _UNSET, TicketError
from helpdesk.views import _technicians, _ticket_or_404, bp

LOOKUP_LIMIT = 10


def bulk_form(technicians: list[User] | None = None, categories: list[Category] | None = None) -> BulkForm:
    """The bulk form with the current technicians and categories as choices (read now unless given)."""
    form = BulkForm()
    technicians = _technicians() if technicians is None else technicians
    categories = configuration.list_categories() if categories is None else categories
    form.assignee.choices = select_choices(
        [NO_CHANGE, ("none", "Unassigned"), *((str(u.id), u.display_name) for u in technicians)])
    form.category.choices = select_choices(
        [NO_CHANGE, *((str(c.id), c.label) for c in categories if c.is_active)])
    return form


def _back_to_queue() -> Response:
    """Back to the queue as it was filtered (the form carries the list's query string)."""
    back = request.form.get("back", "")
    return redirect(back if back.startswith("/tickets") and "//" not in back else url_for("helpdesk.queue"))


def _selected_ids() -> list[int]:
    """The ticket ids ticked in the queue; a value that is not a ticket id is a 400."""
    raw = request.form.getlist("ticket")
    if any(not (v.isascii() and v.isdigit() and len(v) <= 9) for v in raw):
        abort(400, description="ticket: a selected value is not a ticket.")
    return [int(v) for v in raw]


@bp.route("/tickets/bulk", methods=["POST"])
@require_permission(Permission.TICKET_WORK)
def queue_bulk():
    """Change assignee, status, priority or category of the selected tickets at once."""
    form = bulk_form()
    if not form.validate_on_submit():
        errors = "; ".join(f"{getattr(form, name).label.text}: {' '.join(msgs)}"
                           for name, msgs in form.errors.items())
        flash(f"Nothing was changed. {errors or 'The form expired; try again.'}", "danger")
        return _back_to_queue()
    assignee = form.assignee.data
    change = queue.BulkChange(
        status=form.status.data or None, priority=form.priority.data or None,
        category_id=int(form.category.data) if form.category.data else None,
        assignee_id=_UNSET if not assignee else (None if assignee == "none" else int(assignee)))
    try:
        changed = queue.bulk_update(_selected_ids(), change, current_user)
    except TicketError as exc:
        db.session.rollback()
        flash(f"Nothing was changed. {exc}", "danger")
    else:
        db.session.commit()
        flash(f"{len(changed)} ticket{'s' if len(changed) != 1 else ''} changed." if changed
              else "Nothing changed: the selected tickets already were so.", "success" if changed else "info")
    return _back_to_queue()


def _confirmed(change: Callable[[], object], done: str) -> None:
    """Run a one-button change (its form confirmed): commit and say ``done``, or roll back and say why not."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        change()
    except TicketError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
    else:
        db.session.commit()
        flash(done, "success")


@bp.route("/tickets/<number>/take", methods=["POST"])
@require_permission(Permission.TICKET_WORK)
def ticket_take(number: str):
    """Assign the ticket to oneself."""
    ticket = _ticket_or_404(number)
    _confirmed(lambda: queue.take_ticket(ticket, current_user), f"{ticket.number} is yours.")
    if request.form.get("back"):
        return _back_to_queue()
    return redirect(url_for("helpdesk.ticket_detail", number=ticket.number))


@bp.route("/tickets/<number>/links", methods=["POST"])
@require_permission(Permission.TICKET_WORK)
def ticket_link(number: str):
    """Link the ticket to another, or merge it into another."""
    ticket = _ticket_or_404(number)
    form = LinkForm()
    if not form.validate_on_submit():
        flash("Link: " + " ".join(m for msgs in form.errors.values() for m in msgs), "danger")
        return redirect(url_for("helpdesk.ticket_detail", number=number))
    try:
        if form.kind.data == "merge":
            survivor = links.merge_into(ticket, form.other.data, current_user)
        else:
            links.link_tickets(ticket, form.other.data, form.kind.data, current_user)
    except TicketError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
        return redirect(url_for("helpdesk.ticket_detail", number=number))
    db.session.commit()
    if form.kind.data == "merge":
        flash(f"{number} was merged into {survivor.number} and closed.", "success")
        return redirect(url_for("helpdesk.ticket_detail", number=survivor.number))
    flash("Link added.", "success")
    return redirect(url_for("helpdesk.ticket_detail", number=number))


@bp.route("/tickets/<number>/links/<int:link_id>/delete", methods=["POST"])
@require_permission(Permission.TICKET_WORK)
def ticket_unlink(number: str, link_id: int):
    """Remove a link."""
    ticket = _ticket_or_404(number)
    _confirmed(lambda: links.unlink(ticket, link_id, current_user), "Link removed.")
    return redirect(url_for("helpdesk.ticket_detail", number=number))


@bp.route("/tickets/views", methods=["POST"])
@require_permission(Permission.TICKET_READ_ALL)
def view_save():
    """Save the queue as it is shown (filters, sort, columns) as a named view."""
    form = SaveViewForm()
    args = dict(parse_qsl(urlsplit(request.form.get("back", "")).query))
    if not form.validate_on_submit():
        flash("View name: give the view a name (at most 80 characters).", "danger")
        return _back_to_queue()
    try:
        view = queue.save_view(current_user, form.name.data, bool(form.shared.data), args)
    except TicketError as exc:
        db.session.rollback()
        flash(str(exc), "danger")
        return _back_to_queue()
    db.session.commit()
    flash(f"View “{view.name}” saved{' and shared with the team' if view.shared else ''}.", "success")
    return redirect(url_for("helpdesk.queue", **queue.view_args(view)))


@bp.route("/tickets/views/<int:view_id>/delete", methods=["POST"])
@require_permission(Permission.TICKET_READ_ALL)
def view_delete(view_id: int):
    """Delete one of one's own views."""
    _confirmed(lambda: queue.delete_view(current_user, view_id), "View deleted.")
    return redirect(url_for("helpdesk.queue"))


@bp.route("/tickets/counts.json")
@require_permission(Permission.TICKET_READ_ALL)
@passive
def queue_counts():
    """The queue's headline counts, for the page to refresh without reloading (not user activity)."""
    return jsonify(queue.queue_counts(current_user.id))


@bp.route("/tickets/assets.json")
@require_permission(Permission.TICKET_FILE)
def asset_search():
    """Assets matching what is typed in a ticket's asset field; only those the person may name."""
    text = request.args.get("q", "")
    if any(ord(c) < 32 for c in text):
        abort(400, description="q: control characters are not allowed.")
    lookup = asset_lookup()
    if lookup is None:
        return jsonify([])
    restricted = not has_permission(current_user, Permission.ASSET_READ)
    found = lookup.search(text, for_user=current_user if restricted else None, limit=LOOKUP_LIMIT)
    return jsonify([{"tag": a.tag, "name": a.name, "location": a.location} for a in found])
