"""Forms of the training pages: courses, completions and the matrix filter."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    DateField,
    IntegerField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError

from audit.training.services import ATTESTATION
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


class MatrixFilterForm(FlaskForm):
    """Filters of the training matrix (GET, no CSRF)."""

    class Meta:
        csrf = False

    role = SelectField("Role", choices=select_choices([("", "Any"), *ROLE_CHOICES]), validators=[Optional()])
    department = SelectField("Department", validators=[Optional()])
    status = SelectField("Status", validators=[Optional()], choices=select_choices([
        ("", "Any"), ("complete", "Complete"), ("pending", "Not yet due"), ("due_soon", "Due soon"),
        ("overdue", "Overdue"), ("expired", "Expired")]))
