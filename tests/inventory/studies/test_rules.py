"""Imaging retention rules: periods, minors, mammography, holds, and what is never destroyed."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
import time_machine

from inventory.studies.records import Problem, StudyRecord
from inventory.studies.rules import (
    CHECK_STATE_LAW,
    DEFAULT_RULES,
    FLAG_TEXT,
    Anchor,
    Flag,
    Hold,
    Period,
    Rule,
    RuleError,
    RuleKind,
    evaluate,
)

ADULTS = Rule("Adults 7 years", RuleKind.PERIOD, Period(years=7))
MINORS = Rule("Minors 18 + 3 years", RuleKind.MINOR, Period(years=3), majority_age=18)
MAMMO = Rule("Mammography 10 years", RuleKind.MAMMOGRAPHY, Period(years=10))
RULES = (ADULTS, MINORS, MAMMO)
_uids = iter(range(1, 1_000_000))


def study(day: date | None, patient: str = "PAT1", birth: date | None = date(1970, 1, 1),
          modalities: tuple[str, ...] = ("CT",), accession: str = "", uid: str | None = None,
          problems: tuple[Problem, ...] = ()) -> StudyRecord:
    """A study record as the listing would return it."""
    return StudyRecord(uid or f"1.2.826.0.1.3680043.13.{next(_uids)}", day, patient, birth, "F", modalities,
                       accession, 1, "", problems=problems)


def today() -> date:
    """The frozen clock's date."""
    return date.today()


def frozen(day: date) -> time_machine.travel:
    """Freeze the clock at noon UTC on ``day``."""
    return time_machine.travel(datetime(day.year, day.month, day.day, 12), tick=False)


@pytest.mark.parametrize(("text", "period"), [
    ("P7Y", Period(7)), ("P10Y6M", Period(10, 6)), ("P30D", Period(days=30)), ("P2W", Period(days=14)),
    (" p1y2m3d ", Period(1, 2, 3)),
])
def test_iso_8601_periods_are_read(text, period):
    assert Period.parse(text) == period


@pytest.mark.parametrize(("text", "message"), [
    ("7Y", "not an ISO-8601 duration"), ("P", "not an ISO-8601 duration"), ("P1.5Y", "not an ISO-8601"),
    ("-P1Y", "not an ISO-8601"), ("PT12H", "hours, minutes or seconds"), ("P1DT1H", "hours, minutes"),
    ("P0D", "zero"), ("P0Y0M", "zero"), ("P101Y", "longer than 100 years"), ("", "not an ISO-8601"),
])
def test_bad_periods_are_refused_naming_the_field(text, message):
    with pytest.raises(RuleError, match=message) as caught:
        Period.parse(text, field="adult_period")
    assert str(caught.value).startswith("adult_period: ")


def test_a_period_reads_back_as_iso_and_as_words():
    period = Period.parse("P10Y6M")
    assert str(period) == "P10Y6M"
    assert period.text == "10 years 6 months"


def test_adding_years_to_the_29th_of_february_lands_on_the_28th():
    assert Period(years=1).after(date(2024, 2, 29)) == date(2025, 2, 28)
    assert Period(months=1).after(date(2025, 1, 31)) == date(2025, 2, 28)
    assert Period(years=1, days=1).after(date(2024, 2, 29)) == date(2025, 3, 1)


def test_an_adult_study_expires_the_day_after_its_seven_years():
    one = study(date(2019, 3, 1))
    with frozen(date(2026, 3, 1)):
        kept, = evaluate([one], RULES, today())
    assert not kept.expired and kept.keep_until == date(2026, 3, 1)
    with frozen(date(2026, 3, 2)):
        gone, = evaluate([one], RULES, today())
    assert gone.expired and gone.overdue
    assert gone.rule is ADULTS and gone.anchor_date == date(2019, 3, 1)
    assert gone.age == 49
    assert gone.flags == ()


def test_a_childs_study_is_kept_until_majority_plus_three_years():
    child = study(date(2010, 6, 1), birth=date(2005, 3, 10))
    with frozen(date(2026, 3, 10)):
        kept, = evaluate([child], RULES, today())
    assert kept.rule is MINORS
    assert kept.age == 5
    assert kept.anchor_date == date(2023, 3, 10)
    assert kept.keep_until == date(2026, 3, 10) and not kept.expired
    with frozen(date(2026, 3, 11)):
        gone, = evaluate([child], RULES, today())
    assert gone.expired


def test_the_adult_rule_wins_when_it_keeps_a_minors_study_longer():
    teenager = study(date(2020, 1, 1), birth=date(2003, 1, 2))  # 16 at the study: 18 + 3 ends in 2024
    decision, = evaluate([teenager], RULES, date(2026, 1, 1))
    assert decision.rule is ADULTS and decision.keep_until == date(2027, 1, 1)


