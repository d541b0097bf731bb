"""Inventory pages: asset list, asset page, edit, disposal, warranty view, CSV import/export."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import fields
from datetime import timedelta
from typing import Any, TypeVar

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from wtforms import SelectChoice

from core.auth.forms import ConfirmForm
from core.auth.models import User
from core.auth.permissions import Permission, has_permission, require_permission
from core.extensions import db
from core.forms import select_choices
from core.jobs.models import ACTIVE, Job
from core.pagination import paginate
from core.timeutil import utcnow
from helpdesk import queries as ticket_queries
from inventory import csv_io, services
from inventory.asset_rules import (
    FIELD_LABELS,
    SANITISATION_METHODS,
    AssetData,
    AssetError,
    SanitisationData,
    local_today,
)
from inventory.forms import (
    DICOM_TYPE_LABELS,
    KIND_LABELS,
    ROLE_LABELS,
    STATUS_LABELS,
    AssetForm,
    SanitisationForm,
)
from inventory.models import Asset, AssetKind, AssetStatus, DicomRole, DicomType
from inventory.verification.models import CheckTrigger
from inventory.verification.services import VerificationError, address_problem, echo_target
from inventory.verification.summary import node_summary

T = TypeVar("T")

bp = Blueprint("inventory", __name__)

NODE_STATES = ("up", "degraded", "down", "unknown")
PER_PAGE = 50
WARRANTY_DAYS = 90


Labels = (dict[AssetKind, str] | dict[AssetStatus, str] | dict[DicomType, str] | dict[DicomRole, str]
          | dict[str, str])


@bp.app_template_global()
def asset_labels() -> dict[str, Labels]:
    """Display names of kinds, statuses, DICOM types, roles, fields and sanitisation methods."""
    return {"kind": KIND_LABELS, "status": STATUS_LABELS, "dicom_type": DICOM_TYPE_LABELS,
            "role": ROLE_LABELS, "field": FIELD_LABELS, "method": SANITISATION_METHODS}


def _filters() -> services.AssetFilters:
    """The list filters from the query string (unknown values are ignored)."""
    args = request.args
    kind = args.get("kind", "")
    status = args.get("status", "")
    state = args.get("node_state", "")
    return services.AssetFilters(
        kind=kind if kind in KIND_LABELS else "",
        status=status if status in STATUS_LABELS else "",
        location=args.get("location", "").strip()[:200],
        department=args.get("department", "").strip()[:120],
        node_state=state if state in NODE_STATES else "",
        q=args.get("q", "").strip()[:100],
    )


def _asset_or_404(tag: str) -> Asset:
    """Load an asset by tag or answer 404."""
    asset = services.find_asset(tag)
    if asset is None:
        abort(404)
    return asset


@bp.route("/assets")
@require_permission(Permission.ASSET_READ)
def asset_list():
    """Filterable, searchable list of assets."""
    filters = _filters()
    page = paginate(services.asset_query(filters), per_page=PER_PAGE)
    return render_template(
        "inventory/asset_list.html", page=page, filters=filters,
        states=services.node_states([a.id for a in page.items if a.is_dicom_node]),
        node_state_names=NODE_STATES,
        locations=services.distinct_values(Asset.location),
        departments=services.distinct_values(Asset.department),
    )


@bp.route("/assets/export.csv")
@require_permission(Permission.ASSET_READ)
def asset_export():
    """The filtered list as a CSV file."""
    filters = _filters()
    assets = list(db.session.scalars(services.asset_query(filters)))
    out = io.StringIO()
    states = services.node_states([a.id for a in assets if a.is_dicom_node])
    count = csv_io.write_csv(assets, out, states)
    services.record_export(filters, count, via="web")
    db.session.commit()
    name = f"assets-{utcnow():%Y%m%d-%H%M}.csv"
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.route("/assets/warranty")
@require_permission(Permission.ASSET_READ)
def warranty():
    """Assets whose warranty ends in the next 90 days."""
    page = paginate(services.warranty_query(WARRANTY_DAYS), per_page=PER_PAGE)
    today = local_today()
    return render_template("inventory/asset_warranty.html", page=page, today=today,
                           until=today + timedelta(days=WARRANTY_DAYS))


def _form_data(form: AssetForm) -> AssetData:
    """Plain values from the asset form (empty optional text is "", empty DICOM choices None)."""
    values: dict[str, Any] = {}
    for spec in fields(AssetData):
        value = getattr(form, spec.name).data
        if spec.type == "str":
            value = value or ""
        elif spec.type == "str | None":
            value = value or None
        values[spec.name] = value
    return AssetData(**values)


def _user_choices() -> list[SelectChoice]:
    """Active accounts for the assigned-user menu."""
    users = db.session.scalars(select(User).where(User.is_disabled.is_(False))
                               .order_by(User.username))
    return select_choices([("", "— nobody —")] + [(u.id, f"{u.username} ({u.display_name})") for u in users])


def _show_errors(form: Any, error: AssetError) -> None:
    """Attach a service's problems to the form's fields."""
    for field_name, message in error.problems:
        field = getattr(form, field_name, None)
        if field is None:
            field = form.asset_tag if hasattr(form, "asset_tag") else form.method
        field.errors = [*field.errors, message]


def _save_asset(form: AssetForm, save: Callable[[], T]) -> T | None:
    """Run a create or update (which may queue checks) and commit; None when refused, with why on the form."""
    try:
        result = save()
        db.session.commit()
    except AssetError as exc:
        db.session.rollback()
        _show_errors(form, exc)
    except IntegrityError:
        db.session.rollback()
        form.asset_tag.errors = [*form.asset_tag.errors, "this asset tag was just taken by "
                                 "someone else; choose another"]
    else:
        return result
    return None


def _may_set_tls_files() -> bool:
    """Whether the signed-in user may set a node's TLS files (server paths: administrators)."""
    return has_permission(current_user, Permission.NODE_TLS_FILES)


