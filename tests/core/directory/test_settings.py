"""The PACSDESK_LDAP_* settings: defaults, and an error naming the variable for each bad value."""

from __future__ import annotations

import pytest

from core.auth.directory import DIRECTORY_SETTINGS, ROLES, parse_directory_settings
from core.auth.models import Role
from core.config import ConfigError
from tests.core.directory.slapd import make_certificates

GROUPS = ("admin=cn=pacs-admins,ou=groups,dc=hospital,dc=org;"
          "requester=cn=radiology,ou=groups,dc=hospital,dc=org")
MINIMAL = {
    "PACSDESK_LDAP_URL": "ldaps://dc1.hospital.org",
    "PACSDESK_LDAP_BIND_DN": "cn=pacsdesk,ou=services,dc=hospital,dc=org",
    "PACSDESK_LDAP_BIND_PASSWORD": "s3rvice-secret",
    "PACSDESK_LDAP_USER_BASE": "ou=people,dc=hospital,dc=org",
    "PACSDESK_LDAP_ROLE_GROUPS": GROUPS,
}


def error_for(**changes: str | None) -> str:
    """The ConfigError message for MINIMAL with ``changes`` (None removes a variable)."""
    environ = MINIMAL | {f"PACSDESK_LDAP_{name.upper()}": value for name, value in changes.items()}
    environ = {name: value for name, value in environ.items() if value is not None}
    with pytest.raises(ConfigError) as caught:
        parse_directory_settings(environ)
    return str(caught.value)


def test_no_url_means_no_directory():
    assert parse_directory_settings({}) is None
    assert parse_directory_settings({"PACSDESK_LDAP_URL": "  ", "PACSDESK_LDAP_BIND_DN": "nonsense"}) is None


def test_defaults_are_active_directorys():
    config = parse_directory_settings(MINIMAL)
    assert config is not None
    assert config.urls == ("ldaps://dc1.hospital.org",)
    assert config.user_filter == "(sAMAccountName={username})"
    assert config.username_attribute == "sAMAccountName"
    assert (config.name_attribute, config.email_attribute, config.department_attribute) == (
        "displayName", "mail", "department")
    assert config.role_groups == (("admin", "cn=pacs-admins,ou=groups,dc=hospital,dc=org"),
                                  ("requester", "cn=radiology,ou=groups,dc=hospital,dc=org"))
    assert config.group_base == "ou=groups,dc=hospital,dc=org"
    assert (config.nested_groups, config.disabled_filter, config.ca_file) == (False, None, None)
    assert (config.allow_plain, config.timeout) == (False, 5)


def test_openldap_settings(tmp_path):
    ca = make_certificates(tmp_path).ca_file
    config = parse_directory_settings(MINIMAL | {
        "PACSDESK_LDAP_URL": "ldap://ldap1.clinic.org:389  ldaps://[::1]:1636",
        "PACSDESK_LDAP_USER_FILTER": "(&(objectClass=inetOrgPerson)(uid={username}))",
        "PACSDESK_LDAP_DISABLED_FILTER": "(pwdAccountLockedTime=*)",
        "PACSDESK_LDAP_NESTED_GROUPS": "yes", "PACSDESK_LDAP_TIMEOUT": "10", "PACSDESK_LDAP_CA_FILE": str(ca),
        "PACSDESK_LDAP_ROLE_GROUPS": "technician=cn=it,ou=groups,dc=clinic,dc=org; "
                                     "requester = cn=staff,ou=lists,dc=clinic,dc=org ;"})
    assert config is not None
    assert config.urls == ("ldap://ldap1.clinic.org:389", "ldaps://[::1]:1636")
    assert config.username_attribute == "uid"
    assert config.group_base == "dc=clinic,dc=org"
    assert (config.nested_groups, config.timeout) == (True, 10)
    assert config.disabled_filter == "(pwdAccountLockedTime=*)"


def test_password_from_a_file_loses_its_final_line_break(tmp_path):
    secret = tmp_path / "bind-password"
    secret.write_text("from-a-file\n")
    config = parse_directory_settings(MINIMAL | {"PACSDESK_LDAP_BIND_PASSWORD": "",
                                                 "PACSDESK_LDAP_BIND_PASSWORD_FILE": str(secret)})
    assert config is not None and config.bind_password == "from-a-file"
    assert "from-a-file" not in repr(config)


