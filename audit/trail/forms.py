"""Audit trail search form."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    DateField,
    SelectField,
    StringField,
)
from wtforms.validators import Length, Optional, ValidationError

from audit.trail.chain import OUTCOMES
from core import audit_sink
from core.forms import select_choices


class AuditSearchForm(FlaskForm):
    """Filters of the audit trail search (GET, no CSRF)."""

    class Meta:
        csrf = False

    date_from = DateField("From (local date)", validators=[Optional()])
    date_to = DateField("To (local date)", validators=[Optional()])
    username = StringField("User", validators=[Optional(), Length(max=64)],
                           description="Part of a username or full name, any case")
    action = SelectField("Action", validators=[Optional()])
    object_type = StringField("Object type", validators=[Optional(), Length(max=40)])
    object_id = StringField("Object id", validators=[Optional(), Length(max=120)],
                            description="Part of it, any case: PD-38, pd-000038 and 38 find ticket PD-000038")
    outcome = SelectField("Outcome", validators=[Optional()],
                          choices=select_choices([("", "Any")] + [(o, o.title()) for o in OUTCOMES]))
    client_address = StringField("Client address", validators=[Optional(), Length(max=64)])
    q = StringField("Words in details", validators=[Optional(), Length(max=200)])

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.action.choices = select_choices(
            [("", "Any"), *((a, f"{a} — {d}") for a, d in sorted(audit_sink.actions().items()))])

    def validate_date_to(self, field: DateField) -> None:
        """The period must not end before it starts."""
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError("The period ends before it starts.")
