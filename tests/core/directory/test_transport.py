"""How PACS Desk reaches the directory: ldaps, StartTLS, certificate checks, failover, deadlines."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from core.auth.directory import DirectoryUnavailable, authenticate, list_users
from tests.core.directory.conftest import start_slapd
from tests.core.directory.data import openldap_entries
from tests.core.directory.slapd import OPENLDAP_SUFFIX, USER_PASSWORD, Slapd, ldif
from tests.helpers import OVERRUN, free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def plain_slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """A slapd without any TLS configuration, serving the OpenLDAP-shaped tree."""
    server = start_slapd(tmp_path_factory.mktemp("plain-slapd"), None)
    try:
        server.load(ldif(openldap_entries()), OPENLDAP_SUFFIX)
        yield server
    finally:
        server.stop()


@pytest.fixture
def unreachable_port() -> Iterator[int]:
    """A port whose connection queue is full, so new connections hang like a dropped SYN."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = listener.getsockname()[1]
    queued = socket.create_connection(("127.0.0.1", port))
    yield port
    queued.close()
    listener.close()


def test_ldaps_login(slapd, openldap_config):
    assert authenticate(openldap_config(url=slapd.ldaps_url), "peter", USER_PASSWORD).role == "requester"


def test_starttls_login(slapd, openldap_config):
    assert authenticate(openldap_config(url=slapd.ldap_url), "peter", USER_PASSWORD).role == "requester"


def test_certificate_names_localhost_too(slapd, openldap_config):
    url = slapd.ldaps_url.replace("127.0.0.1", "localhost")
    assert authenticate(openldap_config(url=url), "peter", USER_PASSWORD).username == "peter"


@pytest.mark.parametrize("scheme", ["ldaps", "ldap"])
def test_certificate_for_another_host_is_refused_with_that_reason(wrong_host_slapd, openldap_config, scheme):
    url = wrong_host_slapd.ldaps_url if scheme == "ldaps" else wrong_host_slapd.ldap_url
    with pytest.raises(DirectoryUnavailable) as caught:
        authenticate(openldap_config(url=url), "peter", USER_PASSWORD)
    assert "certificate does not match the host name 127.0.0.1" in caught.value.detail
    assert caught.value.message == "the hospital directory cannot be reached"


def test_certificate_from_an_untrusted_ca_is_refused(slapd, openldap_config):
    # Without the test CA file, the system's CAs are used, and none of them signed the server.
    with pytest.raises(DirectoryUnavailable, match="not signed by a trusted CA"):
        authenticate(openldap_config(url=slapd.ldaps_url, ca_file=""), "peter", USER_PASSWORD)


def test_plain_ldap_is_refused_unless_allowed(plain_slapd, openldap_config):
    with pytest.raises(DirectoryUnavailable, match=r"refused StartTLS .*PACSDESK_LDAP_ALLOW_PLAIN"):
        authenticate(openldap_config(url=plain_slapd.ldap_url), "peter", USER_PASSWORD)
    user = authenticate(openldap_config(url=plain_slapd.ldap_url, allow_plain="true"), "peter", USER_PASSWORD)
    assert user.role == "requester"


def test_failover_to_the_next_url_when_the_first_is_dead(slapd, openldap_config):
    urls = f"ldaps://127.0.0.1:{free_port()} {slapd.ldaps_url}"
    assert authenticate(openldap_config(url=urls), "peter", USER_PASSWORD).role == "requester"


def test_every_url_dead_names_each_failure(openldap_config, silent_port):
    dead = free_port()
    config = openldap_config(url=f"ldap://127.0.0.1:{dead} ldaps://127.0.0.1:{silent_port}", timeout="1")
    with pytest.raises(DirectoryUnavailable) as caught:
        authenticate(config, "peter", USER_PASSWORD)
    assert f"ldap://127.0.0.1:{dead}: connection refused" in caught.value.detail
    assert f"ldaps://127.0.0.1:{silent_port}: no answer within 1 s" in caught.value.detail


@pytest.mark.parametrize("scheme", ["ldaps", "ldap"])
def test_a_server_that_never_answers_is_bounded_by_the_timeout(openldap_config, silent_port, scheme):
    config = openldap_config(url=f"{scheme}://127.0.0.1:{silent_port}", timeout="1")
    started = time.monotonic()
    with pytest.raises(DirectoryUnavailable, match="no answer within 1 s"):
        authenticate(config, "peter", USER_PASSWORD)
    assert time.monotonic() - started < 1 + OVERRUN


def test_a_connection_that_never_completes_is_bounded_by_the_timeout(openldap_config, unreachable_port):
    config = openldap_config(url=f"ldaps://127.0.0.1:{unreachable_port}", timeout="1")
    started = time.monotonic()
    with pytest.raises(DirectoryUnavailable, match="no connection within 1 s"):
        authenticate(config, "peter", USER_PASSWORD)
    assert time.monotonic() - started < 1 + OVERRUN


def test_a_ca_file_that_disappears_after_start_up_is_unavailable(openldap_config, certificates, tmp_path):
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(certificates.ca_file.read_bytes())
    config = openldap_config(ca_file=str(ca_file))
    ca_file.unlink()
    with pytest.raises(DirectoryUnavailable, match="cannot load PACSDESK_LDAP_CA_FILE"):
        authenticate(config, "peter", USER_PASSWORD)


def test_a_silent_first_server_fails_over_within_the_timeout(slapd, openldap_config, silent_port):
    config = openldap_config(url=f"ldap://127.0.0.1:{silent_port} {slapd.ldap_url}", timeout="1")
    started = time.monotonic()
    assert authenticate(config, "peter", USER_PASSWORD).role == "requester"
    assert time.monotonic() - started < 1 + OVERRUN


def test_listing_users_from_a_silent_server_is_bounded_too(openldap_config, silent_port):
    config = openldap_config(url=f"ldaps://127.0.0.1:{silent_port}", timeout="1")
    started = time.monotonic()
    with pytest.raises(DirectoryUnavailable):
        list(list_users(config))
    assert time.monotonic() - started < 1 + OVERRUN
