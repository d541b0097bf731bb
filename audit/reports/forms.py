"""The report request form."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, DateField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, Optional


class ReportForm(FlaskForm):
    """Kind, period and filters of a report; choices depend on the user's permissions."""

    kind = SelectField("Report", validators=[DataRequired()])
    date_from = DateField("From", validators=[Optional()],
                          description="First local day included (YYYY-MM-DD).")
    date_to = DateField("To", validators=[Optional()], description="Last local day included.")
    user = StringField("User", validators=[Optional(), Length(max=64)],
                       description="Access audit only: narrow to one username.")
    object = StringField("Object", validators=[Optional(), Length(max=170)],
                         description="Access audit only: TYPE:ID, for example ticket:PD-000123.")
    include_identifiers = BooleanField(
        "Include patient identifiers", default=False,
        description="Access audit only: print accession numbers, patient IDs and study UIDs in full. "
                    "Off, the report masks them; your choice is recorded in the audit trail.")
    run_id = StringField("Retention run", validators=[Optional(), Length(max=20)],
                         description="Certificate of destruction only: the run's number.")
    submit = SubmitField("Generate PDF")
