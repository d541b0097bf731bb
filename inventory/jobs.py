"""Inventory jobs: the C-ECHO sweep of every enabled DICOM node, and one node's check."""

from __future__ import annotations

import base64
from typing import Any

from flask import Flask, current_app

from core.auth.models import User
from core.database import commit_keeping_loaded
from core.extensions import db
from core.jobs.registry import JobContext
from core.jobs.worker import Cancelled
from inventory import csv_io, csv_read, services
from inventory.csv_mapping import Mapping
from inventory.models import Asset
from inventory.services import VERIFY_JOB  # noqa: F401 - the kind the inventory's init_app registers
from inventory.verification.models import CheckTrigger
from inventory.verification.services import SweepCancelled, VerificationError, sweep, verify_asset

SWEEP_JOB = "inventory.sweep"
# Beyond this many nodes in one import, the scheduled sweep checks them rather than one by one.
MAX_CHECKS_AFTER_IMPORT = 500


def sweep_interval(app: Flask) -> float:
    """Seconds between sweeps (PACSDESK_VERIFY_INTERVAL)."""
    return float(app.config["PACSDESK_VERIFY_INTERVAL"])


def sweep_job(ctx: JobContext) -> dict[str, Any]:
    """Sweep all nodes (each batch committed and audited) and log what changed."""
    try:
        result = sweep(progress=ctx.progress, cancelled=ctx.cancel_requested)
    except SweepCancelled as stopped:
        raise Cancelled(str(stopped)) from None
    current_app.logger.info(
        "C-ECHO sweep: %d nodes, %d ok, %d failed, %d skipped in %.1f s; down: %s; recovered: %s",
        len(result.results), result.ok, result.failed, len(result.skipped), result.seconds,
        ", ".join(result.went_down) or "none", ", ".join(result.recovered) or "none")
    return {"nodes": len(result.results), "ok": result.ok, "failed": result.failed,
            "went_down": result.went_down, "recovered": result.recovered, "seconds": result.seconds}


def verify_node_job(ctx: JobContext) -> dict[str, Any]:
    """One node's C-ECHO, asked for by "Verify now" or a save (commits)."""
    asset = db.session.get(Asset, int(ctx.params["asset_id"]))
    if asset is None:
        return {"skipped": "the asset no longer exists"}
    user = db.session.get(User, ctx.user_id) if ctx.user_id is not None else None
    try:
        check = verify_asset(asset, str(ctx.params.get("trigger", "manual")), user=user,
                             client_address=ctx.params.get("client_address"))
    except VerificationError as exc:
        return {"skipped": str(exc)}
    db.session.commit()
    return {"asset": asset.asset_tag, "outcome": check.outcome, "latency_ms": check.latency_ms}


IMPORT_JOB = "inventory.import"


def import_job(ctx: JobContext) -> dict[str, Any]:
    """Import a large CSV file: every row checked, then written in parts (commits); refusals name lines."""
    user = db.session.get(User, ctx.user_id) if ctx.user_id is not None else None
    raw = base64.b64decode(ctx.params["data"])
    ctx.progress(10, "Checking every row")
    mapping = Mapping.from_json(ctx.params["mapping"]) if ctx.params.get("mapping") else None

    def between(written: int, total: int) -> None:
        """A part is written: commit it, then show how far the import got."""
        commit_keeping_loaded()
        ctx.progress(10 + 85 * written // total, f"Imported {written:,} of {total:,} rows")

    try:
        result = csv_io.import_assets(raw, update=bool(ctx.params.get("update")), user=user,
                                      source=str(ctx.params.get("source", "upload")),
                                      username=None if user else "import", mapping=mapping,
                                      remember=bool(ctx.params.get("remember")), between=between)
    except csv_read.CsvImportError as refused:
        db.session.rollback()
        return {"refused": True, "problems": refused.problems[:500], "problem_count": len(refused.problems),
                "read_as": refused.read_as, "warnings": refused.warnings}
    queued = services.request_checks(result.verify_ids[:MAX_CHECKS_AFTER_IMPORT], CheckTrigger.SAVE,
                                     user=user) if len(result.verify_ids) <= MAX_CHECKS_AFTER_IMPORT else []
    db.session.commit()
    return {"refused": False, "summary": result.summary(), "checks_queued": len(queued),
            "nodes": len(result.verify_ids), "warnings": result.warnings[:50]}
