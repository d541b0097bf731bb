"""Demo tickets: a believable week of a PACS team's help desk, in every status."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import select

from audit.trail.models import ObjectChange
from core.demo import DemoContext
from core.extensions import db
from core.timeutil import utcnow
from helpdesk import services, sla
from helpdesk.models import Category, Ticket, TicketComment, TicketStatus

# title, description, category code, impact, urgency, requester, phi
SCENARIOS = (
    ("Priors missing for CT chest, reading room 2",
     "Comparison CT from March does not show in the viewer for this patient.\n"
     "Other patients' priors load fine.", "priors_missing", "one", "hours", "dr.okafor", True),
    ("MR knee study not arriving in PACS",
     "Sent from MR2 twenty minutes ago, the modality says 'sent' but the worklist in PACS is empty.",
     "study_not_arriving", "many", "now", "mr.tech.chen", True),
    ("Patient not on CT worklist",
     "Registration done at the front desk 10 minutes ago, patient not on the CT1 worklist.",
     "worklist", "one", "now", "ct.tech.mora", True),
    ("Viewer freezes when opening mammo tomosynthesis",
     "The viewer hangs for about a minute when scrolling DBT slices on workstation RR-3.",
     "viewer_workstation", "one", "hours", "dr.lindqvist", False),
    ("Locked out after password change", "I changed my password this morning and now the "
     "viewer says my account is locked.", "login_access", "one", "now", "dr.lindqvist", False),
    ("Reports not reaching the EHR",
     "Signed reports since 07:30 do not appear in the patient chart. ED is asking.",
     "report_interface", "many", "now", "ed.nurse.brown", False),
    ("Outside CD will not import",
     "Patient brought a CD from an outside hospital; the import station says 'no DICOMDIR'.",
     "media_cd_print", "one", "today", "clerk.patel", True),
    ("Second monitor flickering on reading station 4",
     "Right-hand diagnostic monitor flickers every few seconds.", "hardware", "one", "today",
     "dr.okafor", False),
    ("Need access to the teaching file folder", "Please give me access to the teaching file "
     "share for the residents' conference.", "login_access", "minor", "later", "dr.okafor", False),
    ("CD burner in ED jams", "The disc robot in ED jams on every second disc.",
     "media_cd_print", "one", "today", "ed.nurse.brown", False),
    ("Wrong patient name on worklist entry",
     "Name on the US worklist does not match the order; I stopped and did not scan.",
     "worklist", "one", "now", "clerk.patel", True),
    ("Hanging protocol lost after update",
     "My chest hanging protocol is gone since the viewer update last night.",
     "viewer_workstation", "one", "later", "dr.lindqvist", False),
)
FLOWS = ("new", "open", "waiting", "resolved", "closed", "open", "closed", "resolved", "new",
         "waiting", "closed", "open")
REPLIES = {
    "open": "Looking at it now. Can you tell me the accession number if you have it?",
    "waiting": "Can you send a screenshot of the error and the workstation name?",
    "resolved": "Fixed: the study was stuck in the router queue and has been resent. "
                "Please check and reopen if anything is still missing.",
    "internal": "Router log shows association rejects from MR2 between 08:10 and 08:40.",
}


class _Story:
    """Replays one ticket's steps in the past: each step's rows get the story's own clock."""

    def __init__(self, ticket: Ticket, created: datetime, step: timedelta, real_now: datetime) -> None:
        self.ticket, self.moment, self.step, self.real_now = ticket, created, step, real_now
        ticket.created_at = ticket.updated_at = created

    def stamp(self) -> None:
        """Move the rows and dates the last service call wrote (at the real time) to the story's time."""
        self.moment += self.step
        ticket = self.ticket
        for comment in db.session.execute(select(TicketComment).where(
                TicketComment.ticket_id == ticket.id, TicketComment.created_at >= self.real_now)).scalars():
            comment.created_at = self.moment
        for change in db.session.execute(select(ObjectChange).where(
                ObjectChange.object_type == "ticket", ObjectChange.object_id == ticket.id,
                ObjectChange.changed_at >= self.real_now)).scalars():
            change.changed_at = self.moment
        for field in ("first_responded_at", "waiting_since", "resolved_at", "closed_at", "updated_at"):
            value = getattr(ticket, field)
            if value is not None and value >= self.real_now:
                setattr(ticket, field, self.moment)

    def finish(self) -> None:
        """Recompute the service level from the story's dates."""
        self.ticket.paused_seconds = 0
        sla.apply_sla(self.ticket)
        db.session.flush()


