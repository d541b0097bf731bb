"""Forms of the PACS access log pages."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import DateField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange, Optional, ValidationError

from audit.atna.message import EVENT_IDS
from audit.atna.models import WatchCategory
from core.forms import select_choices


class AccessSearchForm(FlaskForm):
    """Filters of the PACS access search (GET, no CSRF)."""

    class Meta:
        csrf = False

    patient_id = StringField("Patient ID", validators=[Optional(), Length(max=64)])
    patient_name = StringField("Patient name starts with", validators=[Optional(), Length(max=128)])
    accession = StringField("Accession number", validators=[Optional(), Length(max=64)])
    study_uid = StringField("Study Instance UID", validators=[Optional(), Length(max=64)])
    user = StringField("PACS user ID", validators=[Optional(), Length(max=128)])
    source = StringField("Audit source, host name or address", validators=[Optional(), Length(max=255)])
    event_id = SelectField("Event", validators=[Optional()], choices=select_choices(
        [("", "Any"), *((code, f"{label} ({code})") for code, label in EVENT_IDS.items())]))
    outcome = SelectField("Outcome", validators=[Optional()], choices=select_choices(
        [("", "Any"), ("success", "Success"), ("failure", "Failure")]))
    date_from = DateField("From (local date)", validators=[Optional()])
    date_to = DateField("To (local date)", validators=[Optional()])
    page = IntegerField("Page", validators=[Optional(), NumberRange(min=1, max=2000)])

    def validate_date_to(self, field: DateField) -> None:
        """The period must not end before it starts."""
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError("The period ends before it starts.")


class WatchForm(FlaskForm):
    """One patient to watch."""

    patient_id = StringField("Patient ID", validators=[DataRequired(), Length(max=64)])
    category = SelectField("Category", choices=select_choices(WatchCategory.LABELS.items()))
    reason = TextAreaField("Reason", validators=[DataRequired(), Length(max=500)])


class WatchImportForm(FlaskForm):
    """A CSV of patients to watch."""

    file = FileField("CSV file (patient_id,category,reason)", validators=[FileRequired()])


class QuarantinePurgeForm(FlaskForm):
    """Purge quarantined messages older than a number of days."""

    older_than_days = IntegerField("Older than (days)", default=90,
                                   validators=[DataRequired(), NumberRange(min=1, max=36500)])
