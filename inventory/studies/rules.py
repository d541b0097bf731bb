"""Imaging study retention rules and their evaluation: pure, no I/O (no Flask, no database).

Every rule gives a study an anchor date and a period; the study must be kept until the anchor
plus the period (``keep_until``) and may be destroyed from the next day. The longest applicable
rule wins. A study without a usable date or UID never expires; a patient without a birth date
is treated as an adult. Both are flagged on the decision so a reviewer sees them.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from functools import lru_cache

from inventory.studies.records import StudyRecord

MAX_YEARS = 100
MODALITY_PATTERN = re.compile(r"[A-Z0-9_]{1,16}")
PERIOD_PATTERN = re.compile(r"P(?:(\d{1,4})Y)?(?:(\d{1,4})M)?(?:(\d{1,4})W)?(?:(\d{1,5})D)?")
CHECK_STATE_LAW = "Check your state's law before relying on this rule."


class RuleError(ValueError):
    """A rule, period or hold that cannot be used; the message starts with the field's name."""


@dataclass(frozen=True)
class Period:
    """A retention period in calendar years, months and days."""

    years: int = 0
    months: int = 0
    days: int = 0

    @classmethod
    def parse(cls, text: str, field: str = "period") -> Period:
        """Read an ISO-8601 duration of years, months, weeks and days: ``P7Y``, ``P10Y6M``, ``P30D``."""
        if not isinstance(text, str):
            raise RuleError(f"{field}: must be text such as P7Y, not {text!r}")
        value = text.strip().upper()
        if "T" in value:
            raise RuleError(f"{field}: {text!r} has hours, minutes or seconds; a retention period "
                            f"counts whole days (P7Y, P10Y6M, P30D)")
        match = PERIOD_PATTERN.fullmatch(value)
        if not match or value == "P":
            raise RuleError(f"{field}: {text!r} is not an ISO-8601 duration such as P7Y, P10Y6M or P30D")
        years, months, weeks, days = (int(g) if g else 0 for g in match.groups())
        return cls(years, months, weeks * 7 + days).checked(field)

    def checked(self, field: str = "period") -> Period:
        """This period, or RuleError when it is zero, negative or longer than MAX_YEARS."""
        parts = (self.years, self.months, self.days)
        if any(isinstance(n, bool) or not isinstance(n, int) for n in parts):
            raise RuleError(f"{field}: years, months and days must be whole numbers")
        if min(parts) < 0:
            raise RuleError(f"{field}: a retention period cannot be negative")
        if not any(parts):
            raise RuleError(f"{field}: a period of zero would destroy studies at once; give a period")
        if (self.years * 12 + self.months) * 31 + self.days > MAX_YEARS * 12 * 31:
            raise RuleError(f"{field}: a period longer than {MAX_YEARS} years is not accepted")
        return self

    def after(self, day: date) -> date:
        """``day`` moved forward by this period (a day past the month's end clamped to it)."""
        return _add(day, self.years * 12 + self.months, self.days)

    def __str__(self) -> str:
        """The ISO-8601 form: ``P10Y6M``."""
        return "P" + "".join(f"{n}{unit}" for n, unit in
                             ((self.years, "Y"), (self.months, "M"), (self.days, "D")) if n)

    @property
    def text(self) -> str:
        """The period as people say it: "10 years 6 months"."""
        return " ".join(f"{n} {unit}{'' if n == 1 else 's'}" for n, unit in
                        ((self.years, "year"), (self.months, "month"), (self.days, "day")) if n)


@lru_cache(maxsize=65_536)
def _add(day: date, months: int, days: int) -> date:
    """A date moved by whole months (clamped to the month's end), then by days."""
    if months:
        total = day.year * 12 + day.month - 1 + months
        year, month = divmod(total, 12)
        if year > 9999:
            return date.max
        day = date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))
    if days:
        try:
            return day + timedelta(days=days)
        except OverflowError:
            return date.max
    return day


class RuleKind(StrEnum):
    """What a rule keys on."""

    PERIOD = "period"  # a period after the study date or the patient's last study
    MINOR = "minor"  # a period after the patient comes of age, for studies done before then
    MAMMOGRAPHY = "mammography"  # MG: a period after the patient's latest mammogram at the facility


class Anchor(StrEnum):
    """The date a PERIOD rule counts from."""

    STUDY_DATE = "study_date"
    LAST_STUDY = "last_study"


