"""`pacsdesk studies rules|rule-set|review` with a real database and a real Orthanc."""

from __future__ import annotations

import json
from datetime import date

import pytest

from audit.trail.models import AuditEvent
from core.extensions import db
from inventory.studies.models import ImagingRule, StudyReview
from inventory.studies.query import study_exists
from inventory.studies.rules import Anchor, RuleKind
from tests.inventory.studies.review_support import add_archive, spec

U = "1.2.826.0.1.3680043.10.544."
OLD = spec(U + "1", date(2011, 4, 2), "PAT-OLD-7788")
NEW = spec(U + "2", date(2025, 4, 2), "PAT-NEW-1234")
NO_BIRTH = spec(U + "3", date(2010, 1, 5), "PAT-NB-4455", birth="")


def test_rules_lists_the_seeded_defaults_with_their_sources(runner):
    result = runner.invoke(args=["studies", "rules"])
    assert result.exit_code == 0, result.output
    assert "P7Y" in result.output and "P10Y" in result.output and "minors until 18" in result.output
    assert "21 CFR 900.12(c)(4)" in result.output
    assert result.output.count("Check your state's law") == 3


def test_rule_set_stores_an_anchored_rule_and_a_minors_rule(app, runner):
    assert runner.invoke(args=["studies", "rule-set", "ct", "P10Y", "--anchor", "last-study"]).exit_code == 0
    result = runner.invoke(args=["studies", "rule-set", "ALL", "P2Y", "--minors-until", "21"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        rows = {(r.kind, r.modality): r for r in db.session.scalars(db.select(ImagingRule))}
        assert rows[(RuleKind.PERIOD, "CT")].anchor is Anchor.LAST_STUDY
        assert rows[(RuleKind.PERIOD, "CT")].period == "P10Y"
        assert rows[(RuleKind.MINOR, "")].majority_age == 21 and rows[(RuleKind.MINOR, "")].period == "P2Y"
        actions = db.session.scalars(db.select(AuditEvent.action)).all()
        assert actions.count("studies.rule_set") == 2


@pytest.mark.parametrize(("args", "message"), [
    (["CT", "7 years"], "period: '7 years' is not an ISO-8601 duration"),
    (["CT", "P0Y"], "period: a period of zero"),
    (["CT", "PT5H"], "hours, minutes or seconds"),
    (["C/T", "P7Y"], "modality: 'C/T' is not a DICOM modality code"),
    (["CT", "P7Y", "--anchor", "birth"], "anchor: must be study or last-study"),
    (["CT", "P7Y", "--minors-until", "45"], "minors-until: must be a whole number of years from 1 to 30"),
    (["MG", "P5Y", "--anchor", "last-study"], "anchor: the mammography rule"),
])
def test_rule_set_refuses_bad_input_naming_the_argument_and_changes_nothing(app, runner, args, message):
    result = runner.invoke(args=["studies", "rule-set", *args])
    assert result.exit_code == 2
    assert message in result.output
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(ImagingRule)) == 3


@pytest.mark.integration
def test_review_prints_each_study_past_retention_with_its_rule_and_deletes_nothing(app, runner, orthanc):
    server = orthanc(limit=2)
    server.store(ds for s in (OLD, NEW, NO_BIRTH) for ds in s.datasets())
    add_archive(app, server.port, find_limit=2)
    result = runner.invoke(args=["studies", "review", "--archive", "PACS-01"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith(U)]
    assert sorted(line.split()[0] for line in lines) == [OLD.study_uid, NO_BIRTH.study_uid]
    assert all("rule: All modalities" in line or "rule: Adults" in line for line in lines)
    assert "adult (no birth date)" in next(line for line in lines if line.startswith(NO_BIRTH.study_uid))
    assert "3 studies on PACS-01: 2 past retention" in result.output
    assert "PAT-OLD-7788" not in result.output
    for study in (OLD, NEW, NO_BIRTH):
        assert study_exists(server.archive(), study.study_uid)
    with app.app_context():
        assert db.session.scalars(db.select(StudyReview)).all() == []
        assert "studies.listed_cli" in db.session.scalars(db.select(AuditEvent.action)).all()

    as_json = runner.invoke(args=["studies", "review", "--archive", "PACS-01", "--json"])
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.stdout)
    assert document["past_retention"] == 2 and document["studies_seen"] == 3
    old = next(s for s in document["studies"] if s["study_uid"] == OLD.study_uid)
    assert old["patient_id"] == "•••7788" and old["anchor_date"] == "2011-04-02" and old["age"] == 51
    assert old["keep_until"] == "2018-04-02" and old["rule"].startswith("Adults")


def test_review_of_an_unknown_or_non_archive_node_is_refused(app, runner):
    result = runner.invoke(args=["studies", "review", "--archive", "NOPE-1"])
    assert result.exit_code == 2 and "archive: there is no asset tagged 'NOPE-1'" in result.output


@pytest.mark.integration
def test_review_of_an_archive_that_does_not_answer_fails_clearly(app, runner, closed_port):
    add_archive(app, closed_port, timeout=1)
    result = runner.invoke(args=["studies", "review", "--archive", "PACS-01"])
    assert result.exit_code == 2
    assert "no TCP connection" in result.output
