"""Forms of the training pages: courses, completions and the matrix filter."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
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

from audit.training.bulk import DATE_FORMATS_TEXT, MAX_NOTES, MAX_TRAINER
from audit.training.services import ATTESTATION, OFFICER_ATTESTATION
from core.auth.forms import ROLE_CHOICES
from core.forms import select_choices


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


class SessionForm(FlaskForm):
    """Record one training session for many attendees."""

    course_id = SelectField("Course", coerce=int, validators=[InputRequired(message="Choose the course.")])
    completed_on = DateField("Date of the session",
                             validators=[InputRequired(message="Give the date of the session.")])
    trainer = StringField("Trainer (optional)", validators=[Optional(), Length(max=MAX_TRAINER)])
    notes = TextAreaField("Notes (optional)", validators=[Optional(), Length(max=MAX_NOTES)])
    attendee_ids = SelectMultipleField("Attendees", coerce=int, validate_choice=False)
    attested = BooleanField(OFFICER_ATTESTATION,
                            description="For each attendee: their sign-in sheet or word.")
    submit = SubmitField("Record the session")

    def validate_attested(self, field: BooleanField) -> None:
        """The attestation is required."""
        if not field.data:
            raise ValidationError("Tick the attestation to confirm the attendees attested their training.")


class CompletionImportForm(FlaskForm):
    """Upload a CSV file of past completions, for a preview."""

    file = FileField("CSV file", validators=[FileRequired("Choose a CSV file.")],
                     description=f"Dates as {DATE_FORMATS_TEXT}.")
    submit = SubmitField("Check the file")


class CompletionImportConfirmForm(FlaskForm):
    """Confirm the import of a previewed file (its content travels back with the form)."""

    payload = HiddenField(validators=[DataRequired()])
    source = HiddenField()
    submit = SubmitField("Import")


class MatrixFilterForm(FlaskForm):
    """Filters of the training matrix (GET, no CSRF)."""

    class Meta:
        csrf = False

    role = SelectField("Role", choices=select_choices([("", "Any"), *ROLE_CHOICES]), validators=[Optional()])
    department = SelectField("Department", validators=[Optional()])
    status = SelectField("Status", validators=[Optional()], choices=select_choices([
        ("", "Any"), ("complete", "Complete"), ("pending", "Not yet due"), ("due_soon", "Due soon"),
        ("overdue", "Overdue"), ("expired", "Expired")]))
