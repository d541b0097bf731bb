"""Forms of the compliance pages: audit search, retention policies and holds, training."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    IntegerField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError

from audit.chain import ACTIONS, OUTCOMES
from audit.training import ATTESTATION
from core.auth.forms import ROLE_CHOICES
from core.forms import select_choices


class AuditSearchForm(FlaskForm):
    """Filters of the audit trail search (GET, no CSRF)."""

    class Meta:
        csrf = False

    date_from = DateField("From (local date)", validators=[Optional()])
    date_to = DateField("To (local date)", validators=[Optional()])
    username = StringField("User", validators=[Optional(), Length(max=64)])
    action = SelectField("Action", validators=[Optional()])
    object_type = StringField("Object type", validators=[Optional(), Length(max=40)])
    object_id = StringField("Object id", validators=[Optional(), Length(max=120)])
    outcome = SelectField("Outcome", validators=[Optional()],
                          choices=select_choices([("", "Any")] + [(o, o.title()) for o in OUTCOMES]))
    client_address = StringField("Client address", validators=[Optional(), Length(max=64)])
    q = StringField("Words in details", validators=[Optional(), Length(max=200)])

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.action.choices = select_choices(
            [("", "Any"), *((a, f"{a} — {d}") for a, d in sorted(ACTIONS.items()))])

    def validate_date_to(self, field: DateField) -> None:
        """The period must not end before it starts."""
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError("The period ends before it starts.")


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
        ("user", "All records of one user (username)"), ("class", "A record class within a date range")]))
    object_key = StringField("Ticket number, asset tag or username", validators=[Optional(), Length(max=120)])
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
    confirm = BooleanField("I have reviewed the dry run: destroy these records now",
                           validators=[DataRequired(message="Tick the box to confirm.")])
    submit = SubmitField("Run retention now")


class CourseForm(FlaskForm):
    """Create or change a course."""

    title = StringField("Title", validators=[DataRequired(), Length(max=200)])
    description = TextAreaField("Description", validators=[Optional(), Length(max=4000)])
    recurrence_months = IntegerField("Repeat every (months)", validators=[Optional()],
                                     description="Leave empty for a one-time course; 12 for annual.")
    required_roles = SelectMultipleField("Required for", choices=select_choices(ROLE_CHOICES),
                                         validators=[Optional()], description="Select none for everyone.")
    days_to_complete = IntegerField("Days a new user has to complete it", default=30,
                                    validators=[InputRequired(), NumberRange(0, 365)])
    is_active = BooleanField("Active", default=True)
    submit = SubmitField("Save course")


class CompletionForm(FlaskForm):
    """Record a completion."""

    completed_on = DateField("Completed on", validators=[InputRequired(message="Give the completion date.")])
    score = IntegerField("Score (0 to 100, optional)", validators=[
        Optional(), NumberRange(0, 100, message="Score: a whole number from 0 to 100.")])
    attested = BooleanField(ATTESTATION)
    certificate = FileField("Certificate (PDF, PNG or JPEG, optional)")
    submit = SubmitField("Record completion")

    def validate_attested(self, field: BooleanField) -> None:
        """The attestation is required."""
        if not field.data:
            raise ValidationError("Tick the attestation to confirm the training was completed.")


class MatrixFilterForm(FlaskForm):
    """Filters of the training matrix (GET, no CSRF)."""

    class Meta:
        csrf = False

    role = SelectField("Role", choices=select_choices([("", "Any"), *ROLE_CHOICES]), validators=[Optional()])
    department = SelectField("Department", validators=[Optional()])
    status = SelectField("Status", validators=[Optional()], choices=select_choices([
        ("", "Any"), ("complete", "Complete"), ("pending", "Not yet due"), ("due_soon", "Due soon"),
        ("overdue", "Overdue"), ("expired", "Expired")]))
