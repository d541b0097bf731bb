"""Forms for logging in and managing accounts."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, Optional

from core.auth.models import Role
from core.forms import select_choices

ROLE_CHOICES = [(r.value, r.label) for r in Role]


class LoginForm(FlaskForm):
    """Username and password."""

    username = StringField("Username", validators=[DataRequired()],
                           render_kw={"autocomplete": "username", "autofocus": True})
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)],
                             render_kw={"autocomplete": "current-password"})
    submit = SubmitField("Log in")


class CodeForm(FlaskForm):
    """The second login step: a code from the authenticator app, or a recovery code."""

    code = StringField("Code", validators=[DataRequired(), Length(max=40)],
                       description="The 6 digits your authenticator app shows now, or one of your "
                                   "recovery codes.",
                       render_kw={"autocomplete": "one-time-code", "autofocus": True,
                                  "inputmode": "text", "spellcheck": "false"})
    submit = SubmitField("Verify")


class EnrolForm(FlaskForm):
    """Confirm an authenticator with its first code."""

    code = StringField("First code from the app", validators=[DataRequired(), Length(max=20)],
                       render_kw={"autocomplete": "one-time-code", "inputmode": "numeric"})
    submit = SubmitField("Turn on")


class UserCreateForm(FlaskForm):
    """An administrator creates an account."""

    username = StringField("Username", validators=[DataRequired(), Length(min=2, max=64)])
    full_name = StringField("Full name", validators=[Optional(), Length(max=200)])
    email = EmailField("E-mail", validators=[Optional(), Length(max=254)])
    department = StringField("Department", validators=[Optional(), Length(max=120)])
    role = SelectField("Role", choices=select_choices(ROLE_CHOICES), default=Role.REQUESTER)
    password = PasswordField(
        "Initial password", validators=[Optional(), Length(max=256)],
        description="Leave empty to generate one; it is shown once after saving.",
        render_kw={"autocomplete": "new-password"},
    )
    submit = SubmitField("Create account")


class UserEditForm(FlaskForm):
    """An administrator changes an account's details and role."""

    full_name = StringField("Full name", validators=[Optional(), Length(max=200)])
    email = EmailField("E-mail", validators=[Optional(), Length(max=254)])
    department = StringField("Department", validators=[Optional(), Length(max=120)])
    role = SelectField("Role", choices=select_choices(ROLE_CHOICES))
    submit = SubmitField("Save changes")


class ConfirmForm(FlaskForm):
    """A bare form: a CSRF token behind a button (logout, disable, unlock...)."""

    submit = SubmitField("Confirm")


class PasswordChangeForm(FlaskForm):
    """A user changes their own password."""

    current_password = PasswordField("Current password", validators=[DataRequired()],
                                     render_kw={"autocomplete": "current-password"})
    new_password = PasswordField("New password", validators=[DataRequired(), Length(max=256)],
                                 description="At least 12 characters, not a common or easily "
                                             "guessed password. A few unrelated words work well.",
                                 render_kw={"autocomplete": "new-password"})
    confirm = PasswordField("Repeat new password",
                            validators=[DataRequired(), EqualTo("new_password",
                                                                "The passwords do not match.")],
                            render_kw={"autocomplete": "new-password"})
    submit = SubmitField("Change password")