def seed_tickets(ctx: DemoContext) -> None:
    """Add about forty tickets across every status, with replies, notes and history."""
    users = ctx.users
    technicians = [users[name] for name in ("pacs.sam", "pacs.noor", "it.kim") if name in users]
    categories = {c.code: c.id for c in db.session.execute(select(Category)).scalars()}
    now = utcnow()
    count = 0
    for round_ in range(3):
        for index, (title, text, code, impact, urgency, who, phi) in enumerate(SCENARIOS):
            flow = FLOWS[(index + round_ * 5) % len(FLOWS)]
            requester = users[who]
            tech = ctx.rng.choice(technicians)
            age_hours = {"new": ctx.rng.uniform(0.1, 5), "open": ctx.rng.uniform(1, 30),
                         "waiting": ctx.rng.uniform(3, 48), "resolved": ctx.rng.uniform(12, 100),
                         "closed": ctx.rng.uniform(200, 600)}[flow]
            ticket = services.create_ticket(services.NewTicket(
                title=title, description=text, category_id=categories[code], impact=impact,
                urgency=urgency, location=ctx.rng.choice(["Reading room 2", "CT1", "MR2", "ED",
                                                          "Front desk", "Reading room 4"]),
                callback_phone=f"x{ctx.rng.randint(2000, 4999)}",
                accession_number=f"ACC{ctx.rng.randint(10**7, 10**8 - 1)}" if phi else "",
                patient_id=f"MRN{ctx.rng.randint(10**6, 10**7 - 1)}" if phi else ""), requester)
            created = now - timedelta(hours=age_hours)
            step = min(timedelta(hours=age_hours) / 8, timedelta(minutes=20))
            story = _Story(ticket, created, step, now)
            steps: list[Callable[[], object]] = []
            if flow != "new":
                steps.append(partial(services.update_ticket, ticket, tech, assignee_id=tech.id))
                steps.append(partial(services.add_reply, ticket, tech,
                                     REPLIES["waiting" if flow == "waiting" else "open"]))
                if ctx.rng.random() < 0.5:
                    steps.append(partial(services.add_reply, ticket, tech, REPLIES["internal"],
                                         internal=True))
            if flow == "waiting":
                steps.append(partial(services.update_ticket, ticket, tech, status=TicketStatus.WAITING))
            if flow in ("resolved", "closed"):
                steps.append(partial(services.add_reply, ticket, requester,
                                     "Thanks, here is what I see now."))
                steps.append(partial(services.add_reply, ticket, tech, REPLIES["resolved"]))
                steps.append(partial(services.update_ticket, ticket, tech, status=TicketStatus.RESOLVED))
            if flow == "closed":
                steps.append(partial(services.update_ticket, ticket, tech, status=TicketStatus.CLOSED))
            for advance in steps:
                advance()
                db.session.flush()
                story.stamp()
            story.finish()
            count += 1
    node = services.open_system_ticket(
        "demo:dicom-node:MR2", "DICOM node MR2_SIEMENS does not answer C-ECHO",
        "Two consecutive verification checks failed: TCP connection refused on port 104.")
    services.add_system_reply(node, "Still not answering at the latest check.")
    db.session.flush()
    ctx.notes.append(f"Help desk: {count + 1} demo tickets in every status (numbers PD-000001 on).")
