"""Mail settings: URLs parsed as documented, errors naming the variable, passwords never shown."""

from __future__ import annotations

import pytest

from core.mail.settings import (
    MailConfigError,
    SmtpSecurity,
    load_mail_settings,
    parse_imap_url,
    parse_mail_url,
)

URL = "PACSDESK_MAIL_URL"
BASE = {"PACSDESK_MAIL_FROM": "PACS Desk <pacsdesk@hospital.example>",
        "PACSDESK_BASE_URL": "https://pacsdesk.hospital.example/"}


def test_no_mail_url_means_email_is_off():
    settings = load_mail_settings({})
    assert not settings.enabled and settings.smtp is None and settings.imap is None


def test_smtp_url_with_starttls_and_percent_encoded_credentials():
    env = BASE | {"PACSDESK_MAIL_URL": "smtp://desk%40hospital.example:p%40ss%3Aword@mail.hospital.example"}
    settings = load_mail_settings(env, organization="St. Example")
    smtp = settings.smtp
    assert smtp is not None and settings.enabled
    assert (smtp.host, smtp.port, smtp.security) == ("mail.hospital.example", 587, SmtpSecurity.STARTTLS)
    assert (smtp.username, smtp.password) == ("desk@hospital.example", "p@ss:word")
    assert smtp.helo_name == "pacsdesk.hospital.example" and smtp.timeout == 30
    assert settings.identity is not None
    assert settings.identity.address == "pacsdesk@hospital.example"
    assert settings.identity.display_name == "PACS Desk"
    assert settings.identity.base_url == "https://pacsdesk.hospital.example"
    assert settings.identity.domain == "hospital.example"


def test_smtps_url_defaults_to_port_465_and_a_timeout_can_be_set():
    smtp = parse_mail_url("smtps://u:p@mail.hospital.example?timeout=5")
    assert smtp is not None and (smtp.port, smtp.security, smtp.timeout) == (465, SmtpSecurity.SMTPS, 5)


def test_plain_relay_needs_starttls_false_and_no_credentials():
    smtp = parse_mail_url("smtp://relay.hospital.example:25?starttls=false")
    assert smtp is not None and smtp.security is SmtpSecurity.STARTTLS_IF_OFFERED and smtp.username is None
    with pytest.raises(MailConfigError, match="never sent unencrypted"):
        parse_mail_url("smtp://u:p@relay.hospital.example:25?starttls=false")


def test_password_files_override_the_urls_passwords(tmp_path):
    (tmp_path / "smtp-password").write_text("smtp-from-the-file\n")
    (tmp_path / "imap-password").write_text("imap-from-the-file")
    env = BASE | {"PACSDESK_MAIL_URL": "smtp://desk:in-the-url@mail.hospital.example",
                  "PACSDESK_MAIL_PASSWORD_FILE": str(tmp_path / "smtp-password"),
                  "PACSDESK_MAIL_IMAP_URL": "imaps://desk@mail.hospital.example",
                  "PACSDESK_MAIL_IMAP_PASSWORD_FILE": str(tmp_path / "imap-password")}
    settings = load_mail_settings(env)
    assert settings.smtp is not None and settings.smtp.password == "smtp-from-the-file"
    assert settings.imap is not None and settings.imap.password == "imap-from-the-file"


def test_passwords_never_appear_in_repr_or_str():
    env = BASE | {"PACSDESK_MAIL_URL": "smtp://desk:Sm7p-Secret@mail.hospital.example",
                  "PACSDESK_MAIL_IMAP_URL": "imaps://desk:Im4p-Secret@mail.hospital.example/INBOX"}
    settings = load_mail_settings(env)
    assert settings.smtp is not None and settings.imap is not None
    for shown in (repr(settings), str(settings), settings.smtp.describe(), settings.imap.describe()):
        assert "Sm7p-Secret" not in shown and "Im4p-Secret" not in shown


def test_imap_urls_give_tls_mode_port_and_folder():
    imaps = parse_imap_url("imaps://desk:pw@mail.hospital.example/Help%20Desk")
    assert imaps is not None and (imaps.port, imaps.implicit_tls, imaps.folder) == (993, True, "Help Desk")
    imap = parse_imap_url("imap://desk:pw@mail.hospital.example:1143", processed_folder="Done")
    assert imap is not None and (imap.port, imap.implicit_tls, imap.folder) == (1143, False, "INBOX")
    assert imap.processed_folder == "Done"