@pytest.mark.parametrize(("changes", "variable", "words"), [
    ({"url": "http://dc1.hospital.org"}, "PACSDESK_LDAP_URL", "ldaps://host:636"),
    ({"url": "ldaps://dc1 ldap://"}, "PACSDESK_LDAP_URL", "ldap://host:389"),
    ({"url": "ldaps://dc1:99999"}, "PACSDESK_LDAP_URL", "invalid port"),
    ({"url": "ldaps://dc1/dc=hospital,dc=org"}, "PACSDESK_LDAP_URL", "only a host and a port"),
    ({"bind_dn": None}, "PACSDESK_LDAP_BIND_DN", "must be set"),
    ({"bind_dn": "pacsdesk service"}, "PACSDESK_LDAP_BIND_DN", "distinguished name"),
    ({"user_base": None}, "PACSDESK_LDAP_USER_BASE", "must be set"),
    ({"role_groups": None}, "PACSDESK_LDAP_ROLE_GROUPS", "must be set"),
    ({"role_groups": "boss=cn=x,dc=h"}, "PACSDESK_LDAP_ROLE_GROUPS", "compliance, technician, requester"),
    ({"role_groups": "admin"}, "PACSDESK_LDAP_ROLE_GROUPS", "role=group DN"),
    ({"role_groups": " ; "}, "PACSDESK_LDAP_ROLE_GROUPS", "at least one role"),
    ({"role_groups": "admin=cn=a,dc=one;requester=cn=b,dc=two"}, "PACSDESK_LDAP_ROLE_GROUPS", "share a base"),
    ({"user_filter": "(uid=jdoe)"}, "PACSDESK_LDAP_USER_FILTER", "(attribute={username})"),
    ({"user_filter": "(|(uid={username})(mail={username}))"}, "PACSDESK_LDAP_USER_FILTER", "one (attribute"),
    ({"user_filter": "(&(uid={username})"}, "PACSDESK_LDAP_USER_FILTER", "not a valid LDAP filter"),
    ({"user_filter": "uid={username}"}, "PACSDESK_LDAP_USER_FILTER", "in parentheses"),
    ({"disabled_filter": "(employeeType=left"}, "PACSDESK_LDAP_DISABLED_FILTER", "not a valid LDAP filter"),
    ({"name_attribute": "display name"}, "PACSDESK_LDAP_NAME_ATTRIBUTE", "attribute name"),
    ({"email_attribute": "(mail)"}, "PACSDESK_LDAP_EMAIL_ATTRIBUTE", "attribute name"),
    ({"nested_groups": "maybe"}, "PACSDESK_LDAP_NESTED_GROUPS", "true/false"),
    ({"allow_plain": "sure"}, "PACSDESK_LDAP_ALLOW_PLAIN", "true/false"),
    ({"timeout": "0"}, "PACSDESK_LDAP_TIMEOUT", "1 to 120"),
    ({"timeout": "2.5"}, "PACSDESK_LDAP_TIMEOUT", "whole number"),
    ({"ca_file": "/nonexistent/ca.pem"}, "PACSDESK_LDAP_CA_FILE", "cannot load CA certificates"),
    ({"bind_password": None}, "PACSDESK_LDAP_BIND_PASSWORD", "not neither"),
    ({"bind_password_file": "/nonexistent/secret"}, "PACSDESK_LDAP_BIND_PASSWORD_FILE", "cannot read"),
])
def test_bad_value_names_the_variable(changes, variable, words):
    message = error_for(**changes)
    assert message.startswith(f"{variable}: ")
    assert words in message


def test_both_passwords_is_an_error(tmp_path):
    secret = tmp_path / "bind-password"
    secret.write_text("other")
    assert "not both" in error_for(bind_password_file=str(secret))


def test_a_ca_file_that_is_not_pem_is_refused_at_start_up(tmp_path):
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate")
    assert error_for(ca_file=str(junk)).startswith("PACSDESK_LDAP_CA_FILE: cannot load CA certificates")


def test_an_empty_password_file_is_refused(tmp_path):
    # An empty password would make the service account's bind anonymous.
    empty = tmp_path / "bind-password"
    empty.write_text("\n")
    message = error_for(bind_password=None, bind_password_file=str(empty))
    assert message.startswith("PACSDESK_LDAP_BIND_PASSWORD_FILE: cannot be empty")


def test_roles_are_the_apps_roles_most_privileged_first():
    assert set(ROLES) == {role.value for role in Role}
    assert ROLES[0] == Role.ADMIN and ROLES[-1] == Role.REQUESTER


def test_every_setting_is_listed_for_the_readme():
    names = [setting.name for setting in DIRECTORY_SETTINGS]
    assert len(names) == len(set(names)) and all(name.startswith("PACSDESK_LDAP_") for name in names)
    assert all(setting.help for setting in DIRECTORY_SETTINGS)