@dataclass(frozen=True)
class Rule:
    """One retention rule; ``modality`` None applies to every study (MG for MAMMOGRAPHY)."""

    name: str
    kind: RuleKind
    period: Period
    modality: str | None = None
    anchor: Anchor = Anchor.STUDY_DATE
    majority_age: int | None = None
    source: str = ""

    def __post_init__(self) -> None:
        """Refuse a rule that cannot be applied, naming the field."""
        if not isinstance(self.name, str) or not self.name.strip():
            raise RuleError("name: a rule needs a name")
        if self.kind not in tuple(RuleKind):
            raise RuleError(f"kind: must be one of {', '.join(RuleKind)}, not {self.kind!r}")
        object.__setattr__(self, "kind", RuleKind(self.kind))
        if not isinstance(self.period, Period):
            raise RuleError("period: must be a Period (use Period.parse('P7Y'))")
        self.period.checked()
        if self.anchor not in tuple(Anchor):
            raise RuleError(f"anchor: must be one of {', '.join(Anchor)}, not {self.anchor!r}")
        object.__setattr__(self, "anchor", Anchor(self.anchor))
        if self.kind is RuleKind.MAMMOGRAPHY:
            object.__setattr__(self, "modality", "MG")
        elif self.modality is not None and not (isinstance(self.modality, str)
                                                and MODALITY_PATTERN.fullmatch(self.modality)):
            raise RuleError(f"modality: must be a DICOM modality code such as CT or MG, "
                            f"not {self.modality!r}")
        if self.kind is RuleKind.MINOR:
            age = self.majority_age
            if isinstance(age, bool) or not isinstance(age, int) or not 1 <= age <= 30:
                raise RuleError(f"majority_age: must be a whole number of years from 1 to 30, not {age!r}")
        elif self.majority_age is not None:
            raise RuleError("majority_age: only a minors rule has an age of majority")
        if self.kind is not RuleKind.PERIOD and self.anchor is not Anchor.STUDY_DATE:
            raise RuleError("anchor: only a period rule can count from the patient's last study")


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("Adults: 7 years after the study", RuleKind.PERIOD, Period(years=7),
         source="State medical record laws keep adults' images 5 to 10 years after the last "
                "encounter; 7 years after the study is a common choice. Hospitals must keep "
                "radiology films and reports at least 5 years (42 CFR 482.26(d)(2)). " + CHECK_STATE_LAW),
    Rule("Minors: until 18 plus 3 years", RuleKind.MINOR, Period(years=3), majority_age=18,
         source="Many states keep a minor's records until the age of majority plus a number of "
                "years. " + CHECK_STATE_LAW),
    Rule("Mammography: 10 years, and as long as any later mammogram", RuleKind.MAMMOGRAPHY,
         Period(years=10),
         source="MQSA, 21 CFR 900.12(c)(4): mammograms at least 5 years, or at least 10 years if no "
                "additional mammograms of the patient are performed at the facility, or longer "
                "if state or local law requires. This rule keeps every mammogram 10 years and "
                "as long as the patient's latest one. " + CHECK_STATE_LAW),
)


@dataclass(frozen=True)
class Hold:
    """What a legal hold covers: one patient, accession, study, or a study-date range."""

    label: str
    patient_id: str | None = None
    accession_number: str | None = None
    study_uid: str | None = None
    date_from: date | None = None
    date_to: date | None = None

    def __post_init__(self) -> None:
        """Refuse a hold that covers nothing or mixes kinds, naming the field."""
        if not isinstance(self.label, str) or not self.label.strip():
            raise RuleError("label: a hold needs a label")
        values = [v for v in (self.patient_id, self.accession_number, self.study_uid) if v is not None]
        ranged = self.date_from is not None or self.date_to is not None
        if len(values) + ranged != 1:
            raise RuleError("scope: a hold covers exactly one of patient_id, accession_number, "
                            "study_uid or a date range")
        if values and (not isinstance(values[0], str) or not values[0].strip()):
            raise RuleError("scope: a hold's patient ID, accession number or study UID cannot be empty")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise RuleError("date_to: a hold's date range must not end before it starts")


class Flag(StrEnum):
    """Why a decision needs a reviewer's eye."""

    NO_STUDY_DATE = "no_study_date"
    BAD_STUDY_UID = "bad_study_uid"
    NO_BIRTH_DATE = "no_birth_date"
    NO_PATIENT_ID = "no_patient_id"
    NO_RULE = "no_rule"


FLAG_TEXT = {
    Flag.NO_STUDY_DATE: "No usable study date: never expires.",
    Flag.BAD_STUDY_UID: "The study UID is not a valid UID: never expires.",
    Flag.NO_BIRTH_DATE: "No usable birth date: treated as an adult.",
    Flag.NO_PATIENT_ID: "No patient ID: the patient's other studies cannot be taken into account.",
    Flag.NO_RULE: "No rule applies: kept.",
}


@dataclass(frozen=True)
class Decision:
    """What the rules say about one study on the evaluation day.

    ``overdue``: past ``keep_until``; ``expired``: overdue and under no hold, so it may be
    destroyed; ``held_by``: the labels of the holds covering it (whether overdue or not).
    """

    study: StudyRecord
    expired: bool
    overdue: bool
    rule: Rule | None
    anchor_date: date | None
    age: int | None
    keep_until: date | None
    held_by: tuple[str, ...] = ()
    flags: tuple[Flag, ...] = ()

    @property
    def spared(self) -> bool:
        """Whether a hold is all that keeps this study."""
        return self.overdue and bool(self.held_by)


