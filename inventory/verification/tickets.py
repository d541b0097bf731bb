"""Automatic help desk tickets for DICOM node outages: one per outage, closed on recovery."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from flask import current_app

from audit import record
from core.auth.models import Role
from core.mail.compose import Notice
from core.notifications import notify, users_with_roles
from core.timeutil import format_local
from helpdesk.models import Ticket
from helpdesk.services import (
    add_system_reply,
    find_open_system_ticket,
    open_system_ticket,
    resolve_system_ticket,
)
from inventory.models import Asset
from inventory.verification.models import NodeCheck, NodeState

NODE_DOWN = "inventory.node_down"
NODE_RECOVERED = "inventory.node_recovered"

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


def node_went_down(asset: Asset, state: NodeState, check: NodeCheck, *, announce: bool = True) -> Notice:
    """Audit the outage and open its ticket (never a second while one is open); tell technicians.

    With ``announce`` off the notice is returned unsent, for a sweep to tell as one outage.
    """
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
    notice = Notice(
        subject=f"DICOM node down: {asset.name} ({asset.asset_tag})", ticket=ticket.number,
        paragraphs=(f"{asset.name} ({asset.asset_tag}) did not answer C-ECHO {state.consecutive_failures} "
                    f"times in a row, failing since {format_local(state.down_since, '%Y-%m-%d %H:%M %Z')}.",
                    f"Ticket {ticket.number} was opened for the outage."),
        link_path=f"/tickets/{ticket.number}", link_label="Open the outage ticket")
    if announce:
        notify(NODE_DOWN, users_with_roles(Role.TECHNICIAN), notice)
    return notice


def node_recovered(asset: Asset, state: NodeState, check: NodeCheck,
                   down_since: datetime | None, *, announce: bool = True) -> Notice:
    """Audit the recovery, reply on the outage's ticket, resolve it when configured to; tell technicians.

    With ``announce`` off the notice is returned unsent, for a sweep to tell as one recovery.
    """
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
    notice = Notice(
        subject=f"DICOM node recovered: {asset.name} ({asset.asset_tag})",
        ticket=ticket.number if ticket is not None else None,
        paragraphs=(f"{asset.name} ({asset.asset_tag}) answers C-ECHO again since "
                    f"{format_local(check.checked_at, '%Y-%m-%d %H:%M %Z')}"
                    + (f", after {_duration(downtime)} of downtime." if downtime else "."),),
        link_path=f"/assets/{asset.asset_tag}", link_label="Open the node")
    if announce:
        notify(NODE_RECOVERED, users_with_roles(Role.TECHNICIAN), notice)
    return notice


def announce_sweep(down: Sequence[tuple[str, Notice]], recovered: Sequence[tuple[str, Notice]],
                   incident: Ticket | None) -> None:
    """Tell technicians what one sweep found: one notice per node, or one for many at once (by node name).

    Above ``PACSDESK_OUTAGE_GROUP_THRESHOLD`` nodes, the outage is one notice pointing to its
    incident ticket (one page for the on-call technician, not twelve), and so is the recovery.
    """
    threshold = current_app.config["PACSDESK_OUTAGE_GROUP_THRESHOLD"]
    technicians = users_with_roles(Role.TECHNICIAN)
    if len(down) > threshold:
        where = f"Incident {incident.number} groups their tickets." if incident is not None else ""
        notify(NODE_DOWN, technicians, Notice(
            subject=f"Outage: {len(down)} DICOM nodes down at once",
            ticket=incident.number if incident is not None else None,
            paragraphs=(f"{len(down)} DICOM nodes stopped answering C-ECHO in the same sweep: "
                        + ", ".join(sorted(node for node, _ in down)) + ".", where),
            link_path=f"/tickets/{incident.number}" if incident is not None else "/tickets",
            link_label="Open the incident" if incident is not None else "Open the queue"))
    else:
        for _, notice in down:
            notify(NODE_DOWN, technicians, notice)
    if len(recovered) > threshold:
        notify(NODE_RECOVERED, technicians, Notice(
            subject=f"{len(recovered)} DICOM nodes answer again",
            paragraphs=(f"{len(recovered)} DICOM nodes answer C-ECHO again after the same sweep: "
                        + ", ".join(sorted(node for node, _ in recovered)) + ".",),
            link_path="/assets?kind=dicom_node", link_label="Open the DICOM nodes"))
    else:
        for _, notice in recovered:
            notify(NODE_RECOVERED, technicians, notice)