def _asset_form(asset: Asset | None) -> AssetForm:
    """The asset form, its TLS file fields only for those who may set them."""
    form = AssetForm(obj=asset)
    form.assigned_user_id.choices = _user_choices()
    if not _may_set_tls_files():
        for name in AssetForm.TLS_FILES:
            delattr(form, name)
    return form


def _refuse_unreachable_address(data: AssetData, before: Asset | None) -> None:
    """Refuse a node address checks may not connect to (the address a check uses), naming why.

    Judged when the node is new or its address changed: a name is resolved once, so a name
    that resolves to a metadata or outside address is refused too.
    """
    if data.kind != AssetKind.DICOM_NODE or not data.port:
        return
    by_name = bool(data.tls and data.hostname) or not data.ip_address
    host = data.hostname if by_name else data.ip_address
    if not host:
        return
    if before is not None and before.kind == AssetKind.DICOM_NODE and before.port == data.port \
            and bool(before.tls) == bool(data.tls) and (before.hostname, before.ip_address) \
            == (data.hostname, data.ip_address):
        return
    problem = address_problem(host, data.port)
    if problem:
        raise AssetError([("hostname" if by_name else "ip_address",
                           f"C-ECHO checks may not connect here: {problem}")])


def _set_tls_files(asset: Asset, form: AssetForm) -> list[str]:
    """Apply the TLS file fields when the form has them (administrators)."""
    if "tls_client_cert" not in form:
        return []
    return services.set_tls_files(asset, form.tls_client_cert.data, form.tls_client_key.data,
                                  form.tls_ca_file.data, user=current_user)


def _create_and_queue_check(form: AssetForm) -> Asset:
    """Create an asset and queue a check of a new DICOM node (same transaction)."""
    data = _form_data(form)
    _refuse_unreachable_address(data, None)
    asset = services.create_asset(data, user=current_user)
    _set_tls_files(asset, form)
    if asset.is_dicom_node:
        services.request_checks([asset.id], CheckTrigger.SAVE, user=current_user,
                                client_address=request.remote_addr)
    return asset


def _update_and_queue_check(asset: Asset, form: AssetForm) -> list[str]:
    """Save a change, queueing a check when a node's address or TLS files changed (same transaction)."""
    data = _form_data(form)
    _refuse_unreachable_address(data, asset)
    changed = services.update_asset(asset, data, user=current_user)
    changed += _set_tls_files(asset, form)
    if services.needs_verification(asset, changed):
        services.request_checks([asset.id], CheckTrigger.SAVE, user=current_user,
                                client_address=request.remote_addr)
    return changed


@bp.route("/assets/new", methods=["GET", "POST"])
@require_permission(Permission.ASSET_MANAGE)
def asset_new():
    """Create an asset."""
    form = _asset_form(None)
    if form.validate_on_submit():
        asset = _save_asset(form, lambda: _create_and_queue_check(form))
        if asset is not None:
            flash(f"Asset {asset.asset_tag} created.", "success")
            return redirect(url_for("inventory.asset_detail", tag=asset.asset_tag))
    return render_template("inventory/asset_form.html", form=form, asset=None), (
        422 if form.errors else 200)