class _HoldIndex:
    """Holds as sets and ranges, so matching a study costs a few lookups."""

    def __init__(self, holds: Sequence[Hold]) -> None:
        self.patients: dict[str, list[str]] = {}
        self.accessions: dict[str, list[str]] = {}
        self.uids: dict[str, list[str]] = {}
        self.ranges: list[tuple[date, date, str]] = []
        for hold in holds:
            if not isinstance(hold, Hold):
                raise RuleError(f"holds: expected Hold values, not {type(hold).__name__}")
            if hold.patient_id is not None:
                self.patients.setdefault(hold.patient_id.strip(), []).append(hold.label)
            elif hold.accession_number is not None:
                self.accessions.setdefault(hold.accession_number.strip(), []).append(hold.label)
            elif hold.study_uid is not None:
                self.uids.setdefault(hold.study_uid.strip(), []).append(hold.label)
            else:
                self.ranges.append((hold.date_from or date.min, hold.date_to or date.max, hold.label))

    def labels(self, study: StudyRecord) -> tuple[str, ...]:
        """The labels of every hold covering ``study``."""
        found: list[str] = []
        if study.patient_id in self.patients:
            found += self.patients[study.patient_id]
        if study.accession_number in self.accessions:
            found += self.accessions[study.accession_number]
        if study.study_uid in self.uids:
            found += self.uids[study.study_uid]
        day = study.study_date
        if day is not None:
            for low, high, label in self.ranges:
                if low <= day <= high:
                    found.append(label)
        return tuple(found)

    def __bool__(self) -> bool:
        """Whether there is any hold at all."""
        return bool(self.patients or self.accessions or self.uids or self.ranges)


# A rule prepared for evaluation: rule, kind, modality, whole months, days, counts from the
# patient's last study, age of majority.
_Compiled = tuple[Rule, RuleKind, str | None, int, int, bool, int]


def evaluate(studies: Iterable[StudyRecord], rules: Sequence[Rule], today: date,
             holds: Sequence[Hold] = ()) -> list[Decision]:
    """Decide for every study whether it is past retention under ``rules`` on ``today``."""
    if not isinstance(today, date):
        raise RuleError(f"today: must be a date, not {today!r}")
    compiled: list[_Compiled] = []
    for rule in rules:
        if not isinstance(rule, Rule):
            raise RuleError(f"rules: expected Rule values, not {type(rule).__name__}")
        compiled.append((rule, rule.kind, rule.modality, rule.period.years * 12 + rule.period.months,
                         rule.period.days, rule.anchor is Anchor.LAST_STUDY, rule.majority_age or 0))
    studies = list(studies)
    index = _HoldIndex(holds)
    last: dict[str, date] = {}
    last_mg: dict[str, date] = {}
    for study in studies:
        day, patient = study.study_date, study.patient_id
        if day is None or not patient:
            continue
        if day > last.get(patient, date.min):
            last[patient] = day
        if "MG" in study.modalities and day > last_mg.get(patient, date.min):
            last_mg[patient] = day
    return [_decide(study, compiled, today, index, last, last_mg) for study in studies]


def _decide(study: StudyRecord, rules: list[_Compiled], today: date, index: _HoldIndex,
            last: dict[str, date], last_mg: dict[str, date]) -> Decision:
    """The decision for one study."""
    held = index.labels(study) if index else ()
    flags: tuple[Flag, ...] = ()
    day, birth, patient = study.study_date, study.birth_date, study.patient_id
    if not patient:
        flags += (Flag.NO_PATIENT_ID,)
    if birth is None:
        flags += (Flag.NO_BIRTH_DATE,)
    if day is None:
        return Decision(study, False, False, None, None, None, None, held, (*flags, Flag.NO_STUDY_DATE))
    if study.problems and study.problem("StudyInstanceUID") is not None:
        return Decision(study, False, False, None, None, None, None, held, (*flags, Flag.BAD_STUDY_UID))
    age = None
    if birth is not None:
        age = day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))
    best: date | None = None
    best_anchor = day
    best_rule: Rule | None = None
    for rule, kind, modality, months, days, from_last, majority in rules:
        if modality is not None and modality not in study.modalities:
            continue
        if kind is RuleKind.PERIOD:
            anchor = last.get(patient, day) if from_last and patient else day
        elif kind is RuleKind.MINOR:
            if age is None or birth is None or age >= majority:
                continue
            anchor = _add(birth, 12 * majority, 0)
        else:
            anchor = last_mg.get(patient, day) if patient else day
        until = _add(anchor, months, days)
        if best is None or until > best:
            best, best_anchor, best_rule = until, anchor, rule
    if best is None:
        return Decision(study, False, False, None, None, age, None, held, (*flags, Flag.NO_RULE))
    overdue = today > best
    return Decision(study, overdue and not held, overdue, best_rule, best_anchor, age, best, held, flags)
