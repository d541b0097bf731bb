"""Where C-ECHO checks may connect: the allowed networks, the addresses always refused, and
``echo`` connecting to the very address that was checked (names answered by a table, never DNS)."""

from __future__ import annotations

import ipaddress
import re
import socket

import pytest

from inventory.verification.dicom import Outcome, echo
from inventory.verification.netpolicy import (
    DEFAULT_ALLOWED,
    NotAllowed,
    check_destination,
    parse_networks,
)
from tests.inventory.conftest import PEER_AET

EVERYTHING = parse_networks("0.0.0.0/0 ::/0")


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """One network."""
    return ipaddress.ip_network(text)


# ---------------------------------------------------------------- parse_networks


def test_networks_are_parsed_from_commas_and_spaces():
    assert parse_networks("10.0.0.0/8, 192.168.1.0/24  fd00::/8,172.16.5.9") == (
        net("10.0.0.0/8"), net("192.168.1.0/24"), net("fd00::/8"), net("172.16.5.9/32"))


@pytest.mark.parametrize(("text", "message"), [
    ("10.0.0.0/8, banana", "'banana' is not a network"),
    ("10.0.0.0/33", "'10.0.0.0/33' is not a network"),
    ("10.1.2.3/8", r"'10.1.2.3/8' is not a network .* \(did you mean 10.0.0.0/8\?\)"),
    ("", "no network given"),
    (" , ", "no network given"),
])
def test_bad_network_list_names_the_bad_entry(text, message):
    with pytest.raises(ValueError, match=message):
        parse_networks(text)


def test_default_allowed_is_private_ranges_and_loopback():
    expected = parse_networks("10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 127.0.0.0/8 ::1/128 fc00::/7")
    assert expected == DEFAULT_ALLOWED


# ---------------------------------------------------------------- check_destination


def test_address_inside_the_allowed_networks_is_returned(fake_dns):
    resolver = fake_dns({})
    assert check_destination("10.20.30.40", 104, DEFAULT_ALLOWED, resolver) == [
        ipaddress.ip_address("10.20.30.40")]
    assert resolver.lookups == [], "an address is not looked up"


def test_address_outside_the_allowed_networks_is_refused_naming_it_and_the_networks():
    with pytest.raises(NotAllowed) as refused:
        check_destination("8.8.8.8", 104, parse_networks("10.0.0.0/8 192.168.0.0/16"))
    assert str(refused.value) == ("8.8.8.8 is outside the networks checks may reach "
                                  "(10.0.0.0/8, 192.168.0.0/16)")


@pytest.mark.parametrize(("address", "why"), [
    ("169.254.169.254", "a cloud metadata service address"),
    ("100.100.100.200", "a cloud metadata service address"),
    ("fd00:ec2::254", "a cloud metadata service address"),
    ("169.254.10.1", "a link-local address (169.254.0.0/16)"),
    ("fe80::1", "a link-local address (fe80::/10)"),
    ("::ffff:169.254.169.254", "a cloud metadata service address"),
    ("64:ff9b::a9fe:a9fe", "a cloud metadata service address"),
    ("0.0.0.0", "not the address of one host"),
    ("::", "not the address of one host"),
    ("224.0.0.1", "not the address of one host"),
])
def test_metadata_link_local_and_non_host_addresses_are_refused_whatever_is_allowed(address, why):
    allowed = EVERYTHING + parse_networks("169.254.0.0/16 fe80::/10 fc00::/7")
    with pytest.raises(NotAllowed, match=f"^{re.escape(address)} is {re.escape(why)}"):
        check_destination(address, 80, allowed)


def test_default_allowed_refuses_metadata_inside_the_ula_range():
    with pytest.raises(NotAllowed, match="metadata"):
        check_destination("fd00:ec2::254", 80, DEFAULT_ALLOWED)
    assert check_destination("fd12:3456::1", 104, DEFAULT_ALLOWED) == [ipaddress.ip_address("fd12:3456::1")]


@pytest.mark.parametrize("name", ["metadata.google.internal", "METADATA.google.internal.", "metadata",
                                  "instance-data.ec2.internal"])
def test_metadata_names_are_refused_before_any_lookup(fake_dns, name):
    resolver = fake_dns({name: ["10.0.0.1"]})
    with pytest.raises(NotAllowed, match="cloud metadata service name"):
        check_destination(name, 80, EVERYTHING, resolver)
    assert resolver.lookups == []


def test_name_resolving_to_the_metadata_address_is_refused(fake_dns):
    resolver = fake_dns({"pacs.hospital.test": ["169.254.169.254"]})
    with pytest.raises(NotAllowed) as refused:
        check_destination("pacs.hospital.test", 104, EVERYTHING, resolver)
    assert str(refused.value) == ("pacs.hospital.test resolves to 169.254.169.254, which is a cloud "
                                  "metadata service address, never checked")


