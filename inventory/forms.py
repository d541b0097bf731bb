"""Forms for assets, disposal and CSV import."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    DateField,
    FieldList,
    Form,
    FormField,
    HiddenField,
    IntegerField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional

from core.forms import select_choices
from inventory.asset_rules import SANITISATION_METHODS
from inventory.models import MODALITY_CODES, AssetKind, AssetStatus, DicomRole, DicomType

KIND_LABELS = {
    AssetKind.WORKSTATION: "Workstation",
    AssetKind.DICOM_NODE: "DICOM node",
    AssetKind.SERVER: "Server",
    AssetKind.NETWORK_DEVICE: "Network device",
    AssetKind.PRINTER: "Printer / media burner",
    AssetKind.OTHER: "Other",
}
STATUS_LABELS = {
    AssetStatus.IN_SERVICE: "In service",
    AssetStatus.IN_MAINTENANCE: "In maintenance",
    AssetStatus.OUT_OF_SERVICE: "Out of service",
    AssetStatus.RETIRED: "Retired",
    AssetStatus.DISPOSED: "Disposed",
}
DICOM_TYPE_LABELS = {
    DicomType.MODALITY: "Modality",
    DicomType.PACS_ARCHIVE: "PACS archive",
    DicomType.ROUTER: "Router",
    DicomType.VIEWING_WORKSTATION: "Viewing workstation",
    DicomType.RIS_BROKER: "RIS / broker",
    DicomType.OTHER: "Other",
}
ROLE_LABELS = {DicomRole.SCP: "SCP (provider)", DicomRole.SCU: "SCU (user)",
               DicomRole.BOTH: "Both"}


def _blank_int(value: str | int | None) -> int | None:
    """Coerce a select's value to an int, empty meaning none."""
    return int(value) if value is not None and value not in ("", "None") else None


class AssetForm(FlaskForm):
    """Create or edit an asset (the DICOM section matters for DICOM nodes only)."""

    asset_tag = StringField("Asset tag", validators=[DataRequired(), Length(max=40)],
                            description="Letters, digits, '-', '_' or '.'; used in the page's "
                                        "address.")
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    kind = SelectField("Kind", choices=select_choices(KIND_LABELS.items()))
    status = SelectField("Status", choices=select_choices(
        (k, v) for k, v in STATUS_LABELS.items() if k != AssetStatus.DISPOSED))
    location = StringField("Location", validators=[Length(max=200)],
                           description="Building, floor, room.")
    department = StringField("Department", validators=[Length(max=120)])
    assigned_user_id = SelectField("Assigned user", coerce=_blank_int, validate_choice=False)
    manufacturer = StringField("Manufacturer", validators=[Length(max=120)])
    model = StringField("Model", validators=[Length(max=120)])
    serial_number = StringField("Serial number", validators=[Length(max=120)])
    hostname = StringField("Hostname", validators=[Length(max=253)],
                           description="Host name (RFC 1123) or IP address.")
    ip_address = StringField("IP address", validators=[Length(max=45)])
    os_version = StringField("OS or firmware version", validators=[Length(max=120)])
    purchase_date = DateField("Purchase date", validators=[Optional()])
    warranty_end = DateField("Warranty end", validators=[Optional()])
    holds_phi = BooleanField("Stores patient data (needs a sanitisation record on disposal)")
    notes = TextAreaField("Notes", validators=[Length(max=10_000)])
    ae_title = StringField("AE title", description="1-16 characters, no backslash.")
    port = IntegerField("Port", validators=[Optional()], description="1-65535; often 104 "
                                                                     "or 11112.")
    tls = BooleanField("TLS")
    dicom_role = SelectField("DICOM role", choices=select_choices(ROLE_LABELS.items()),
                             default=DicomRole.BOTH)
    dicom_type = SelectField("DICOM type", choices=select_choices(DICOM_TYPE_LABELS.items()))
    modality = SelectField("Modality code", choices=select_choices(
        [("", "—")] + [(c, c) for c in MODALITY_CODES]))
    verify_enabled = BooleanField("Verify automatically with C-ECHO", default=True)
    tls_client_cert = StringField("TLS client certificate", validators=[Length(max=500)],
                                  description="PEM file on the server, shown to a TLS node that asks "
                                              "for one. Empty: PACSDESK_DICOM_TLS_CERT.")
    tls_client_key = StringField("TLS client key", validators=[Length(max=500)],
                                 description="Its unencrypted PEM private key file (empty when the "
                                             "certificate file holds it).")
    tls_ca_file = StringField("TLS CA file", validators=[Length(max=500)],
                              description="PEM CA bundle the node's certificate is checked against. "
                                          "Empty: PACSDESK_DICOM_TLS_CA_FILE or the system's CAs.")
    submit = SubmitField("Save")

    GENERAL = ("asset_tag", "name", "kind", "status", "location", "department",
               "assigned_user_id", "manufacturer", "model", "serial_number", "hostname",
               "ip_address", "os_version", "purchase_date", "warranty_end", "holds_phi", "notes")
    DICOM = ("ae_title", "port", "tls", "dicom_role", "dicom_type", "modality",
             "verify_enabled")
    TLS_FILES = ("tls_client_cert", "tls_client_key", "tls_ca_file")  # admins only


