"""The inventory's part of the reports: the inventory and verification PDF, its bulk exports."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, case, func, select

from audit.reports.charts import bar_chart
from audit.reports.registry import (
    Progress,
    ReportContent,
    ReportKind,
    ReportRequest,
)
from audit.reports.services import period_bounds, period_text
from audit.trail.models import ObjectChange
from core.auth.permissions import Permission
from core.extensions import db
from core.timeutil import format_local, to_local, utcnow
from inventory.forms import KIND_LABELS, STATUS_LABELS
from inventory.models import Asset, AssetKind, AssetStatus, Sanitisation
from inventory.verification.models import NodeCheck, NodeState, NodeStateName

WARRANTY_HORIZON_DAYS = 90
CHART_NODES = 30


def _fleet() -> tuple[list[str], list[dict[str, Any]], dict[str, int]]:
    """Assets by kind and status (all assets, as of generation)."""
    counts = {(k, s): n for k, s, n in db.session.execute(
        select(Asset.kind, Asset.status, func.count()).group_by(Asset.kind, Asset.status))}
    rows = []
    for kind in AssetKind:
        per = [counts.get((kind, s), 0) for s in AssetStatus]
        if sum(per):
            rows.append({"kind": KIND_LABELS[kind], "counts": per, "total": sum(per)})
    totals = {s.value: sum(counts.get((k, s), 0) for k in AssetKind) for s in AssetStatus}
    return [STATUS_LABELS[s] for s in AssetStatus], rows, totals


def _uptime(lo: Any, hi: Any) -> list[dict[str, Any]]:
    """Each DICOM node's checks in the period: answered share, failures by outcome, latency."""
    ok = func.sum(case((NodeCheck.outcome == "ok", 1), else_=0))
    rows = db.session.execute(
        select(Asset.id, Asset.asset_tag, Asset.name, Asset.ae_title, Asset.status,
               func.count(NodeCheck.id).label("checks"), ok.label("ok"),
               func.avg(case((NodeCheck.outcome == "ok", NodeCheck.latency_ms))).label("latency"),
               func.max(case((NodeCheck.outcome != "ok", NodeCheck.checked_at))).label("last_failure"))
        .join(NodeCheck, and_(NodeCheck.asset_id == Asset.id, NodeCheck.checked_at >= lo,
                              NodeCheck.checked_at < hi), isouter=True)
        .where(Asset.kind == AssetKind.DICOM_NODE)
        .group_by(Asset.id, Asset.asset_tag, Asset.name, Asset.ae_title, Asset.status)
        .order_by(Asset.asset_tag)).all()
    failures: dict[int, list[str]] = defaultdict(list)
    for asset_id, outcome, n in db.session.execute(
            select(NodeCheck.asset_id, NodeCheck.outcome, func.count())
            .where(NodeCheck.checked_at >= lo, NodeCheck.checked_at < hi, NodeCheck.outcome != "ok")
            .group_by(NodeCheck.asset_id, NodeCheck.outcome).order_by(func.count().desc())):
        failures[asset_id].append(f"{outcome.replace('_', ' ')} {n}")
    return [{"tag": r.asset_tag, "name": r.name, "ae": r.ae_title or "", "status": r.status,
             "checks": r.checks, "ok": r.ok or 0, "failed": r.checks - (r.ok or 0),
             "uptime": 100.0 * (r.ok or 0) / r.checks if r.checks else None,
             "latency": r.latency, "last_failure": format_local(r.last_failure),
             "failures": ", ".join(failures.get(r.id, []))} for r in rows]


def _down_now() -> list[Any]:
    """Nodes whose current state is down."""
    return list(db.session.execute(
        select(Asset.asset_tag, Asset.name, Asset.ae_title, Asset.hostname, Asset.ip_address, Asset.port,
               NodeState.down_since, NodeState.consecutive_failures, NodeState.last_ok_at)
        .join(NodeState, NodeState.asset_id == Asset.id)
        .where(NodeState.state == NodeStateName.DOWN).order_by(NodeState.down_since)))


def _warranties() -> list[Any]:
    """Assets in use whose warranty has ended or ends within the horizon."""
    today = to_local(utcnow()).date()
    return list(db.session.execute(
        select(Asset.asset_tag, Asset.name, Asset.kind, Asset.location, Asset.manufacturer, Asset.model,
               Asset.warranty_end)
        .where(Asset.warranty_end.is_not(None),
               Asset.warranty_end <= today + timedelta(days=WARRANTY_HORIZON_DAYS),
               Asset.status.not_in([AssetStatus.RETIRED, AssetStatus.DISPOSED]))
        .order_by(Asset.warranty_end, Asset.asset_tag)))


def _disposals(lo: Any, hi: Any) -> list[Any]:
    """Assets disposed of in the period, with their sanitisation record if one exists."""
    change = ObjectChange
    disposed = (select(change.object_id.label("asset_id"), func.max(change.changed_at).label("disposed_at"))
                .where(change.object_type == "asset", change.field == "status",
                       change.new_value == AssetStatus.DISPOSED,
                       change.changed_at >= lo, change.changed_at < hi)
                .group_by(change.object_id).subquery())
    return list(db.session.execute(
        select(Asset.asset_tag, Asset.name, Asset.kind, Asset.serial_number, Asset.holds_phi,
               disposed.c.disposed_at, Sanitisation.method, Sanitisation.performed_on,
               Sanitisation.performed_by, Sanitisation.witness, Sanitisation.certificate_ref)
        .join(disposed, disposed.c.asset_id == Asset.id)
        .join(Sanitisation, Sanitisation.asset_id == Asset.id, isouter=True)
        .order_by(disposed.c.disposed_at)))


def build_inventory(request: ReportRequest, progress: Progress) -> ReportContent:
    """The fleet, each DICOM node's availability in the period, and what needs attention."""
    assert request.start is not None and request.end is not None
    lo, hi = period_bounds(request.start, request.end)
    progress(10, "Assets by kind and status")
    statuses, fleet, status_totals = _fleet()
    progress(30, "DICOM node verification")
    nodes = _uptime(lo, hi)
    measured = [n for n in nodes if n["checks"]]
    worst = sorted(measured, key=lambda n: (n["uptime"], n["tag"]))[:CHART_NODES]
    chart = bar_chart([n["tag"] for n in worst], [("answered C-ECHO", [n["uptime"] for n in worst])],
                      title="Share of checks answered, by node (lowest first)", unit="%",
                      max_labels=CHART_NODES) if worst else None
    progress(60, "Nodes down, warranties, disposals")
    context = {
        "statuses": statuses, "fleet": fleet, "status_totals": status_totals,
        "asset_total": sum(status_totals.values()), "nodes": nodes, "measured": len(measured),
        "checks": sum(n["checks"] for n in nodes), "failed": sum(n["failed"] for n in nodes),
        "chart": chart, "down": _down_now(), "warranties": _warranties(),
        "horizon": WARRANTY_HORIZON_DAYS, "disposals": _disposals(lo, hi),
        "when": format_local, "kind_labels": KIND_LABELS, "today": to_local(utcnow()).date(),
    }
    return ReportContent("inventory.html", context, period_text(request.start, request.end))


EXPORT_ACTIONS = {"asset.export": "Asset list exported"}
REPORT_KIND = ReportKind(
    key="inventory", title="Inventory and verification report",
    description="Assets by kind and status, each DICOM node's availability and failures in the period, "
                "nodes down now, warranties ending, and disposals with their sanitisation records.",
    permission=Permission.REPORT_OPERATIONS, build=build_inventory, order=40,
)
