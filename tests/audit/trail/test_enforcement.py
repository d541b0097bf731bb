"""An audited model cannot change without its audit event, and history is written in one place."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import select, text, update

from audit import record
from audit.reports.models import ReportJob
from audit.retention.models import LegalHold, RetentionPolicy, RetentionRun
from audit.trail.enforcement import AuditMissing
from audit.trail.history import history_of
from audit.trail.models import AuditEvent
from audit.training.models import Course, TrainingAssignment, TrainingCompletion, TrainingSession
from core.auditing import AuditSpec
from core.auth.models import User
from core.extensions import Model, db
from helpdesk.models import (
    Category,
    LinkKind,
    Ticket,
    TicketAttachment,
    TicketComment,
    TicketFollower,
    TicketLink,
)
from inventory.models import Asset, Sanitisation
from inventory.studies.models import ArchiveSettings, ImagingRule, ReviewStatus, StudyReview, StudyReviewItem
from inventory.studies.rules import RuleKind
from tests.helpers import fixture_event, require_postgres

NOW = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def _saved(factory: Callable[[], Any]) -> Any:
    """A row from ``factory``, flushed with its fixture audit event (for rows others depend on)."""
    row = factory()
    db.session.add(row)
    db.session.flush()
    spec = type(row).__audit__
    fixture_event(spec.object_type, spec.object_id(row))
    return row


def _user() -> User:
    return User(username="fixture.user", role="technician", password_hash="x")


def _ticket() -> Ticket:
    category = db.session.execute(select(Category)).scalars().first()
    return Ticket(title="Viewer slow", description="d", category_id=category.id,
                  requester_id=_saved(_user).id)


def _comment() -> TicketComment:
    ticket = _saved(_ticket)
    return TicketComment(ticket_id=ticket.id, author_id=ticket.requester_id, body="hello")


def _attachment() -> TicketAttachment:
    return TicketAttachment(ticket_id=_saved(_ticket).id, filename="a.txt", content_type="text/plain",
                            size=1, sha256="0" * 64, data=b"a")


def _asset() -> Asset:
    return Asset(asset_tag="WS-ENF-1", name="Workstation")


def _sanitisation() -> Sanitisation:
    return Sanitisation(asset_id=_saved(_asset).id, method="purge", performed_on=date(2026, 5, 1),
                        performed_by="IT", witness="Sam")


def _course() -> Course:
    return Course(code="test-course", title="Test course")


def _assignment() -> TrainingAssignment:
    return TrainingAssignment(user_id=_saved(_user).id, course_id=_saved(_course).id, due_on=date(2026, 6, 1))


def _completion() -> TrainingCompletion:
    assignment = _saved(_assignment)
    return TrainingCompletion(assignment_id=assignment.id, user_id=assignment.user_id,
                              course_id=assignment.course_id, completed_on=date(2026, 5, 2), attestation="a",
                              attested_at=NOW, recorded_by_id=assignment.user_id)


def _session() -> TrainingSession:
    return TrainingSession(course_id=_saved(_course).id, completed_on=date(2026, 5, 2),
                           recorded_by_id=_saved(_user).id)


def _archive() -> ArchiveSettings:
    return ArchiveSettings(asset_id=_saved(_asset).id)


def _review() -> StudyReview:
    return StudyReview(asset_id=_saved(_asset).id)


def _review_item() -> StudyReviewItem:
    return StudyReviewItem(review_id=_saved(_review).id, study_uid="1.2.3", study_date=date(2001, 1, 1),
                           rule="Adults", anchor_date=date(2001, 1, 1), keep_until=date(2008, 1, 1))


def _link() -> TicketLink:
    first = _saved(_ticket)
    second = _saved(lambda: Ticket(title="Also slow", description="d", category_id=first.category_id,
                                   requester_id=first.requester_id))
    return TicketLink(ticket_id=first.id, other_id=second.id, kind=LinkKind.RELATED)


def _follower() -> TicketFollower:
    ticket = _saved(_ticket)
    return TicketFollower(ticket_id=ticket.id, user_id=ticket.requester_id)


def _hold() -> LegalHold:
    return LegalHold(reason="litigation", placed_by_id=_saved(_user).id, record_class="closed_tickets")


# Every audited model, with a factory for a valid row and an attribute to change behind the service's back.
AUDITED: dict[type, tuple[Callable[[], Any], str, Any]] = {
    Ticket: (_ticket, "status", "closed"),
    TicketComment: (_comment, "body", "edited afterwards"),
    TicketAttachment: (_attachment, "filename", "b.txt"),
    Asset: (_asset, "location", "Basement"),
    Sanitisation: (_sanitisation, "witness", "nobody"),
    User: (_user, "role", "admin"),
    RetentionPolicy: (lambda: RetentionPolicy(record_class="test_class", years=7, anchor="created"),
                      "years", 1),
    LegalHold: (_hold, "reason", "no reason"),
    RetentionRun: (lambda: RetentionRun(started_by="tester", status="completed"), "status", "failed"),
    Course: (_course, "title", "Renamed"),
    TrainingAssignment: (_assignment, "due_on", date(2030, 1, 1)),
    TrainingCompletion: (_completion, "score", 100),
    TrainingSession: (_session, "trainer", "Someone else"),
    ReportJob: (lambda: ReportJob(kind="access-audit", params="{}"), "params", '{"from": "1999-01-01"}'),
    ImagingRule: (lambda: ImagingRule(name="Test rule", kind=RuleKind.PERIOD, modality="XA", period="P7Y"),
                  "period", "P1Y"),
    ArchiveSettings: (_archive, "orthanc_url", "http://127.0.0.1:9/"),
    StudyReview: (_review, "status", ReviewStatus.APPROVED),
    StudyReviewItem: (_review_item, "approved", True),
    TicketLink: (_link, "kind", LinkKind.DUPLICATE),
    TicketFollower: (_follower, "created_at", NOW),
}


def _audited_models() -> set[type]:
    return {m.class_ for m in Model.registry.mappers
            if isinstance(getattr(m.class_, "__audit__", None), AuditSpec)}


def test_every_audited_model_is_covered_by_these_tests(app):
    assert _audited_models() == set(AUDITED)


def _created(app, model: type) -> Any:
    """A committed row of ``model`` (its fixture audited), returned as its primary key."""
    with app.app_context():
        row = _saved(AUDITED[model][0])
        db.session.commit()
        (key,) = db.session.identity_key(instance=row)[1]
        return key


@pytest.mark.parametrize("model", list(AUDITED), ids=lambda m: m.__name__)
def test_a_change_without_its_audit_event_is_refused_and_rolled_back(app, model):
    _factory, attribute, value = AUDITED[model]
    key = _created(app, model)
    with app.app_context():
        row = db.session.get(model, key)
        before = getattr(row, attribute)
        setattr(row, attribute, value)
        with pytest.raises(AuditMissing, match="without an audit event"):
            db.session.commit()
        db.session.rollback()
        assert getattr(db.session.get(model, key), attribute) == before
    with app.app_context():
        db.session.delete(db.session.get(model, key))
        with pytest.raises(AuditMissing, match="deleted"):
            db.session.commit()
        db.session.rollback()
        assert db.session.get(model, key) is not None


@pytest.mark.parametrize("model", list(AUDITED), ids=lambda m: m.__name__)
def test_a_new_row_without_its_audit_event_is_refused(app, model):
    factory = AUDITED[model][0]
    with app.app_context():
        row = factory()
        db.session.commit()  # what the row depends on, with its own events
        before = db.session.query(model).count()
        db.session.add(row)
        with pytest.raises(AuditMissing, match="created"):
            db.session.commit()
        db.session.rollback()
        assert db.session.query(model).count() == before


def test_a_bulk_statement_needs_an_event_about_that_kind_of_record(app):
    _created(app, Asset)
    with app.app_context():
        db.session.execute(update(Asset).values(location="Everywhere"))
        with pytest.raises(AuditMissing, match="bulk change of asset records"):
            db.session.commit()
        db.session.rollback()
        db.session.execute(update(Asset).values(location="Everywhere"))
        record("test.fixture", object_type="asset", details={"bulk": True})
        db.session.commit()
        assert db.session.scalar(select(Asset.location)) == "Everywhere"


@pytest.mark.postgres
def test_on_postgresql_a_bulk_statement_on_an_audited_table_waits_for_the_chain_first(app):
    # The chain's lock, then rows: the order a flush keeps, so two writers never wait on each other.
    require_postgres()
    _created(app, Asset)
    with app.app_context():
        db.session.execute(update(Asset).values(location="Everywhere"))
        with db.engine.connect() as other:
            held = other.scalar(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                                     "AND pid <> pg_backend_pid()"))
        db.session.rollback()
    assert held == 1


def test_an_event_about_another_object_does_not_cover_a_change(app):
    key = _created(app, Asset)
    with app.app_context():
        db.session.get(Asset, key).location = "Room 9"
        record("test.fixture", object_type="asset", object_id="SOME-OTHER-TAG")
        with pytest.raises(AuditMissing):
            db.session.commit()
        db.session.rollback()


def test_bookkeeping_needs_no_event_and_history_follows_the_events_user(app, make_user):
    officer = make_user("compliance", "privacy")
    report = _created(app, ReportJob)
    asset = _created(app, Asset)
    with app.app_context():
        db.session.get(ReportJob, report).progress = 40
        db.session.commit()
        db.session.get(Asset, asset).location = "Room 9"
        record("test.fixture", object_type="asset", object_id="WS-ENF-1",
               user=db.session.get(User, officer.id))
        db.session.commit()
        lines = history_of("asset", asset)
        assert [(c.field, c.old_value, c.new_value) for c in lines][-1] == ("location", "", "Room 9")
        assert lines[-1].user_id == officer.id
        assert lines[0].field == "created" and lines[0].new_value == "WS-ENF-1"
        events = db.session.execute(select(AuditEvent.action)).scalars().all()
        assert events.count("test.fixture") >= 2