class SanitisationForm(FlaskForm):
    """Dispose of an asset, with its NIST SP 800-88 sanitisation record."""

    method = SelectField("Sanitisation method",
                         choices=select_choices([
                             ("", "— none (asset held no patient data) —"),
                             *((key, f"{key.capitalize()}: {text}")
                               for key, text in SANITISATION_METHODS.items())]))
    performed_on = DateField("Date sanitised", validators=[Optional()])
    performed_by = StringField("Sanitised by", validators=[Length(max=200)])
    witness = StringField("Witness", validators=[Length(max=200)])
    certificate_ref = StringField("Certificate of sanitisation reference",
                                  validators=[Length(max=200)])
    submit = SubmitField("Dispose of asset")


# How dates are written in a CSV file (YYYY-MM-DD is always read too).
DATE_FORMAT_CHOICES = (("iso", "YYYY-MM-DD only"), ("dmy", "Day first: DD/MM/YYYY (and YYYY-MM-DD)"),
                       ("mdy", "Month first: MM/DD/YYYY (and YYYY-MM-DD)"))


class ImportForm(FlaskForm):
    """Upload a CSV file of assets."""

    file = FileField("CSV file", validators=[FileRequired("Choose a CSV file.")],
                     description="Separated by commas, semicolons or tabs; UTF-8 or Windows-1252.")
    date_format = SelectField("Dates in the file", choices=select_choices(DATE_FORMAT_CHOICES),
                              default="iso")
    update = BooleanField("Update existing assets (otherwise rows with existing tags are "
                          "refused)")
    submit = SubmitField("Import")


class ColumnChoiceForm(Form):
    """The field one column of the file fills ("ignore": none); choices are set by the view."""

    target = SelectField("Field", validate_choice=False)


class ValueChoiceForm(Form):
    """What one value written in the file means, as a code of its field; choices set by the view."""

    field = HiddenField()
    source = HiddenField()
    target = SelectField("Means", validate_choice=False)


class ImportMappingForm(FlaskForm):
    """The mapping page: the uploaded file travels in the form until it is imported."""

    data = HiddenField(validators=[DataRequired()])
    filename = HiddenField()
    mapping = HiddenField()
    date_format = SelectField("Dates in the file", choices=select_choices(DATE_FORMAT_CHOICES))
    update = BooleanField("Update existing assets (otherwise rows with existing tags are "
                          "refused)")
    columns = FieldList(FormField(ColumnChoiceForm))
    values = FieldList(FormField(ValueChoiceForm))
    refresh = SubmitField("Update preview")
    submit = SubmitField("Import")
