"""The CSV import pages: upload, preview and mapping of another tool's columns, the import job's page."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from core.auth.permissions import Permission, require_permission
from core.extensions import db
from core.forms import carried_file, carry_file, is_large_import, select_choices
from core.jobs.models import JobStatus
from core.jobs.queue import enqueue, get_job
from inventory import csv_io, csv_mapping, csv_read, services
from inventory.csv_mapping import Mapping
from inventory.forms import ImportForm, ImportMappingForm
from inventory.jobs import IMPORT_JOB, MAX_CHECKS_AFTER_IMPORT
from inventory.models import AssetStatus
from inventory.verification.models import CheckTrigger
from inventory.views import bp

PREVIEW_ROWS = 5


def _run_import(raw: bytes, filename: str, update: bool, mapping: Mapping | None,
                remember: bool) -> Any:
    """Import a file (a large one in the job worker) and redirect; the refusal when refused."""
    if is_large_import(raw):
        job = enqueue(IMPORT_JOB, {"data": carry_file(raw), "update": update,
                                   "source": filename, "remember": remember,
                                   "mapping": mapping.to_json() if mapping else None},
                      user_id=current_user.id, title=f"Import of {filename}")
        db.session.commit()
        return redirect(url_for("inventory.import_job", job_id=job.id))
    try:
        result = csv_io.import_assets(raw, update=update, user=current_user, source=filename,
                                      mapping=mapping, remember=remember)
    except csv_read.CsvImportError as exc:
        db.session.rollback()
        return exc
    message = f"Import done: {result.summary()}."
    if len(result.verify_ids) > MAX_CHECKS_AFTER_IMPORT:
        message += (f" The {len(result.verify_ids)} DICOM nodes will be checked by the "
                    f"next scheduled sweep.")
    elif result.verify_ids:
        queued = services.request_checks(result.verify_ids, CheckTrigger.SAVE,
                                         user=current_user, client_address=request.remote_addr)
        message += f" Checking {len(queued)} DICOM node(s) in the background."
    db.session.commit()
    flash(message, "success")
    for warning in result.warnings:
        flash(warning, "warning")
    return redirect(url_for("inventory.asset_list"))


@bp.route("/assets/import", methods=["GET", "POST"])
@require_permission(Permission.ASSET_MANAGE)
def asset_import():
    """Upload a CSV file: PACS Desk's own columns import at once, others go to the mapping page."""
    form = ImportForm()
    refused: csv_read.CsvImportError | None = None
    if form.validate_on_submit():
        upload = form.file.data
        raw, filename = upload.read(), upload.filename or "upload"
        try:
            header = csv_read.read_file(raw, check_header=False).header
        except csv_read.CsvImportError as exc:
            refused = exc
        else:
            if not csv_mapping.is_native(header):
                mapping, source = csv_mapping.choose_mapping(header)
                if source != csv_mapping.SAVED:
                    mapping = replace(mapping, date_format=form.date_format.data)
                return _mapping_page(raw, filename, bool(form.update.data), mapping, source)
            outcome = _run_import(raw, filename, bool(form.update.data),
                                  Mapping(date_format=form.date_format.data), remember=False)
            if not isinstance(outcome, csv_read.CsvImportError):
                return outcome
            refused = outcome
    return render_template("inventory/asset_import.html", form=form, refused=refused,
                           columns=csv_mapping.COLUMNS, required=csv_mapping.REQUIRED,
                           presets=csv_mapping.PRESETS.values()), (
        422 if refused or form.errors else 200)


def _mapping_page(raw: bytes, filename: str, update: bool, mapping: Mapping, source: str,
                  refused: csv_read.CsvImportError | None = None, asked: list[str] | None = None,
                  status: int = 200) -> Any:
    """The preview of a file with the mapping's choices for each column and each unknown value."""
    parsed = csv_read.read_file(raw, mapping, check_header=False)
    questions = csv_read.value_questions(parsed)
    form = ImportMappingForm(formdata=None, data={
        "data": carry_file(raw), "filename": filename,
        "mapping": json.dumps(mapping.to_json()), "date_format": mapping.date_format, "update": update,
        "columns": [{"target": target or csv_mapping.IGNORE} for target in parsed.targets],
        "values": [{"field": q.field, "source": q.written, "target": q.code or ""} for q in questions]})
    _set_mapping_choices(form)
    return render_template(
        "inventory/asset_import_map.html", form=form, parsed=parsed, questions=questions,
        rows=parsed.records[:PREVIEW_ROWS], source=source, refused=refused, asked=asked or [],
        header_problems=parsed.problems, read_as=csv_read.delimiter_name(parsed.delimiter),
        warnings=parsed.warnings + [f"{q.column} '{q.written}' has no match: it will be imported as "
                                    f"{csv_mapping.CODED[q.field].get(q.code or '', q.code)}"
                                    for q in questions if q.fallback]), status


