"""One real slapd for the session (read-only in tests), and settings that point at it."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.auth.directory import DirectoryConfig, parse_directory_settings
from tests.core.directory.data import ad_entries, ad_group, generated_entries, ol_group, openldap_entries
from tests.core.directory.slapd import (
    AD_SUFFIX,
    OPENLDAP_SUFFIX,
    SERVICE_PASSWORD,
    Certificates,
    Slapd,
    find_slapd,
    ldif,
    make_certificates,
)

AD_ROLE_GROUPS = ";".join([
    f"admin={ad_group('pacs-admins')}", f"compliance={ad_group('compliance-office')}",
    f"technician={ad_group('pacs-technicians')}", f"requester={ad_group('radiology')}"])
OPENLDAP_ROLE_GROUPS = ";".join([
    f"admin={ol_group('pacs-admins')}", f"technician={ol_group('pacs-technicians')}",
    f"requester={ol_group('radiology')}"])

Configure = Callable[..., DirectoryConfig]


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """The test CA, a certificate for 127.0.0.1 and one for another host name."""
    return make_certificates(tmp_path_factory.mktemp("certificates"))


def start_slapd(folder: Path, certificates: Certificates | None, wrong_host: bool = False) -> Slapd:
    """Start a slapd in ``folder``; TLS with the right (or the wrong-host) certificate, or none."""
    find_slapd()
    tls = None
    if certificates:
        tls = (certificates.wrong_host_cert, certificates.wrong_host_key) if wrong_host \
            else (certificates.server_cert, certificates.server_key)
    server = Slapd(folder, tls, certificates.ca_file if certificates else None)
    server.start()
    return server


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory, certificates: Certificates) -> Iterator[Slapd]:
    """The hospital directory: the AD-shaped and OpenLDAP-shaped trees and generated users."""
    server = start_slapd(tmp_path_factory.mktemp("slapd"), certificates)
    try:
        server.load(ldif(ad_entries()), AD_SUFFIX)
        server.load(ldif(openldap_entries() + generated_entries()), OPENLDAP_SUFFIX)
        yield server
    finally:
        server.stop()


def ad_settings(server: Slapd, certificates: Certificates) -> dict[str, str]:
    """Settings for the AD-shaped tree as a hospital would write them (ldaps, CA file)."""
    return {
        "PACSDESK_LDAP_URL": server.ldaps_url,
        "PACSDESK_LDAP_CA_FILE": str(certificates.ca_file),
        "PACSDESK_LDAP_BIND_DN": f"cn=pacsdesk,ou=services,{AD_SUFFIX}",
        "PACSDESK_LDAP_BIND_PASSWORD": SERVICE_PASSWORD,
        "PACSDESK_LDAP_USER_BASE": f"ou=staff,{AD_SUFFIX}",
        "PACSDESK_LDAP_ROLE_GROUPS": AD_ROLE_GROUPS,
        "PACSDESK_LDAP_TIMEOUT": "3",
    }


def openldap_settings(server: Slapd, certificates: Certificates) -> dict[str, str]:
    """Settings for the OpenLDAP-shaped tree (StartTLS, uid, a disabled filter)."""
    return {
        "PACSDESK_LDAP_URL": server.ldap_url,
        "PACSDESK_LDAP_CA_FILE": str(certificates.ca_file),
        "PACSDESK_LDAP_BIND_DN": f"cn=pacsdesk,ou=services,{OPENLDAP_SUFFIX}",
        "PACSDESK_LDAP_BIND_PASSWORD": SERVICE_PASSWORD,
        "PACSDESK_LDAP_USER_BASE": f"ou=people,{OPENLDAP_SUFFIX}",
        "PACSDESK_LDAP_USER_FILTER": "(uid={username})",
        "PACSDESK_LDAP_NAME_ATTRIBUTE": "cn",
        "PACSDESK_LDAP_DEPARTMENT_ATTRIBUTE": "departmentNumber",
        "PACSDESK_LDAP_ROLE_GROUPS": OPENLDAP_ROLE_GROUPS,
        "PACSDESK_LDAP_DISABLED_FILTER": "(employeeType=left)",
        "PACSDESK_LDAP_TIMEOUT": "3",
    }


def configure(settings: dict[str, str], overrides: dict[str, str]) -> DirectoryConfig:
    """Parse settings as the app does, with ``overrides`` (keys without the PACSDESK_LDAP_ prefix)."""
    changes = {f"PACSDESK_LDAP_{name.upper()}": value for name, value in overrides.items()}
    config = parse_directory_settings(settings | changes)
    assert config is not None
    return config


@pytest.fixture
def ad_config(slapd: Slapd, certificates: Certificates) -> Configure:
    """``ad_config(nested_groups="true", ...)``: a configuration for the AD-shaped tree."""
    return lambda **overrides: configure(ad_settings(slapd, certificates), overrides)


@pytest.fixture
def openldap_config(slapd: Slapd, certificates: Certificates) -> Configure:
    """``openldap_config(...)``: a configuration for the OpenLDAP-shaped tree."""
    return lambda **overrides: configure(openldap_settings(slapd, certificates), overrides)


@pytest.fixture(scope="module")
def wrong_host_slapd(tmp_path_factory: pytest.TempPathFactory, certificates) -> Iterator[Slapd]:
    """A slapd whose certificate (signed by the trusted test CA) names another host."""
    server = start_slapd(tmp_path_factory.mktemp("wrong-host-slapd"), certificates, wrong_host=True)
    yield server
    server.stop()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel completes them) and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    yield listener.getsockname()[1]
    listener.close()
