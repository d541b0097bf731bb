"""What people see of verification: the node page's summary and the dashboard panel."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from markupsafe import Markup
from sqlalchemy import case, func, select

from core.auth.permissions import Permission
from core.extensions import db
from core.navigation import DashboardPanel
from core.timeutil import utcnow
from inventory.models import Asset, AssetKind, AssetStatus
from inventory.verification.charts import node_chart_svg
from inventory.verification.dicom import Outcome
from inventory.verification.models import NodeCheck, NodeState, NodeStateName

RECENT_CHECKS = 20
UPTIME_WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
INACTIVE_STATUSES = (AssetStatus.RETIRED, AssetStatus.DISPOSED)


def verifiable_nodes() -> list[Asset]:
    """DICOM nodes that the sweep checks: enabled and not retired or disposed."""
    return list(db.session.execute(
        select(Asset).where(Asset.kind == AssetKind.DICOM_NODE,
                            Asset.verify_enabled.is_(True),
                            Asset.status.not_in(INACTIVE_STATUSES))
        .order_by(Asset.asset_tag)
    ).scalars())


@dataclass(frozen=True)
class NodeSummary:
    """A node's verification at a glance: state, last checks, uptime, chart."""

    state: NodeStateName
    node_state: NodeState | None
    last_check: NodeCheck | None
    recent: list[NodeCheck]
    uptime: dict[str, float | None]
    chart_svg: Markup
    chart_range: str = "24h"


def uptime_percentages(asset_id: int, now: datetime | None = None) -> dict[str, float | None]:
    """Share of successful checks over 24 h, 7 d and 30 d (None when there was no check)."""
    now = now or utcnow()
    ok = func.sum(case((NodeCheck.outcome == Outcome.OK, 1), else_=0))
    result: dict[str, float | None] = {}
    for label, span in UPTIME_WINDOWS.items():
        total, good = db.session.execute(
            select(func.count(NodeCheck.id), ok).where(NodeCheck.asset_id == asset_id,
                                                       NodeCheck.checked_at >= now - span)
        ).one()
        result[label] = round(100.0 * (good or 0) / total, 2) if total else None
    return result


CHART_RANGES = UPTIME_WINDOWS  # the chart's periods are the uptime's


def node_summary(asset: Asset, chart_range: str = "24h") -> NodeSummary:
    """What the node page shows about ``asset``'s verification, the chart over ``chart_range``."""
    span = CHART_RANGES.get(chart_range, CHART_RANGES["24h"])
    now = utcnow()
    node_state = db.session.get(NodeState, asset.id)
    recent = list(db.session.execute(
        select(NodeCheck).where(NodeCheck.asset_id == asset.id)
        .order_by(NodeCheck.checked_at.desc(), NodeCheck.id.desc()).limit(RECENT_CHECKS)
    ).scalars())
    day = list(db.session.execute(
        select(NodeCheck.checked_at, NodeCheck.latency_ms, NodeCheck.outcome)
        .where(NodeCheck.asset_id == asset.id, NodeCheck.checked_at >= now - span)
        .order_by(NodeCheck.checked_at)
    ).all())
    state = NodeStateName(node_state.state) if node_state else NodeStateName.UNKNOWN
    chart = node_chart_svg([(at, latency, outcome == Outcome.OK) for at, latency, outcome in day],
                           end=now, span=span,
                           threshold_ms=current_app.config["PACSDESK_DEGRADED_LATENCY_MS"])
    return NodeSummary(state=state, node_state=node_state, last_check=recent[0] if recent else None,
                       recent=recent, uptime=uptime_percentages(asset.id, now), chart_svg=chart,
                       chart_range=chart_range if chart_range in CHART_RANGES else "24h")


def node_state_counts() -> dict[str, Any]:
    """For the dashboard: nodes per state, and the ones down or degraded."""
    nodes = verifiable_nodes()
    states = {s.asset_id: s for s in db.session.execute(select(NodeState)).scalars()}
    counts = Counter(states[n.id].state if n.id in states else NodeStateName.UNKNOWN
                     for n in nodes)
    troubled = [(n, states[n.id]) for n in nodes if n.id in states
                and states[n.id].state in (NodeStateName.DOWN, NodeStateName.DEGRADED)]
    troubled.sort(key=lambda pair: (pair[1].state != NodeStateName.DOWN, pair[0].asset_tag))
    return {"total": len(nodes), "counts": {s.value: counts[s] for s in NodeStateName},
            "troubled": troubled[:10], "more": max(len(troubled) - 10, 0)}


DASHBOARD_PANEL = DashboardPanel("inventory/_dashboard_nodes.html", Permission.ASSET_READ, 30,
                                        node_state_counts)
