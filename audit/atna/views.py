"""PACS access log pages on the audit blueprint: search, export, messages, quarantine, watchlist, senders."""

from __future__ import annotations

from flask import Response, abort, flash, redirect, render_template, request, stream_with_context, url_for
from flask_login import current_user

from audit.atna import overview, quarantine, search, watchlist
from audit.atna.forms import AccessSearchForm, QuarantinePurgeForm, WatchForm, WatchImportForm
from audit.atna.message import EVENT_IDS
from audit.atna.models import WatchCategory
from audit.atna.sources import source_directory
from audit.views import bp
from core.auth.forms import ConfirmForm
from core.auth.permissions import Permission, require_permission
from core.extensions import db
from core.forms import show_error
from core.timeutil import DateOutOfRange, utcnow


def _filter(form: AccessSearchForm) -> search.AccessFilter:
    """Plain filter values from a validated form."""
    def text(name: str) -> str:
        return (form[name].data or "").strip()

    return search.AccessFilter(
        patient_id=text("patient_id"), patient_name=text("patient_name"), accession=text("accession"),
        study_uid=text("study_uid"), user=text("user"), source=text("source"), event_id=text("event_id"),
        outcome=text("outcome"), date_from=form.date_from.data, date_to=form.date_to.data)


def _args() -> dict[str, str]:
    """The search's query string without the page."""
    return {k: v for k, v in request.args.items() if k != "page" and v}


@bp.route("/audit/pacs")
@require_permission(Permission.AUDIT_READ)
def pacs_access():
    """Search who accessed which patient's images; every search is audited."""
    form = AccessSearchForm(request.args)
    page = None
    searched = any(v for k, v in request.args.items() if k != "page")
    if searched and form.validate():
        try:
            page = search.search_access(_filter(form), form.page.data or 1)
        except DateOutOfRange as error:
            show_error(form, error, "date_from")
        else:
            db.session.commit()
    tags = search.asset_tags({r.asset_id for r in page.rows if r.asset_id}) if page else {}
    directory = source_directory()
    return render_template("audit/atna/access_search.html", form=form, page=page, args=_args(), tags=tags,
                           asset_endpoint=directory.page_endpoint() if directory else None,
                           losses=overview.losses(), quarantined=sum(quarantine.quarantine_counts().values()))


