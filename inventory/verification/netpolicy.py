"""Which network addresses a C-ECHO check may connect to (no Flask, no database).

Whoever can enter a node's host and port could otherwise make the server connect anywhere: to
the cloud's metadata service, to the database next door, or port by port through the network
(a refused port and an accepting one give different outcomes). ``check_destination`` resolves
a node's name once and refuses it unless every address is inside the allowed networks; the
check then connects to an address it returned, never resolving the name again (so a DNS answer
that changes between the check and the connection cannot slip another address in).

``DEFAULT_ALLOWED`` (the default of PACSDESK_DICOM_ALLOWED_NETWORKS, parsed in ``core.config``
by ``parse_networks``, re-exported here) holds the networks hospitals number their modalities
and archives in: the RFC 1918 private ranges 10.0.0.0/8, 172.16.0.0/12 and 192.168.0.0/16,
loopback 127.0.0.0/8 and ::1/128, and IPv6 unique local addresses fc00::/7.

Always refused, whatever the allowed networks say: link-local addresses (169.254.0.0/16 and
fe80::/10), where cloud metadata services answer; the metadata addresses 169.254.169.254,
fd00:ec2::254 (AWS over IPv6, inside fc00::/7) and 100.100.100.200 (Alibaba Cloud); the
metadata host names in ``METADATA_NAMES`` (refused before any DNS query); and addresses that
are not one host's (0.0.0.0 and ::, which reach the local host, multicast, broadcast). An IPv4
address written as IPv6 (``::ffff:169.254.169.254``, NAT64 ``64:ff9b::/96``, 6to4) is judged
as the IPv4 address it carries.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any

from core.config import DEFAULT_ALLOWED_NETWORKS, IPNetwork, parse_networks

__all__ = ["DEFAULT_ALLOWED", "IPAddress", "IPNetwork", "NotAllowed", "Resolver", "check_destination",
           "parse_networks", "refusal", "resolve"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., Sequence[tuple[Any, ...]]]
"""A ``socket.getaddrinfo``-like function: ``resolver(host, port, type=socket.SOCK_STREAM)``."""

DEFAULT_ALLOWED: tuple[IPNetwork, ...] = parse_networks(DEFAULT_ALLOWED_NETWORKS)

LINK_LOCAL: tuple[IPNetwork, ...] = (ipaddress.ip_network("169.254.0.0/16"),
                                     ipaddress.ip_network("fe80::/10"))
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "fd00:ec2::254", "100.100.100.200"))
METADATA_NAMES: frozenset[str] = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "instance-data",
    "instance-data.ec2.internal"})
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class NotAllowed(ValueError):
    """A destination checks may not connect to; the message names the address and why."""


def carried_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4), else the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def refusal(address: IPAddress, allowed: Sequence[IPNetwork]) -> str | None:
    """Why a check may not connect to ``address``, or None when it may."""
    judged = carried_ipv4(address)
    if isinstance(judged, ipaddress.IPv6Address) and judged.scope_id:
        judged = ipaddress.IPv6Address(str(judged).split("%", 1)[0])
    if judged in METADATA_ADDRESSES:
        return "a cloud metadata service address, never checked"
    for network in LINK_LOCAL:
        if judged in network:
            return f"a link-local address ({network}), where cloud metadata services answer: never checked"
    if judged.is_unspecified or judged.is_multicast or judged == ipaddress.IPv4Address("255.255.255.255"):
        return "not the address of one host"
    if not any(judged in network for network in allowed if network.version == judged.version):
        return f"outside the networks checks may reach ({_describe(allowed)})"
    return None


def _describe(networks: Sequence[IPNetwork], shown: int = 6) -> str:
    """The allowed networks for a message, the first few of them."""
    if not networks:
        return "none is allowed"
    text = ", ".join(str(network) for network in networks[:shown])
    return text + (f" and {len(networks) - shown} more" if len(networks) > shown else "")


def resolve(host: str, port: int, resolver: Resolver | None = None) -> list[IPAddress]:
    """The addresses of ``host``, IPv4 first, without duplicates (an address is returned as is).

    Raises ``socket.gaierror`` (an OSError) when the name does not resolve.
    """
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    lookup = resolver or socket.getaddrinfo  # looked up now, so a patched getaddrinfo applies
    found: list[IPAddress] = []
    for info in lookup(host, port, type=socket.SOCK_STREAM):
        address = ipaddress.ip_address(str(info[4][0]))
        if address not in found:
            found.append(address)
    if not found:
        raise socket.gaierror(socket.EAI_NONAME, "no address")
    return sorted(found, key=lambda a: a.version)  # stable: the resolver's order within a family


def check_destination(host: str, port: int, allowed: Sequence[IPNetwork],
                      resolver: Resolver | None = None) -> list[IPAddress]:
    """Resolve ``host`` once; its addresses, or NotAllowed when any is outside ``allowed``."""
    name = host.strip().lower().rstrip(".")
    if name in METADATA_NAMES:
        raise NotAllowed(f"{host} is a cloud metadata service name, never checked")
    addresses = resolve(host.strip(), port, resolver)
    literal = _is_address(host.strip())
    for address in addresses:
        reason = refusal(address, allowed)
        if reason and literal:
            raise NotAllowed(f"{host.strip()} is {reason}")
        if reason:
            raise NotAllowed(f"{host.strip()} resolves to {address}, which is {reason}")
    return addresses


def _is_address(host: str) -> bool:
    """Whether ``host`` is an IP address rather than a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