def test_the_minors_rule_does_not_apply_to_a_study_done_after_majority():
    adult = study(date(2020, 1, 1), birth=date(2002, 1, 1))  # 18 on the study day
    decision, = evaluate([adult], (MINORS,), date(2030, 1, 1))
    assert decision.rule is None and Flag.NO_RULE in decision.flags and not decision.expired


def test_a_patient_without_birth_date_is_treated_as_an_adult_and_flagged():
    unknown = study(date(2015, 1, 1), birth=None)
    decision, = evaluate([unknown], RULES, date(2023, 1, 1))
    assert decision.rule is ADULTS and decision.expired
    assert decision.age is None
    assert decision.flags == (Flag.NO_BIRTH_DATE,)


def test_a_mammogram_is_kept_ten_years_after_the_patients_latest_mammogram():
    first = study(date(2010, 5, 1), patient="WOMAN", modalities=("MG",))
    later = study(date(2015, 7, 1), patient="WOMAN", modalities=("MG",))
    with frozen(date(2024, 1, 1)):
        decisions = evaluate([first, later], RULES, today())
    assert [d.rule for d in decisions] == [MAMMO, MAMMO]
    assert decisions[0].anchor_date == date(2015, 7, 1)
    assert decisions[0].keep_until == date(2025, 7, 1)
    assert not decisions[0].expired, "ten years have passed since the first mammogram, not the later one"
    with frozen(date(2025, 7, 2)):
        assert all(d.expired for d in evaluate([first, later], RULES, today()))


def test_a_mammogram_alone_is_kept_ten_years():
    alone = study(date(2010, 5, 1), patient="WOMAN", modalities=("MG",))
    decision, = evaluate([alone], RULES, date(2020, 5, 2))
    assert decision.rule is MAMMO and decision.keep_until == date(2020, 5, 1) and decision.expired


def test_later_studies_of_other_kinds_or_patients_do_not_extend_a_mammogram():
    mammogram = study(date(2010, 5, 1), patient="WOMAN", modalities=("MG",))
    later_ct = study(date(2018, 1, 1), patient="WOMAN", modalities=("CT",))
    someone_else = study(date(2019, 1, 1), patient="OTHER", modalities=("MG",))
    decision = evaluate([mammogram, later_ct, someone_else], RULES, date(2021, 1, 1))[0]
    assert decision.keep_until == date(2020, 5, 1) and decision.expired


def test_the_longest_applicable_rule_decides():
    ct_five = Rule("CT 5 years", RuleKind.PERIOD, Period(years=5), modality="CT")
    mr_ten = Rule("MR 10 years", RuleKind.PERIOD, Period(years=10), modality="MR")
    ct, mr = study(date(2015, 1, 1)), study(date(2015, 1, 1), modalities=("MR",))
    decisions = evaluate([ct, mr], (ct_five, ADULTS, mr_ten), date(2024, 1, 1))
    assert [d.rule for d in decisions] == [ADULTS, mr_ten]
    assert [d.expired for d in decisions] == [True, False]


def test_a_rule_anchored_on_the_last_study_counts_from_the_patients_latest_study():
    last_visit = Rule("7 years after the last study", RuleKind.PERIOD, Period(years=7),
                      anchor=Anchor.LAST_STUDY)
    old = study(date(2005, 1, 1), patient="REGULAR")
    recent = study(date(2020, 1, 1), patient="REGULAR", modalities=("MR",))
    other = study(date(2005, 1, 1), patient="GONE")
    decisions = evaluate([old, recent, other], (last_visit,), date(2026, 1, 1))
    assert decisions[0].anchor_date == date(2020, 1, 1) and not decisions[0].expired
    assert decisions[2].anchor_date == date(2005, 1, 1) and decisions[2].expired


def test_a_study_without_a_date_is_never_expired_and_flagged():
    undated = study(None, problems=(Problem("StudyDate", "20250230", "not a calendar date"),))
    decision, = evaluate([undated], RULES, date(2200, 1, 1))
    assert not decision.expired and not decision.overdue
    assert decision.keep_until is None and decision.rule is None
    assert Flag.NO_STUDY_DATE in decision.flags


def test_a_study_with_an_invalid_uid_is_never_expired_and_flagged():
    bad = study(date(1999, 1, 1), uid="1.2.3.abc",
                problems=(Problem("StudyInstanceUID", "1.2.3.abc", "not a DICOM UID"),))
    decision, = evaluate([bad], RULES, date(2030, 1, 1))
    assert not decision.expired and Flag.BAD_STUDY_UID in decision.flags


def test_a_study_without_patient_id_is_flagged_and_counted_from_its_own_date():
    anonymous = study(date(2000, 1, 1), patient="")
    other_blank = study(date(2020, 1, 1), patient="")
    decision = evaluate([anonymous, other_blank], RULES, date(2010, 1, 1))[0]
    assert Flag.NO_PATIENT_ID in decision.flags and decision.keep_until == date(2007, 1, 1)


