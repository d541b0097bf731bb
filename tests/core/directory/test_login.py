"""Logging in against a real OpenLDAP: passwords, hostile usernames, roles, disabled accounts."""

from __future__ import annotations

import pytest
from ldap3 import NONE, Connection, Server

from core.auth.directory import (
    NOT_ALLOWED,
    AccountDisabled,
    DirectoryUnavailable,
    InvalidCredentials,
    NotAllowed,
    authenticate,
)
from tests.core.directory.data import EXPIRED_AT, FUTURE_EXPIRY, ad_dn, ad_group, ol_group
from tests.core.directory.slapd import AD_SUFFIX, SERVICE_PASSWORD, USER_PASSWORD

pytestmark = pytest.mark.integration


def test_good_password_logs_in_with_the_directory_profile(ad_config):
    user = authenticate(ad_config(), "rita.radiologist", USER_PASSWORD)
    assert user.username == "rita.radiologist"
    assert user.dn == ad_dn("Rita Núñez")
    assert (user.full_name, user.email, user.department) == ("Rita Núñez", "rita.radiologist@hospital.org",
                                                             "Radiology")
    assert user.role == "requester"
    assert user.groups == (ad_group("radiology"),)
    assert not user.disabled and user.expires_at is None


def test_username_is_matched_without_case_and_returned_lower_case(ad_config):
    assert authenticate(ad_config(), "  Tom.TECH ", USER_PASSWORD).username == "tom.tech"


def test_attribute_names_are_matched_without_case(ad_config):
    config = ad_config(user_filter="(SAMACCOUNTNAME={username})", name_attribute="DISPLAYNAME",
                       email_attribute="Mail", department_attribute="DEPARTMENT")
    user = authenticate(config, "rita.radiologist", USER_PASSWORD)
    assert (user.username, user.full_name, user.email, user.department) == (
        "rita.radiologist", "Rita Núñez", "rita.radiologist@hospital.org", "Radiology")


def test_wrong_password_is_invalid_credentials(ad_config):
    with pytest.raises(InvalidCredentials) as caught:
        authenticate(ad_config(), "rita.radiologist", USER_PASSWORD + "x")
    assert "wrong password" in caught.value.detail
    assert caught.value.message == "invalid username or password"


def test_unknown_user_gets_the_same_error_as_a_wrong_password(ad_config):
    with pytest.raises(InvalidCredentials) as caught:
        authenticate(ad_config(), "nobody.here", USER_PASSWORD)
    assert caught.value.detail == "unknown user"
    assert caught.value.message == InvalidCredentials("wrong password").message


def test_empty_password_is_refused_before_it_becomes_an_anonymous_bind(ad_config):
    # An empty-password simple bind succeeds on LDAP servers (RFC 4513 unauthenticated bind).
    for password in ("", None):
        with pytest.raises(InvalidCredentials, match="empty password"):
            authenticate(ad_config(), "rita.radiologist", password)


@pytest.mark.parametrize("username", ["*", "rita*", "*)(uid=*", "admin)(|(uid=*", "*)(sAMAccountName=*",
                                      "rita.radiologist)(|(sAMAccountName=*", "\\2a", "(sAMAccountName=*)"])
def test_filter_injection_matches_nobody(ad_config, username):
    # Wildcards and parentheses are escaped (RFC 4515), so these match no entry at all: the
    # error is "unknown user", never "several entries match" or a login.
    with pytest.raises(InvalidCredentials) as caught:
        authenticate(ad_config(), username, USER_PASSWORD)
    assert caught.value.detail == "unknown user"


@pytest.mark.parametrize("username", ["rita\x00.radiologist", "rita.radiologist\x00", "tom\ntech",
                                      "tom\x7f", "a" * 10_000, "a" * 257])
def test_hostile_usernames_are_refused_before_any_network_call(ad_config, username):
    dead = ad_config(url="ldap://127.0.0.1:9")  # would raise DirectoryUnavailable if contacted
    with pytest.raises(InvalidCredentials):
        authenticate(dead, username, USER_PASSWORD)
    with pytest.raises(InvalidCredentials):
        authenticate(ad_config(), username, USER_PASSWORD)


def test_a_256_character_username_is_still_looked_up(ad_config):
    dead = ad_config(url="ldap://127.0.0.1:9", allow_plain="true")
    with pytest.raises(DirectoryUnavailable):
        authenticate(dead, "a" * 256, USER_PASSWORD)


@pytest.mark.parametrize(("username", "role"), [
    ("alice.admin", "admin"),            # pacs-admins and radiology: admin wins
    ("carol.compliance", "compliance"),  # compliance-office and radiology
    ("tom.tech", "technician"),
    ("fay.future", "requester"),
])
def test_role_is_the_most_privileged_mapped_group(ad_config, username, role):
    assert authenticate(ad_config(), username, USER_PASSWORD).role == role


def test_every_mapped_group_is_reported(ad_config):
    user = authenticate(ad_config(), "alice.admin", USER_PASSWORD)
    assert set(user.groups) == {ad_group("pacs-admins"), ad_group("radiology")}


def test_a_person_in_no_mapped_group_is_not_allowed(ad_config):
    with pytest.raises(NotAllowed) as caught:
        authenticate(ad_config(), "nora.nogroup", USER_PASSWORD)
    assert str(caught.value).startswith(NOT_ALLOWED)
    assert caught.value.message == "your account is not allowed to use PACS Desk; ask the PACS team"


def test_not_allowed_is_only_said_to_someone_who_knows_the_password(ad_config):
    with pytest.raises(InvalidCredentials):
        authenticate(ad_config(), "nora.nogroup", "a wrong password")


