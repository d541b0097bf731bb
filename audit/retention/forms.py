"""Forms of the retention pages: policies, legal holds and run confirmation."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    IntegerField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from core.forms import select_choices


class PolicyForm(FlaskForm):
    """A record class's retention period."""

    years = IntegerField("Years", validators=[InputRequired(message="Give a number of years (0 or more).")])
    months = IntegerField("Months", default=0, validators=[InputRequired()])
    days = IntegerField("Days", default=0, validators=[InputRequired()])
    anchor = SelectField("Counted from")
    enabled = BooleanField("Enforced by retention runs")
    submit = SubmitField("Save policy")


class HoldForm(FlaskForm):
    """Place a legal hold."""

    reason = TextAreaField("Reason (case, investigation or audit)",
                           validators=[DataRequired(message="Give the reason for the hold."),
                                       Length(max=2000)])
    kind = SelectField("Covers", choices=select_choices([
        ("ticket", "One ticket (number)"), ("asset", "One asset (tag)"),
        ("user", "All records of one user (username)"), ("class", "A record class within a date range"),
        ("patient", "Imaging studies of one patient (patient ID)"),
        ("accession", "One imaging study (accession number)"),
        ("study", "One imaging study (Study Instance UID)"),
        ("study_dates", "Imaging studies within a range of study dates")]))
    object_key = StringField("Ticket number, asset tag, username, patient ID, accession number or study UID",
                              validators=[Optional(), Length(max=120)])
    record_class = SelectField("Record class", validators=[Optional()])
    start = DateField("From (local date)", validators=[Optional()])
    end = DateField("To (local date)", validators=[Optional()])
    submit = SubmitField("Place hold")


class ReleaseHoldForm(FlaskForm):
    """Release a legal hold."""

    reason = StringField("Reason for release", validators=[DataRequired(message="Give a reason."),
                                                           Length(max=500)])
    submit = SubmitField("Release")


class RunConfirmForm(FlaskForm):
    """Confirm a retention run after reading the dry run."""

    plan_digest = HiddenField()
    plan_as_of = HiddenField()
    confirm = BooleanField("I have reviewed the dry run: destroy these records now",
                           validators=[DataRequired(message="Tick the box to confirm.")])
    submit = SubmitField("Run retention now")
