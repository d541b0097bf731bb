"""Help desk forms: filing a ticket, replying, working a ticket, configuring."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    IntegerField,
    MultipleFileField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from core.forms import select_choices
from helpdesk.attachments import ALLOWED_DESCRIPTION
from helpdesk.models import Priority, TicketStatus
from helpdesk.services import DESCRIPTION_MAX, IMPACTS, REPLY_MAX, TITLE_MAX, URGENCIES

PRIORITY_CHOICES = [(p.value, p.label) for p in Priority]


def _int_or_none(value: str | int | None) -> int | None:
    """Coerce a select value to int; empty means None."""
    if value is None or value in ("", "None"):
        return None
    return int(value)


class TicketForm(FlaskForm):
    """A person describes their problem; technicians may also set the priority."""

    title = StringField("Title", validators=[DataRequired(), Length(max=TITLE_MAX)],
                        description="One line, e.g. 'Priors missing for CT chest in reading room 2'.")
    category_id = SelectField("Category", coerce=int, validators=[InputRequired()])
    description = TextAreaField("What happened?", validators=[DataRequired(),
                                                              Length(max=DESCRIPTION_MAX)],
                                render_kw={"rows": 6})
    impact = SelectField("Who is affected?", choices=select_choices(IMPACTS.items()), default="one")
    urgency = SelectField("How urgent is it?", choices=select_choices(URGENCIES.items()), default="hours")
    priority = SelectField("Priority", validators=[Optional()],
                           choices=select_choices([("", "From impact and urgency"), *PRIORITY_CHOICES]))
    requester_username = StringField(
        "On behalf of (username)", validators=[Optional(), Length(max=64)],
        description="For a call or a walk-up: the person the ticket is for. Empty: yourself.")
    location = StringField("Location", validators=[Optional(), Length(max=200)],
                           description="Room, reading station or modality.")
    callback_phone = StringField("Call-back phone", validators=[Optional(), Length(max=40)])
    asset_tag = StringField("Asset tag", validators=[Optional(), Length(max=40)],
                            description="The tag on the device's label, if you know it.")
    accession_number = StringField("Accession number", validators=[Optional(), Length(max=64)])
    patient_id = StringField("Patient ID", validators=[Optional(), Length(max=64)])
    study_instance_uid = StringField("Study instance UID", validators=[Optional(), Length(max=64)])
    attachments = MultipleFileField("Attachments", description=f"Screenshots, logs, exports: "
                                    f"{ALLOWED_DESCRIPTION}.")
    submit = SubmitField("File ticket")


class ReplyForm(FlaskForm):
    """A reply on a ticket; technicians may mark it as an internal note."""

    body = TextAreaField("Reply", validators=[DataRequired(), Length(max=REPLY_MAX)],
                         render_kw={"rows": 4})
    internal = BooleanField("Internal note (never shown to the requester)")
    attachments = MultipleFileField("Attachments", description=ALLOWED_DESCRIPTION + ".")
    submit = SubmitField("Send")


class TicketUpdateForm(FlaskForm):
    """Technicians change status, priority, category, assignee and linked asset."""

    status = SelectField("Status", choices=select_choices(
        (s.value, s.label) for s in TicketStatus if s != TicketStatus.NEW))
    priority = SelectField("Priority", choices=select_choices(PRIORITY_CHOICES))
    category_id = SelectField("Category", coerce=int)
    assignee_id = SelectField("Assignee", coerce=_int_or_none, validate_choice=True)
    asset_tag = StringField("Asset tag", validators=[Optional(), Length(max=40)])
    submit = SubmitField("Save changes")


class CategoryForm(FlaskForm):
    """An administrator adds or edits a category."""

    code = StringField("Code", validators=[Optional(), Length(max=40)],
                       description="Stable identifier, lower case (cannot change later).")
    label = StringField("Label", validators=[DataRequired(), Length(max=120)])
    description = StringField("Description", validators=[Optional(), Length(max=300)])
    sort_order = IntegerField("Order", default=100, validators=[NumberRange(0, 10000)])
    is_active = BooleanField("Offered when filing tickets", default=True)
    submit = SubmitField("Save category")


class SlaForm(FlaskForm):
    """Response and resolution targets in minutes for P1-P4."""

    submit = SubmitField("Save service levels")


for _priority in Priority:
    setattr(SlaForm, f"{_priority.value.lower()}_response", IntegerField(
        f"{_priority.value} first response (minutes)", validators=[InputRequired(), NumberRange(1)]))
    setattr(SlaForm, f"{_priority.value.lower()}_resolution", IntegerField(
        f"{_priority.value} resolution (minutes)", validators=[InputRequired(), NumberRange(1)]))


NO_CHANGE = ("", "No change")


class BulkForm(FlaskForm):
    """Technicians change many selected tickets at once (empty: leave as it is)."""

    assignee = SelectField("Assignee", default="")
    status = SelectField("Status", default="", choices=select_choices(
        [NO_CHANGE, *((s.value, s.label) for s in TicketStatus if s != TicketStatus.NEW)]))
    priority = SelectField("Priority", default="", choices=select_choices([NO_CHANGE, *PRIORITY_CHOICES]))
    category = SelectField("Category", default="")
    submit = SubmitField("Apply to selected")


class SaveViewForm(FlaskForm):
    """Save the queue's filters, sort and columns under a name."""

    name = StringField("View name", validators=[DataRequired(), Length(max=80)])
    shared = BooleanField("Share with the team")
    submit = SubmitField("Save view")


class LinkForm(FlaskForm):
    """Link this ticket to another, or merge it into another."""

    kind = SelectField("Link", choices=select_choices(
        [("duplicate", "Duplicate of"), ("related", "Related to"), ("child", "Part of incident"),
         ("merge", "Merge into (moves replies and attachments, closes this ticket)")]))
    other = StringField("Ticket number", validators=[DataRequired(), Length(max=20)],
                        render_kw={"placeholder": "PD-000123"})
    submit = SubmitField("Link")
