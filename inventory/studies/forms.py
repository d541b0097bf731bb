"""Forms of the imaging retention pages: a rule, an archive's settings, starting a review."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import IntegerField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from core.forms import select_choices
from inventory.studies.models import DELETION_METHOD_TEXT


class RuleForm(FlaskForm):
    """Set the rule of one modality."""

    modality = StringField("Modality (ALL for every modality)", default="ALL",
                           validators=[DataRequired(message="Give a modality code, or ALL."), Length(max=16)])
    period = StringField("Period (ISO-8601, e.g. P7Y, P10Y6M)",
                         validators=[DataRequired(message="Give a period such as P7Y."), Length(max=20)])
    minors_until = IntegerField("Minors rule: age of majority", validators=[Optional()],
                                description="Leave empty for an adult rule. A minors rule keeps studies done "
                                            "before this age until the age plus the period.")
    anchor = SelectField("Counted from", choices=select_choices([
        ("study", "The study date"), ("last-study", "The patient's last study on the archive")]))
    submit = SubmitField("Save rule")


class ArchiveSettingsForm(FlaskForm):
    """How studies are queried and deleted on one archive."""

    method = SelectField("Deletion method", choices=select_choices(
        [(str(k), v) for k, v in DELETION_METHOD_TEXT.items()]))
    orthanc_url = StringField("Orthanc REST URL", validators=[Optional(), Length(max=300)],
                              description="For the Orthanc method: http://host:8042")
    orthanc_username = StringField("Orthanc user name", validators=[Optional(), Length(max=120)])
    password_file = StringField("Password file on the server", validators=[Optional(), Length(max=500)],
                                description="A file readable by PACS Desk holding the password on its first "
                                            "line; the password itself is never stored.")
    find_limit = IntegerField("Archive's C-FIND result limit",
                              validators=[Optional(), NumberRange(1, 1_000_000)],
                              description="Orthanc's LimitFindResults if known: answers this long are split.")
    timeout = IntegerField("Timeout (seconds)", default=30, validators=[NumberRange(1, 600)])
    submit = SubmitField("Save settings")


class StartReviewForm(FlaskForm):
    """Start a review of one archive."""

    archive = SelectField("Archive", coerce=int)
    submit = SubmitField("Start a review")
