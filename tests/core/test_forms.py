"""The form helpers every package uses to show a service's refusal on the form."""

from core.auth.forms import UserEditForm
from core.forms import FieldError, show_error


def test_a_refusal_lands_on_the_field_it_names_or_else_on_the_default_field(app):
    with app.test_request_context(method="POST"):
        form = UserEditForm()
        show_error(form, FieldError("that address is taken", field="email"), "role")
        show_error(form, FieldError("no such field on this form", field="password"), "role")
        show_error(form, FieldError("the form as a whole"), "role")
        assert form.email.errors == ["that address is taken"]
        assert form.role.errors == ["no such field on this form", "the form as a whole"]
