"""The test directories' people and groups: an AD-shaped tree and an OpenLDAP-shaped tree."""

from __future__ import annotations

import datetime as dt

from tests.core.directory.slapd import AD_SUFFIX, OPENLDAP_SUFFIX, SERVICE_PASSWORD, USER_PASSWORD

Entry = tuple[str, dict[str, list[str]]]

AD_EPOCH = dt.datetime(1601, 1, 1, tzinfo=dt.UTC)
NEVER = "9223372036854775807"
UF_NORMAL_ACCOUNT, UF_ACCOUNTDISABLE = 0x200, 0x2
EXPIRED_AT = dt.datetime(2020, 1, 31, 17, 0, tzinfo=dt.UTC)
FUTURE_EXPIRY = dt.datetime(2099, 6, 30, 22, 0, tzinfo=dt.UTC)
GENERATED_COUNT = 1200


def ad_time(moment: dt.datetime) -> str:
    """A time as AD's accountExpires: 100 ns intervals since 1601-01-01 UTC."""
    return str((moment - AD_EPOCH) // dt.timedelta(microseconds=1) * 10)


def _base(suffix: str) -> list[Entry]:
    """The suffix entry, its organisational units and the PACS Desk service account."""
    dc = suffix.split(",")[0].split("=")[1]
    entries: list[Entry] = [(suffix, {"objectClass": ["dcObject", "organization"], "dc": [dc],
                                      "o": [dc.title()]})]
    for ou in ("services", "staff", "people", "groups", "generated"):
        entries.append((f"ou={ou},{suffix}", {"objectClass": ["organizationalUnit"], "ou": [ou]}))
    entries.append((f"cn=pacsdesk,ou=services,{suffix}", {
        "objectClass": ["organizationalRole", "simpleSecurityObject"], "cn": ["pacsdesk"],
        "userPassword": [SERVICE_PASSWORD]}))
    return entries


def _ad_user(name: str, display: str, department: str, *, control: int = UF_NORMAL_ACCOUNT,
             expires: str = "0") -> Entry:
    """A person in the AD-shaped tree, logging in by sAMAccountName."""
    given, _, family = display.partition(" ")
    return (f"cn={display},ou=staff,{AD_SUFFIX}", {
        "objectClass": ["inetOrgPerson", "pacsdeskTestAdAccount"], "cn": [display], "sn": [family],
        "givenName": [given], "displayName": [display], "sAMAccountName": [name],
        "mail": [f"{name}@hospital.org"], "department": [department],
        "userAccountControl": [str(control)], "accountExpires": [expires],
        "userPassword": [USER_PASSWORD]})


def ad_dn(display: str) -> str:
    """DN of a person in the AD-shaped tree."""
    return f"cn={display},ou=staff,{AD_SUFFIX}"


def ad_group(cn: str) -> str:
    """DN of a group in the AD-shaped tree."""
    return f"cn={cn},ou=groups,{AD_SUFFIX}"


def group_entry(dn: str, members: list[str], unique: bool = False) -> Entry:
    """A groupOfNames (member) or groupOfUniqueNames (uniqueMember)."""
    cn = dn.split(",")[0].split("=")[1]
    if unique:
        return dn, {"objectClass": ["groupOfUniqueNames"], "cn": [cn], "uniqueMember": members}
    return dn, {"objectClass": ["groupOfNames"], "cn": [cn], "member": members}


def ad_entries() -> list[Entry]:
    """Active Directory's shape: sAMAccountName, userAccountControl, accountExpires, memberOf."""
    people = [
        _ad_user("alice.admin", "Alice Admin", "PACS", expires=NEVER),
        _ad_user("carol.compliance", "Carol Compliance", "Compliance"),
        _ad_user("tom.tech", "Tom Tech", "Imaging IT"),
        _ad_user("rita.radiologist", "Rita Núñez", "Radiology"),
        _ad_user("rex.resident", "Rex Resident", "Radiology"),
        _ad_user("nora.nogroup", "Nora Nogroup", "Cafeteria"),
        _ad_user("dan.disabled", "Dan Disabled", "Radiology", control=UF_NORMAL_ACCOUNT | UF_ACCOUNTDISABLE),
        _ad_user("ed.expired", "Ed Expired", "Radiology", expires=ad_time(EXPIRED_AT)),
        _ad_user("fay.future", "Fay Future", "Radiology", expires=ad_time(FUTURE_EXPIRY)),
    ]
    groups = [
        group_entry(ad_group("pacs-admins"), [ad_dn("Alice Admin")]),
        group_entry(ad_group("compliance-office"), [ad_dn("Carol Compliance")]),
        group_entry(ad_group("pacs-technicians"), [ad_dn("Tom Tech")]),
        group_entry(ad_group("radiology-residents"), [ad_dn("Rex Resident")]),
        group_entry(ad_group("radiology"), [
            *(ad_dn(name) for name in ("Alice Admin", "Carol Compliance", "Rita Núñez", "Dan Disabled",
                                       "Ed Expired", "Fay Future")),
            ad_group("radiology-residents")]),
        group_entry(ad_group("cafeteria"), [ad_dn("Nora Nogroup")]),
    ]
    return _base(AD_SUFFIX) + people + groups


def ol_dn(uid: str, ou: str = "people") -> str:
    """DN of a person in the OpenLDAP-shaped tree."""
    return f"uid={uid},ou={ou},{OPENLDAP_SUFFIX}"


def ol_group(cn: str) -> str:
    """DN of a group in the OpenLDAP-shaped tree."""
    return f"cn={cn},ou=groups,{OPENLDAP_SUFFIX}"


def ol_user(uid: str, name: str, *, ou: str = "people", employee_type: str = "staff") -> Entry:
    """A person in the OpenLDAP-shaped tree, logging in by uid."""
    return (ol_dn(uid, ou), {
        "objectClass": ["inetOrgPerson"], "uid": [uid], "cn": [name], "sn": [name.split()[-1]],
        "mail": [f"{uid}@clinic.org"], "departmentNumber": ["Radiology"],
        "employeeType": [employee_type], "userPassword": [USER_PASSWORD]})


CHAIN_DEPTH = 12


def openldap_entries() -> list[Entry]:
    """OpenLDAP's usual shape: uid, groupOfNames and groupOfUniqueNames, no memberOf."""
    people = [ol_user(uid, name) for uid, name in (
        ("olga", "Olga Admin"), ("peter", "Peter Requester"), ("nick", "Nick Nightshift"),
        ("lou", "Lou Loop"), ("deep", "Dee Deep"))]
    people.append(ol_user("lena", "Lena Left", employee_type="left"))
    chain = [group_entry(ol_group(f"chain-{level}"), [ol_dn("deep") if level == CHAIN_DEPTH
                                                 else ol_group(f"chain-{level + 1}")])
             for level in range(CHAIN_DEPTH, 0, -1)]
    groups = [
        group_entry(ol_group("pacs-admins"), [ol_dn("olga")], unique=True),
        group_entry(ol_group("radiology"), [ol_dn("peter"), ol_dn("lena")]),
        group_entry(ol_group("night-shift"), [ol_dn("nick")]),
        group_entry(ol_group("radiology-techs"), [ol_group("night-shift")]),
        # loop-a and loop-b contain each other; loop-b is a technicians' group.
        group_entry(ol_group("loop-a"), [ol_dn("lou")]),
        group_entry(ol_group("loop-b"), [ol_group("loop-a")]),
        *chain,
        group_entry(ol_group("pacs-technicians"), [ol_group("radiology-techs"), ol_group("loop-b"),
                                              ol_group("chain-1")]),
    ]
    loop_back = (ol_group("loop-a"), {"changetype": ["modify"], "add": ["member"],
                                      "member": [ol_group("loop-b")]})
    return _base(OPENLDAP_SUFFIX) + people + groups + [loop_back]


def generated_role(index: int) -> str | None:
    """The role generated user ``index`` should get (None: in no mapped group)."""
    if index % 10 == 0:
        return "technician"
    if index % 7 == 0:
        return None
    return "requester"


def generated_entries(count: int = GENERATED_COUNT, ou: str = "generated") -> list[Entry]:
    """``count`` users under ``ou``, with two role groups and every 50th one marked as left."""
    users = [ol_user(f"user{index:05d}", f"Generated User{index:05d}", ou=ou,
                     employee_type="left" if index % 50 == 49 else "staff") for index in range(count)]
    techs = [ol_dn(f"user{i:05d}", ou) for i in range(count) if generated_role(i) == "technician"]
    requesters = [ol_dn(f"user{i:05d}", ou) for i in range(count) if generated_role(i) == "requester"]
    # Technicians also sit in the requesters' group: the more privileged role must win.
    return [*users, group_entry(ol_group(f"{ou}-techs"), techs),
            group_entry(ol_group(f"{ou}-requesters"), requesters + techs)]
