"""Listing every directory user for the sync job: paging, roles, disabled and removed people."""

from __future__ import annotations

import uuid

import pytest

from core.auth.directory import DirectoryUnavailable, list_users
from tests.core.directory.data import (
    EXPIRED_AT,
    GENERATED_COUNT,
    generated_role,
    group_entry,
    ol_dn,
    ol_group,
    ol_user,
)
from tests.core.directory.slapd import OPENLDAP_SUFFIX, ldif

pytestmark = pytest.mark.integration


def generated_config(openldap_config, ou: str = "generated", **overrides):
    """Settings for the generated users under ``ou`` and their two role groups."""
    groups = f"technician={ol_group(f'{ou}-techs')};requester={ol_group(f'{ou}-requesters')}"
    return openldap_config(user_base=f"ou={ou},{OPENLDAP_SUFFIX}", role_groups=groups, **overrides)


def test_every_generated_user_is_listed_across_pages(openldap_config):
    # The server answers at most 500 entries per search (like AD's MaxPageSize): 1,200 need paging.
    users = {user.username: user for user in list_users(generated_config(openldap_config))}
    assert len(users) == GENERATED_COUNT
    assert set(users) == {f"user{index:05d}" for index in range(GENERATED_COUNT)}


def test_generated_users_get_their_role_and_disabled_state(openldap_config):
    users = {user.username: user for user in list_users(generated_config(openldap_config))}
    for index in range(GENERATED_COUNT):
        user = users[f"user{index:05d}"]
        assert user.role == generated_role(index), user
        assert user.disabled == (index % 50 == 49), user
    # Technicians are in the requesters' group as well: the more privileged role wins.
    assert users["user00010"].groups == (ol_group("generated-techs"), ol_group("generated-requesters"))
    assert users["user00007"].role is None and users["user00007"].groups == ()


def test_listing_reads_the_profile(openldap_config):
    user = next(u for u in list_users(generated_config(openldap_config)) if u.username == "user00001")
    assert (user.dn, user.full_name, user.email, user.department) == (
        ol_dn("user00001", "generated"), "Generated User00001", "user00001@clinic.org", "Radiology")


def test_ad_shaped_listing_matches_what_login_says(ad_config):
    users = {user.username: user for user in list_users(ad_config())}
    assert {name: user.role for name, user in users.items()} == {
        "alice.admin": "admin", "carol.compliance": "compliance", "tom.tech": "technician",
        "rita.radiologist": "requester", "rex.resident": None, "nora.nogroup": None,
        "dan.disabled": "requester", "ed.expired": "requester", "fay.future": "requester"}
    assert {name for name, user in users.items() if user.disabled} == {"dan.disabled", "ed.expired"}
    assert users["ed.expired"].expires_at == EXPIRED_AT


def test_nested_groups_in_the_listing(ad_config, openldap_config):
    ad_roles = {u.username: u.role for u in list_users(ad_config(nested_groups="true"))}
    assert ad_roles["rex.resident"] == "requester"
    roles = {u.username: u.role for u in list_users(openldap_config(nested_groups="true"))}
    # nick two levels down, lou through a loop, deep beyond the nesting limit: as at login.
    assert (roles["nick"], roles["lou"], roles["deep"]) == ("technician", "technician", None)
    assert {u.username: u.role for u in list_users(openldap_config())}["nick"] is None


def test_a_missing_user_base_raises_instead_of_listing_nobody(openldap_config):
    # An empty list would make the sync job disable every account: it must be an error.
    with pytest.raises(DirectoryUnavailable, match="noSuchObject"):
        list(list_users(openldap_config(user_base=f"ou=nowhere,{OPENLDAP_SUFFIX}")))


def test_a_missing_role_group_counts_nobody_in_it(openldap_config):
    groups = f"admin={ol_group('no-such-group')};requester={ol_group('radiology')}"
    config = openldap_config(role_groups=groups)
    roles = {u.username: u.role for u in list_users(config)}
    assert roles["olga"] is None and roles["peter"] == "requester"


def test_sync_sees_people_leave_groups_get_disabled_and_disappear(slapd, openldap_config):
    ou = f"sync-{uuid.uuid4().hex[:8]}"  # this test's own entries: the shared tree is not touched
    people = [ol_user(uid, f"Sync {uid.title()}", ou=ou) for uid in ("stay", "mover", "leaver", "gone")]
    requesters = [ol_dn(uid, ou) for uid in ("stay", "leaver", "gone")]
    slapd.load(ldif([(f"ou={ou},{OPENLDAP_SUFFIX}", {"objectClass": ["organizationalUnit"], "ou": [ou]}),
                     *people, group_entry(ol_group(f"{ou}-techs"), [ol_dn("mover", ou)]),
                     group_entry(ol_group(f"{ou}-requesters"), requesters)]), OPENLDAP_SUFFIX)
    config = generated_config(openldap_config, ou)
    before = {u.username: (u.role, u.disabled) for u in list_users(config)}
    assert before == {"stay": ("requester", False), "mover": ("technician", False),
                      "leaver": ("requester", False), "gone": ("requester", False)}

    slapd.modify(ldif([
        (ol_group(f"{ou}-techs"), {"changetype": ["modify"], "add": ["member"],
                                   "member": [ol_dn("stay", ou)]}),
        (ol_group(f"{ou}-techs"), {"changetype": ["modify"], "delete": ["member"],
                                   "member": [ol_dn("mover", ou)]}),
        (ol_dn("leaver", ou), {"changetype": ["modify"], "replace": ["employeeType"],
                               "employeeType": ["left"]}),
        (ol_dn("gone", ou), {"changetype": ["delete"]}),
    ]), OPENLDAP_SUFFIX)
    after = {u.username: (u.role, u.disabled) for u in list_users(config)}
    assert after == {"stay": ("technician", False), "mover": (None, False), "leaver": ("requester", True)}