@bp.route("/assets/<tag>/edit", methods=["GET", "POST"])
@require_permission(Permission.ASSET_MANAGE)
def asset_edit(tag: str):
    """Change an asset."""
    asset = _asset_or_404(tag)
    if asset.status == AssetStatus.DISPOSED:
        flash("A disposed asset cannot be changed.", "warning")
        return redirect(url_for("inventory.asset_detail", tag=asset.asset_tag))
    form = _asset_form(asset)
    if form.validate_on_submit():
        changed = _save_asset(form, lambda: _update_and_queue_check(asset, form))
        if changed is not None:
            flash(f"Asset {asset.asset_tag} saved." if changed else "Nothing changed.",
                  "success" if changed else "info")
            return redirect(url_for("inventory.asset_detail", tag=asset.asset_tag))
    return render_template("inventory/asset_form.html", form=form, asset=asset), (
        422 if form.errors else 200)


@bp.route("/assets/<tag>")
@require_permission(Permission.ASSET_READ)
def asset_detail(tag: str):
    """One asset: details, node status, sanitisation and history."""
    asset = _asset_or_404(tag)
    if asset.asset_tag != tag:
        return redirect(url_for("inventory.asset_detail", tag=asset.asset_tag))
    summary = node_summary(asset, request.args.get("range", "24h")) if asset.is_dicom_node else None
    pending = db.session.execute(select(Job).where(Job.dedup_key == f"verify:{asset.id}",
                                                   Job.status.in_(ACTIVE))).scalar_one_or_none() \
        if asset.is_dicom_node else None
    tickets = (ticket_queries.asset_tickets(asset.id)
               if has_permission(current_user, Permission.TICKET_READ_ALL) else None)
    return render_template("inventory/asset_detail.html", asset=asset, summary=summary, pending_check=pending,
                           verify_form=ConfirmForm(), history=services.asset_history(asset),
                           sanitisation=services.sanitisation_of(asset), tickets=tickets)


@bp.route("/assets/<tag>/verify", methods=["POST"])
@require_permission(Permission.ASSET_MANAGE)
def asset_verify(tag: str):
    """Verify now: one C-ECHO of this node."""
    asset = _asset_or_404(tag)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        echo_target(asset)
    except VerificationError as exc:
        flash(f"Cannot verify {asset.asset_tag}: {exc}", "danger")
        return redirect(url_for("inventory.asset_detail", tag=asset.asset_tag))
    limit = current_app.config["PACSDESK_VERIFY_NOW_PER_MINUTE"]
    if services.manual_checks_last_minute(current_user.id) >= limit:
        return render_template("errors/error.html", code=429, title="Too many checks",
                               message=f"You asked for {limit} checks in the last minute, the most "
                                       "allowed. Wait a minute and try again."), 429
    services.request_checks([asset.id], CheckTrigger.MANUAL, user=current_user,
                            client_address=request.remote_addr)
    db.session.commit()
    flash(f"Checking {asset.ae_title}@{asset.host}:{asset.port} with C-ECHO now; the result appears "
          "below when it is done.", "info")
    return redirect(url_for("inventory.asset_detail", tag=asset.asset_tag))


@bp.route("/assets/<tag>/dispose", methods=["GET", "POST"])
@require_permission(Permission.ASSET_MANAGE)
def asset_dispose(tag: str):
    """Dispose of an asset, recording how its storage was sanitised."""
    asset = _asset_or_404(tag)
    if asset.status == AssetStatus.DISPOSED:
        flash(f"Asset {asset.asset_tag} is already disposed.", "info")
        return redirect(url_for("inventory.asset_detail", tag=asset.asset_tag))
    form = SanitisationForm()
    if form.validate_on_submit():
        record = SanitisationData(
            method=form.method.data or "", performed_on=form.performed_on.data,
            performed_by=form.performed_by.data or "", witness=form.witness.data or "",
            certificate_ref=form.certificate_ref.data or "")
        try:
            services.dispose_asset(asset, record if record.method else None, user=current_user)
        except AssetError as exc:
            db.session.rollback()
            _show_errors(form, exc)
        else:
            db.session.commit()
            flash(f"Asset {asset.asset_tag} disposed.", "success")
            return redirect(url_for("inventory.asset_detail", tag=asset.asset_tag))
    return render_template("inventory/asset_dispose.html", form=form, asset=asset), (
        422 if form.errors else 200)
