"""Automatic help desk tickets for DICOM node outages: one per outage, closed on recovery."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app

from audit import record
from core.auth.models import Role
from core.mail.compose import Notice
from core.notifications import notify, users_with_roles
from core.timeutil import format_local
from helpdesk.services import (
    add_system_reply,
    find_open_system_ticket,
    open_system_ticket,
    resolve_system_ticket,
)
from inventory.models import Asset
from inventory.verification.models import NodeCheck, NodeState

# Audit actions recorded here (registered by the package's init_app).
AUDIT_ACTIONS = {
    "node.down": "DICOM node went down",
    "node.recovered": "DICOM node recovered",
}


def _duration(delta: timedelta) -> str:
    """A duration in words: '2 h 05 min', '3 min 20 s'."""
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h {minutes:02d} min"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def ticket_key(asset_id: int) -> str:
    """De-duplication key of a node's automatic ticket."""
    return f"node-down:{asset_id}"


def node_went_down(asset: Asset, state: NodeState, check: NodeCheck) -> None:
    """Audit the outage and open its ticket (never a second while one is open)."""
    description = (
        f"PACS Desk could not verify DICOM node {asset.name} ({asset.asset_tag}) by C-ECHO "
        f"{state.consecutive_failures} times in a row.\n\n"
        f"Address: {asset.host}:{asset.port}, AE title {asset.ae_title}"
        f"{', TLS' if asset.tls else ''}\n"
        f"Location: {asset.location or 'not recorded'}\n"
        f"Failing since: {format_local(state.down_since, '%Y-%m-%d %H:%M:%S %Z')}\n"
        f"Last failure ({format_local(check.checked_at, '%Y-%m-%d %H:%M:%S %Z')}): "
        f"{check.outcome}: {check.detail}"
    )
    ticket = open_system_ticket(ticket_key(asset.id), f"DICOM node down: {asset.name} "
                                f"({asset.asset_tag})", description,
                                category_code="dicom_node_down", priority="P2", asset_id=asset.id)
    state.open_ticket_id = ticket.id
    record("node.down", object_type="asset", object_id=asset.asset_tag, user=None,
           client_address=None,
           details={"down_since": state.down_since, "failures": state.consecutive_failures,
                    "outcome": check.outcome, "detail": check.detail,
                    "ticket": getattr(ticket, "number", ticket.id)})
    notify("inventory.node_down", users_with_roles(Role.TECHNICIAN), Notice(
        subject=f"DICOM node down: {asset.name} ({asset.asset_tag})", ticket=ticket.number,
        paragraphs=(f"{asset.name} ({asset.asset_tag}) did not answer C-ECHO {state.consecutive_failures} "
                    f"times in a row, failing since {format_local(state.down_since, '%Y-%m-%d %H:%M %Z')}.",
                    f"Ticket {ticket.number} was opened for the outage."),
        link_path=f"/tickets/{ticket.number}", link_label="Open the outage ticket"))


def node_recovered(asset: Asset, state: NodeState, check: NodeCheck,
                    down_since: datetime | None) -> None:
    """Audit the recovery, reply on the outage's ticket, resolve it when configured to."""
    downtime = check.checked_at - down_since if down_since else None
    body = (f"{asset.name} ({asset.asset_tag}) answers C-ECHO again: recovered at "
            f"{format_local(check.checked_at, '%Y-%m-%d %H:%M:%S %Z')}"
            + (f" after {_duration(downtime)} of downtime (failing since "
               f"{format_local(down_since, '%Y-%m-%d %H:%M:%S %Z')})" if downtime else "")
            + f". {check.detail}.")
    ticket = find_open_system_ticket(ticket_key(asset.id))
    if ticket is not None:
        if current_app.config["PACSDESK_AUTO_RESOLVE"]:
            resolve_system_ticket(ticket, body)
        else:
            add_system_reply(ticket, body)
    state.open_ticket_id = None
    record("node.recovered", object_type="asset", object_id=asset.asset_tag, user=None,
           client_address=None,
           details={"down_since": down_since,
                    "downtime_seconds": int(downtime.total_seconds()) if downtime else None,
                    "ticket": getattr(ticket, "number", None)})
    notify("inventory.node_recovered", users_with_roles(Role.TECHNICIAN), Notice(
        subject=f"DICOM node recovered: {asset.name} ({asset.asset_tag})",
        ticket=ticket.number if ticket is not None else None,
        paragraphs=(f"{asset.name} ({asset.asset_tag}) answers C-ECHO again since "
                    f"{format_local(check.checked_at, '%Y-%m-%d %H:%M %Z')}"
                    + (f", after {_duration(downtime)} of downtime." if downtime else "."),),
        link_path=f"/assets/{asset.asset_tag}", link_label="Open the node"))