def test_name_with_one_address_outside_the_allowed_networks_is_refused(fake_dns):
    resolver = fake_dns({"pacs.hospital.test": ["10.1.1.1", "203.0.113.7"]})
    with pytest.raises(NotAllowed, match=re.escape("resolves to 203.0.113.7, which is outside")):
        check_destination("pacs.hospital.test", 104, DEFAULT_ALLOWED, resolver)


def test_name_inside_the_allowed_networks_gives_its_addresses_ipv4_first(fake_dns):
    resolver = fake_dns({"pacs.hospital.test": ["fd00::5", "10.1.1.1", "10.1.1.1"]})
    assert check_destination("pacs.hospital.test", 104, DEFAULT_ALLOWED, resolver) == [
        ipaddress.ip_address("10.1.1.1"), ipaddress.ip_address("fd00::5")]
    assert resolver.lookups == ["pacs.hospital.test"]


def test_numeric_spelling_of_the_metadata_address_is_refused():
    def numeric_only(host, port, **kwargs):
        return socket.getaddrinfo(host, port, flags=socket.AI_NUMERICHOST, **kwargs)

    with pytest.raises(NotAllowed, match=re.escape("2852039166 resolves to 169.254.169.254")):
        check_destination("2852039166", 80, EVERYTHING, numeric_only)


def test_unresolvable_name_raises_the_resolvers_error(fake_dns):
    with pytest.raises(socket.gaierror):
        check_destination("nowhere.hospital.test", 104, DEFAULT_ALLOWED, fake_dns({}))


# ---------------------------------------------------------------- echo with a policy


def test_echo_to_a_refused_destination_is_not_allowed_and_opens_no_connection():
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    try:
        port = listener.getsockname()[1]
        result = echo("127.0.0.1", port, PEER_AET, "PACSDESK", 1.0,
                      allowed_networks=parse_networks("10.0.0.0/8"))
        assert result.outcome is Outcome.NOT_ALLOWED
        assert result.detail == ("Not checked: 127.0.0.1 is outside the networks checks may reach "
                                 "(10.0.0.0/8)")
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()


def test_echo_to_a_name_resolving_to_the_metadata_service_is_not_allowed(fake_dns):
    resolver = fake_dns({"metadata-proxy.hospital.test": ["169.254.169.254"]})
    result = echo("metadata-proxy.hospital.test", 80, PEER_AET, "PACSDESK", 1.0,
                  allowed_networks=EVERYTHING, resolver=resolver)
    assert result.outcome is Outcome.NOT_ALLOWED
    assert "resolves to 169.254.169.254" in result.detail


def test_echo_inside_the_allowed_networks_is_ok(verification_scp):
    port = verification_scp()
    result = echo("127.0.0.1", port, PEER_AET, "PACSDESK", 5.0, allowed_networks=DEFAULT_ALLOWED)
    assert result.outcome is Outcome.OK


def test_echo_connects_to_the_checked_address_without_resolving_again(verification_scp):
    """A name whose DNS answer changes after the check (rebinding) is looked up once only."""
    answers = iter(["127.0.0.1", "169.254.169.254"])
    lookups = []

    def rebinding(host, port, *args, **kwargs):
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (next(answers), port))]

    port = verification_scp()
    result = echo("pacs.hospital.test", port, PEER_AET, "PACSDESK", 5.0,
                  allowed_networks=DEFAULT_ALLOWED, resolver=rebinding)
    assert result.outcome is Outcome.OK
    assert lookups == ["pacs.hospital.test"]


def test_tls_verifies_the_certificate_for_the_name_while_connecting_to_the_checked_address(
        verification_scp, mini_pki, fake_dns):
    port = verification_scp(ssl_context=mini_pki.server_context())
    resolver = fake_dns({"pacs.hospital.test": ["127.0.0.1"], "other.hospital.test": ["127.0.0.1"]})
    named = echo("pacs.hospital.test", port, PEER_AET, "PACSDESK", 5.0, tls=True,
                 ca_file=str(mini_pki.ca_cert), allowed_networks=DEFAULT_ALLOWED, resolver=resolver)
    assert named.outcome is Outcome.OK, named
    other = echo("other.hospital.test", port, PEER_AET, "PACSDESK", 5.0, tls=True,
                 ca_file=str(mini_pki.ca_cert), allowed_networks=DEFAULT_ALLOWED, resolver=resolver)
    assert other.outcome is Outcome.TLS_ERROR
    assert "not trusted" in other.detail and "other.hospital.test" in other.detail


def test_echo_without_a_policy_checks_any_destination(verification_scp):
    port = verification_scp()
    assert echo("127.0.0.1", port, PEER_AET, "PACSDESK", 5.0, allowed_networks=None).ok