def test_group_dns_match_whatever_their_case_and_spacing(ad_config):
    groups = "admin=CN=PACS-Admins, OU=Groups, DC=Hospital, DC=Org"
    user = authenticate(ad_config(role_groups=groups), "alice.admin", USER_PASSWORD)
    assert user.role == "admin"
    assert user.groups == ("CN=PACS-Admins, OU=Groups, DC=Hospital, DC=Org",)


def test_openldap_ignores_the_ad_in_chain_rule_which_is_why_nesting_is_expanded_here(slapd):
    # The premise of the fallback: OpenLDAP answers the AD matching rule with no entries, no error.
    server = Server("127.0.0.1", port=slapd.port, get_info=NONE)
    with Connection(server, f"cn=pacsdesk,ou=services,{AD_SUFFIX}", SERVICE_PASSWORD, auto_bind=True) as conn:
        query = f"(member:1.2.840.113556.1.4.1941:={ad_dn('Rex Resident')})"
        assert conn.search(f"ou=groups,{AD_SUFFIX}", query) is False
        assert conn.result["description"] == "success" and conn.entries == []
        assert conn.search(f"ou=groups,{AD_SUFFIX}", f"(member={ad_dn('Rex Resident')})") is True


def test_nested_group_member_needs_nested_groups_enabled(ad_config):
    with pytest.raises(NotAllowed):
        authenticate(ad_config(), "rex.resident", USER_PASSWORD)
    user = authenticate(ad_config(nested_groups="true"), "rex.resident", USER_PASSWORD)
    assert user.role == "requester"
    assert user.groups == (ad_group("radiology"),)


def test_ad_disabled_bit_refuses_login(ad_config):
    with pytest.raises(AccountDisabled) as caught:
        authenticate(ad_config(), "dan.disabled", USER_PASSWORD)
    assert "expired" not in caught.value.detail


def test_disabled_is_only_said_to_someone_who_knows_the_password(ad_config):
    with pytest.raises(InvalidCredentials):
        authenticate(ad_config(), "dan.disabled", "a wrong password")


def test_expired_ad_account_is_disabled_with_its_expiry(ad_config):
    with pytest.raises(AccountDisabled) as caught:
        authenticate(ad_config(), "ed.expired", USER_PASSWORD)
    assert "expired 2020-01-31 17:00 UTC" in caught.value.detail


def test_account_expiring_in_the_future_logs_in_and_says_when(ad_config):
    user = authenticate(ad_config(), "fay.future", USER_PASSWORD)
    assert user.expires_at == FUTURE_EXPIRY
    assert not user.disabled
    assert user.expires_at > EXPIRED_AT


def test_account_that_never_expires_has_no_expiry(ad_config):
    # alice's accountExpires is 9223372036854775807, rita's is 0: both mean never.
    assert authenticate(ad_config(), "alice.admin", USER_PASSWORD).expires_at is None


def test_openldap_user_logs_in_by_uid_with_member_groups(openldap_config):
    user = authenticate(openldap_config(), "peter", USER_PASSWORD)
    assert (user.username, user.full_name, user.department, user.role) == (
        "peter", "Peter Requester", "Radiology", "requester")


def test_openldap_unique_member_group_gives_the_role(openldap_config):
    user = authenticate(openldap_config(), "olga", USER_PASSWORD)
    assert user.role == "admin"
    assert user.groups == (ol_group("pacs-admins"),)


def test_openldap_disabled_filter_refuses_login(openldap_config):
    with pytest.raises(AccountDisabled):
        authenticate(openldap_config(), "lena", USER_PASSWORD)
    assert authenticate(openldap_config(disabled_filter=""), "lena", USER_PASSWORD).role == "requester"


def test_openldap_nested_groups_are_expanded_client_side(openldap_config):
    # nick -> night-shift -> radiology-techs -> pacs-technicians; OpenLDAP has no in-chain rule.
    with pytest.raises(NotAllowed):
        authenticate(openldap_config(), "nick", USER_PASSWORD)
    assert authenticate(openldap_config(nested_groups="true"), "nick", USER_PASSWORD).role == "technician"


def test_group_loops_end_and_still_find_the_role(openldap_config):
    # lou -> loop-a <-> loop-b -> pacs-technicians
    assert authenticate(openldap_config(nested_groups="true"), "lou", USER_PASSWORD).role == "technician"


def test_nesting_deeper_than_the_limit_is_not_followed(openldap_config):
    # deep -> chain-12 -> ... -> chain-1 -> pacs-technicians: 12 levels, beyond MAX_NESTING.
    with pytest.raises(NotAllowed):
        authenticate(openldap_config(nested_groups="true"), "deep", USER_PASSWORD)


def test_wrong_service_password_is_unavailable_and_says_so(ad_config):
    with pytest.raises(DirectoryUnavailable) as caught:
        authenticate(ad_config(bind_password="not-the-service-password"), "rita.radiologist", USER_PASSWORD)
    assert "service account (PACSDESK_LDAP_BIND_DN) was refused" in caught.value.detail


def test_wrong_user_base_is_an_error_not_an_unknown_user(ad_config):
    with pytest.raises(DirectoryUnavailable, match="noSuchObject"):
        authenticate(ad_config(user_base=f"ou=nowhere,{AD_SUFFIX}"), "rita.radiologist", USER_PASSWORD)


def test_passwords_never_appear_in_what_is_returned_or_logged(ad_config):
    user = authenticate(ad_config(), "rita.radiologist", USER_PASSWORD)
    assert USER_PASSWORD not in repr(user)
    assert "service-account-secret" not in repr(ad_config())
