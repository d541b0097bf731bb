"""Administrators' help desk settings: categories and service levels."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for

from core.auth.permissions import Permission, require_permission
from core.extensions import db
from core.forms import show_error
from helpdesk import configuration
from helpdesk.forms import CategoryForm, SlaForm
from helpdesk.models import Category, Priority
from helpdesk.services import TicketError
from helpdesk.views import bp


@bp.route("/helpdesk/categories", methods=["GET", "POST"])
@require_permission(Permission.HELPDESK_CONFIGURE)
def categories():
    """List categories and add one."""
    form = CategoryForm()
    status = 200
    if form.validate_on_submit():
        try:
            category = configuration.create_category(form.code.data or "", form.label.data,
                                                     form.description.data or "",
                                                     form.sort_order.data or 0)
        except TicketError as exc:
            db.session.rollback()
            show_error(form, exc, "label")
        else:
            db.session.commit()
            flash(f"Category {category.label} added.", "success")
            return redirect(url_for("helpdesk.categories"))
    if form.is_submitted():
        status = 400
    return render_template("helpdesk/category_list.html", categories=configuration.list_categories(),
                           form=form), status


@bp.route("/helpdesk/categories/<int:category_id>", methods=["GET", "POST"])
@require_permission(Permission.HELPDESK_CONFIGURE)
def category_edit(category_id: int):
    """Rename, reorder or retire a category (its code stays)."""
    category = db.session.get(Category, category_id)
    if category is None:
        abort(404)
    form = CategoryForm(obj=category)
    del form.code
    status = 200
    if form.validate_on_submit():
        try:
            configuration.update_category(category, form.label.data, form.description.data or "",
                                          form.sort_order.data or 0, bool(form.is_active.data))
        except TicketError as exc:
            db.session.rollback()
            show_error(form, exc, "label")
        else:
            db.session.commit()
            flash("Category saved.", "success")
            return redirect(url_for("helpdesk.categories"))
    if form.is_submitted():
        status = 400
    return render_template("helpdesk/category_edit.html", category=category, form=form), status


@bp.route("/helpdesk/sla", methods=["GET", "POST"])
@require_permission(Permission.HELPDESK_CONFIGURE)
def sla_settings():
    """Set first-response and resolution targets per priority."""
    policies = {p.priority: p for p in configuration.list_sla_policies()}
    form = SlaForm()
    if not form.is_submitted():
        for priority, policy in policies.items():
            getattr(form, f"{priority.lower()}_response").data = policy.response_minutes
            getattr(form, f"{priority.lower()}_resolution").data = policy.resolution_minutes
    status = 200
    if form.validate_on_submit():
        targets = {p.value: (getattr(form, f"{p.value.lower()}_response").data,
                             getattr(form, f"{p.value.lower()}_resolution").data) for p in Priority}
        try:
            changes = configuration.update_sla_policies(targets)
        except TicketError as exc:
            db.session.rollback()
            field = getattr(form, f"{(exc.field or 'p1').lower()}_resolution", form.p1_resolution)
            field.errors = [*field.errors, str(exc)]
        else:
            db.session.commit()
            flash("Service levels saved; they apply to tickets filed from now on." if changes
                  else "Nothing changed.", "success" if changes else "info")
            return redirect(url_for("helpdesk.sla_settings"))
    if form.is_submitted():
        status = 400
    return render_template("helpdesk/sla_edit.html", form=form, priorities=list(Priority)), status