@pytest.mark.parametrize("hold", [
    Hold("Smith v. Hospital", patient_id="PAT1"),
    Hold("Audit 2026-04", accession_number="ACC9"),
    Hold("Incident 17", study_uid="1.2.826.0.1.3680043.13.999999"),
    Hold("Billing review 2012", date_from=date(2012, 1, 1), date_to=date(2012, 12, 31)),
    Hold("Everything before 2013", date_to=date(2012, 12, 31)),
])
def test_a_hold_spares_an_expired_study_it_covers(hold):
    covered = study(date(2012, 6, 1), accession="ACC9", uid="1.2.826.0.1.3680043.13.999999")
    free = study(date(2012, 6, 2), patient="PAT2", accession="ACC10", uid="1.2.826.0.1.3680043.13.999998")
    if hold.date_from or hold.date_to:
        free = study(date(2013, 6, 2), patient="PAT2")
    held, other = evaluate([covered, free], RULES, date(2026, 1, 1), holds=[hold])
    assert held.overdue and not held.expired and held.spared
    assert held.held_by == (hold.label,)
    assert other.expired and not other.held_by


def test_a_hold_on_a_study_not_yet_due_spares_nothing_but_is_shown():
    recent = study(date(2024, 1, 1))
    decision, = evaluate([recent], RULES, date(2026, 1, 1), holds=[Hold("Litigation", patient_id="PAT1")])
    assert decision.held_by == ("Litigation",) and not decision.spared and not decision.expired


@pytest.mark.parametrize(("fields", "message"), [
    ({"label": ""}, "label: "),
    ({"label": "x"}, "scope: "),
    ({"label": "x", "patient_id": "A", "study_uid": "1.2"}, "scope: "),
    ({"label": "x", "patient_id": " "}, "scope: "),
    ({"label": "x", "date_from": date(2020, 1, 2), "date_to": date(2020, 1, 1)}, "date_to: "),
])
def test_a_hold_that_covers_nothing_or_too_much_is_refused(fields, message):
    with pytest.raises(RuleError, match=message):
        Hold(**fields)


@pytest.mark.parametrize(("fields", "message"), [
    ({"name": " "}, "name: "),
    ({"kind": "forever"}, "kind: "),
    ({"modality": "ct"}, "modality: "),
    ({"kind": RuleKind.MINOR}, "majority_age: "),
    ({"kind": RuleKind.MINOR, "majority_age": 0}, "majority_age: "),
    ({"majority_age": 18}, "majority_age: "),
    ({"kind": RuleKind.MAMMOGRAPHY, "anchor": Anchor.LAST_STUDY}, "anchor: "),
    ({"anchor": "first_visit"}, "anchor: "),
    ({"period": Period()}, "period: "),
    ({"period": "P7Y"}, "period: "),
])
def test_a_rule_that_cannot_apply_is_refused_naming_the_field(fields, message):
    values = {"name": "Rule", "kind": RuleKind.PERIOD, "period": Period(years=7), **fields}
    with pytest.raises(RuleError, match=message):
        Rule(**values)


def test_default_rules_are_the_common_choices_and_tell_to_check_state_law():
    by_kind = {rule.kind: rule for rule in DEFAULT_RULES}
    assert by_kind[RuleKind.PERIOD].period == Period(years=7) and by_kind[RuleKind.PERIOD].modality is None
    assert by_kind[RuleKind.MINOR].majority_age == 18 and by_kind[RuleKind.MINOR].period == Period(years=3)
    assert by_kind[RuleKind.MAMMOGRAPHY].period == Period(years=10)
    assert "21 CFR 900.12(c)(4)" in by_kind[RuleKind.MAMMOGRAPHY].source
    assert all(CHECK_STATE_LAW in rule.source for rule in DEFAULT_RULES)


def test_every_flag_has_a_sentence_for_the_review_page():
    assert set(FLAG_TEXT) == set(Flag)
    assert all(text.endswith(".") for text in FLAG_TEXT.values())


def test_default_rules_decide_a_mixed_archive():
    studies = [study(date(2010, 1, 1) + timedelta(days=n * 200), patient=f"P{n % 4}",
                     birth=date(2000, 1, 1) if n % 4 == 0 else date(1960, 1, 1),
                     modalities=("MG",) if n % 4 == 1 else ("CT",)) for n in range(20)]
    decisions = evaluate(studies, DEFAULT_RULES, date(2026, 1, 1))
    assert len(decisions) == 20
    assert {d.rule.kind for d in decisions if d.rule} == set(RuleKind)
    for d in decisions:
        assert d.expired == (d.keep_until is not None and d.keep_until < date(2026, 1, 1))