@bp.route("/audit/pacs/export.csv")
@require_permission(Permission.AUDIT_READ)
def pacs_access_export():
    """The filtered accesses as CSV; the export is audited before the first row."""
    form = AccessSearchForm(request.args)
    if not form.validate():
        flash("Fix the search filters before exporting.", "danger")
        return redirect(url_for("audit.pacs_access", **_args()))
    flt = _filter(form)
    try:
        search.conditions(flt)
    except DateOutOfRange as error:
        flash(str(error), "danger")
        return redirect(url_for("audit.pacs_access", **_args()))
    search.record_export(flt)
    db.session.commit()
    name = f"pacs-access-{utcnow():%Y%m%d-%H%M%S}.csv"
    return Response(stream_with_context(search.export_rows(flt)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.route("/audit/pacs/messages/<int:message_id>")
@require_permission(Permission.AUDIT_READ)
def pacs_message(message_id: int):
    """One stored audit message with its XML; the view is audited."""
    found = search.view_message(message_id)
    if found is None:
        abort(404)
    db.session.commit()
    return render_template("audit/atna/message_detail.html", message=found,
                           watched=search.watched_patients({found.row.patient_id}))


@bp.route("/audit/pacs/quarantine")
@require_permission(Permission.AUDIT_READ)
def pacs_quarantine():
    """Quarantined messages: counts by reason, the latest ones, the purge form."""
    return render_template("audit/atna/quarantine_list.html", counts=quarantine.quarantine_counts(),
                           entries=quarantine.recent_quarantine(), purge_form=QuarantinePurgeForm())


@bp.route("/audit/pacs/quarantine/<int:entry_id>")
@require_permission(Permission.AUDIT_READ)
def pacs_quarantine_entry(entry_id: int):
    """One quarantined message, its bytes shown as text; the view is audited."""
    found = quarantine.view_quarantined(entry_id)
    if found is None:
        abort(404)
    db.session.commit()
    return render_template("audit/atna/quarantine_entry.html", entry=found[0], preview=found[1],
                           limit=quarantine.PREVIEW_BYTES)


@bp.route("/audit/pacs/quarantine/purge", methods=["POST"])
@require_permission(Permission.AUDIT_READ)
def pacs_quarantine_purge():
    """Purge quarantined messages older than the days given; audited."""
    form = QuarantinePurgeForm()
    if not form.validate_on_submit():
        flash("Give the age in days (1 or more) of the quarantined messages to purge.", "danger")
        return redirect(url_for("audit.pacs_quarantine"))
    removed = quarantine.purge_quarantine(form.older_than_days.data, current_user)
    db.session.commit()
    flash(f"{removed} quarantined message{'' if removed == 1 else 's'} purged.", "info")
    return redirect(url_for("audit.pacs_quarantine"))


@bp.route("/audit/pacs/watchlist", methods=["GET", "POST"])
@require_permission(Permission.AUDIT_READ)
def pacs_watchlist():
    """The watched patients, and a form to add one."""
    form = WatchForm()
    if form.validate_on_submit():
        try:
            watchlist.add_watch(watchlist.NewWatch(form.patient_id.data or "", form.category.data or "",
                                                   form.reason.data or ""), current_user)
        except watchlist.WatchError as error:
            db.session.rollback()
            show_error(form, error, "patient_id")
        else:
            db.session.commit()
            flash("Added to the watchlist: every access to this patient's images is now an exception.",
                  "info")
            return redirect(url_for("audit.pacs_watchlist"))
    return render_template("audit/atna/watch_list.html", form=form, import_form=WatchImportForm(),
                           confirm=ConfirmForm(), watches=watchlist.list_watches(),
                           categories=WatchCategory.LABELS)


@bp.route("/audit/pacs/watchlist/<int:watch_id>/remove", methods=["POST"])
@require_permission(Permission.AUDIT_READ)
def pacs_watch_remove(watch_id: int):
    """Take a patient off the watchlist; audited."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        watchlist.remove_watch(watch_id, current_user)
    except watchlist.WatchError as error:
        db.session.rollback()
        flash(str(error), "danger")
    else:
        db.session.commit()
        flash("Removed from the watchlist.", "info")
    return redirect(url_for("audit.pacs_watchlist"))


@bp.route("/audit/pacs/watchlist/import", methods=["POST"])
@require_permission(Permission.AUDIT_READ)
def pacs_watch_import():
    """Add patients from a CSV file; a file with a bad row changes nothing."""
    form = WatchImportForm()
    if not form.validate_on_submit():
        flash("Choose a CSV file with the columns patient_id, category, reason.", "danger")
        return redirect(url_for("audit.pacs_watchlist"))
    try:
        done = watchlist.import_watch_csv(form.file.data.read(), current_user)
    except watchlist.WatchImportError as error:
        db.session.rollback()
        flash(f"Nothing was imported: {error}", "danger")
    else:
        db.session.commit()
        flash(f"{len(done.added)} patients added; {len(done.already)} were already watched.", "info")
    return redirect(url_for("audit.pacs_watchlist"))


@bp.route("/audit/pacs/sources")
@require_permission(Permission.AUDIT_READ)
def pacs_sources():
    """Senders with their assets, silence and counts; receivers with what they lost."""
    directory = source_directory()
    return render_template("audit/atna/source_list.html", sources=overview.sources_with_assets(),
                           receivers=overview.receivers(), losses=overview.losses(),
                           asset_endpoint=directory.page_endpoint() if directory else None,
                           event_labels=EVENT_IDS)