@pytest.mark.parametrize(("env", "variable", "words"), [
    ({URL: "http://mail.hospital.example"}, URL, "smtp:// or smtps://"),
    ({URL: "smtp://u:Secret-1@mail.hospital.example:99999"}, URL, "invalid port"),
    ({URL: "smtp://u@mail.hospital.example"}, URL, "no password"),
    ({URL: "smtp://:Secret-1@mail.hospital.example"}, URL, "no user"),
    ({URL: "smtp://u:Secret-1@mail.hospital.example?tls=1"}, URL, "unknown option"),
    ({URL: "smtp://u:Secret-1@mail.hospital.example?timeout=0"}, URL, "timeout"),
    ({URL: "smtps://u:Secret-1@h.example?starttls=false"}, URL, "smtps"),
    ({URL: "smtp://u:Secret-1@mail.hospital.example", "PACSDESK_MAIL_FROM": "nobody"},
     "PACSDESK_MAIL_FROM", "an address such as"),
    ({URL: "smtp://u:Secret-1@mail.hospital.example", "PACSDESK_MAIL_FROM": ""},
     "PACSDESK_MAIL_FROM", "required when e-mail is on"),
    ({URL: "smtp://u:Secret-1@mail.hospital.example", "PACSDESK_BASE_URL": "pacsdesk"},
     "PACSDESK_BASE_URL", "http:// or https://"),
    ({URL: "smtp://u:Secret-1@mail.hospital.example", "PACSDESK_BASE_URL": ""},
     "PACSDESK_BASE_URL", "required when e-mail is on"),
    ({"PACSDESK_MAIL_PASSWORD_FILE": "/nonexistent/pw", URL: "smtp://u@h.example"},
     "PACSDESK_MAIL_PASSWORD_FILE", "cannot read /nonexistent/pw"),
    ({"PACSDESK_MAIL_IMAP_URL": "imaps://mail.hospital.example"}, "PACSDESK_MAIL_IMAP_URL", "needs a user"),
    ({"PACSDESK_MAIL_IMAP_URL": "pop3://u:Secret-1@mail.hospital.example"}, "PACSDESK_MAIL_IMAP_URL",
     "imap:// or imaps://"),
    ({"PACSDESK_MAIL_IMAP_URL": "imaps://u:Secret-1@h.example/In*box"}, "PACSDESK_MAIL_IMAP_URL",
     "folder name"),
    ({"PACSDESK_MAIL_IMAP_URL": "imaps://u:Secret-1@h.example", "PACSDESK_MAIL_PROCESSED_FOLDER": "inbox"},
     "PACSDESK_MAIL_PROCESSED_FOLDER", "must differ"),
    ({"PACSDESK_MAIL_CA_FILE": "/nonexistent/ca.pem"}, "PACSDESK_MAIL_CA_FILE", "does not exist"),
])
def test_bad_values_name_the_variable_and_never_the_password(env, variable, words):
    with pytest.raises(MailConfigError) as refused:
        load_mail_settings(BASE | env)
    assert refused.value.variable == variable
    assert str(refused.value).startswith(f"{variable}: ") and words in str(refused.value)
    assert "Secret-1" not in str(refused.value)


def test_ca_file_that_is_not_a_certificate_is_refused(tmp_path):
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")
    with pytest.raises(MailConfigError, match=r"PACSDESK_MAIL_CA_FILE: .* not a readable PEM"):
        load_mail_settings({"PACSDESK_MAIL_CA_FILE": str(bogus)})


def test_ca_file_applies_to_both_servers(test_ca):
    env = BASE | {"PACSDESK_MAIL_URL": "smtp://u:p@mail.hospital.example",
                  "PACSDESK_MAIL_IMAP_URL": "imaps://u:p@mail.hospital.example",
                  "PACSDESK_MAIL_CA_FILE": str(test_ca.ca_path)}
    settings = load_mail_settings(env)
    assert settings.smtp is not None and settings.imap is not None
    assert settings.smtp.ca_file == settings.imap.ca_file == str(test_ca.ca_path)