def _set_mapping_choices(form: ImportMappingForm) -> None:
    """The choices of the mapping page's column and value menus."""
    columns = select_choices([(csv_mapping.IGNORE, "— ignore —"), *(
        (name, csv_mapping.field_label(name)) for name in csv_mapping.COLUMNS)])
    for entry in form.columns:
        entry.target.choices = columns
    for entry in form.values:
        codes = csv_mapping.CODED.get(entry.field.data, {})
        entry.target.choices = select_choices([("", "— choose —"), *(
            (str(code), label) for code, label in codes.items() if code != AssetStatus.DISPOSED)])


def _mapping_from(form: ImportMappingForm, header: list[str], base: Mapping) -> Mapping:
    """The mapping the page's menus describe, keeping the fallbacks of the one it started from."""
    columns = {name: entry.target.data or csv_mapping.IGNORE
               for name, entry in zip(header, form.columns, strict=False)}
    if csv_mapping.ANY in base.columns:
        columns[csv_mapping.ANY] = base.columns[csv_mapping.ANY]
    values = {name: dict(table) for name, table in base.values.items()}
    for entry in form.values:
        name, written, code = entry.field.data, entry.source.data, entry.target.data
        if name not in csv_mapping.CODED or code not in {str(c) for c in csv_mapping.CODED[name]} | {""}:
            continue
        table = values.setdefault(name, {})
        explicit = any(csv_mapping.fold(k) == csv_mapping.fold(written) for k in table)
        if code and (explicit or base.value_code(name, written) != (code, True)):
            table[written] = code
        elif not code and explicit:
            table.pop(written, None)
    return Mapping(columns, values, form.date_format.data or "iso", base.delimiter, base.preset)


@bp.route("/assets/import/map", methods=["POST"])
@require_permission(Permission.ASSET_MANAGE)
def asset_import_map():
    """The mapping page's answer: update the preview, or import with the mapping and save it."""
    form = ImportMappingForm()
    _set_mapping_choices(form)
    if not form.validate_on_submit():
        abort(400)
    raw = carried_file(form.data.data or "")
    if raw is None:
        abort(400)  # not what the upload page sent
    try:
        base = Mapping.from_json(json.loads(form.mapping.data or "{}"))
        header = csv_read.read_file(raw, base, check_header=False).header
    except (ValueError, csv_read.CsvImportError):
        abort(400)  # not what the upload page sent
    mapping = _mapping_from(form, header, base)
    filename, update = form.filename.data or "upload", bool(form.update.data)
    source = "your choices on this page"
    if not form.submit.data:
        return _mapping_page(raw, filename, update, mapping, source)
    unanswered = [f"{q.column} '{q.written}'" for q in
                  csv_read.value_questions(csv_read.read_file(raw, mapping, check_header=False))
                  if q.code is None]
    if unanswered:
        return _mapping_page(raw, filename, update, mapping, source, asked=unanswered, status=422)
    outcome = _run_import(raw, filename, update, mapping, remember=True)
    if isinstance(outcome, csv_read.CsvImportError):
        return _mapping_page(raw, filename, update, mapping, source, refused=outcome, status=422)
    return outcome


@bp.route("/assets/import/jobs/<int:job_id>")
@require_permission(Permission.ASSET_MANAGE)
def import_job(job_id: int):
    """A large import running in the job worker: progress, then its result or its refused rows."""
    job = get_job(job_id)
    if job is None or job.kind != IMPORT_JOB or job.created_by_id != current_user.id:
        abort(404)
    result = job.result or {}
    if job.status == JobStatus.DONE and not result.get("refused"):
        message = f"Import done: {result['summary']}."
        if result.get("checks_queued"):
            message += f" Checking {result['checks_queued']} DICOM node(s) in the background."
        elif result.get("nodes"):
            message += f" The {result['nodes']} DICOM nodes will be checked by the next scheduled sweep."
        flash(message, "success")
        for warning in result.get("warnings", []):
            flash(warning, "warning")
        return redirect(url_for("inventory.asset_list"))
    return render_template("inventory/asset_import_job.html", job=job,
                           problems=[tuple(p) for p in result.get("problems", [])],
                           problem_count=result.get("problem_count", 0),
                           read_as=result.get("read_as", ""), warnings=result.get("warnings", []))
